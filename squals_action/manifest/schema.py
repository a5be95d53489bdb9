"""The squals file's JSON Schema: where it ships, a fast yes/no check, and jsonschema's errors as problems.

jsonschema's own messages print whole instances; here each error becomes one line that says what was
expected at the offending node, with a "did you mean" for misspelt keys and enum values. Subschemas can
carry ``x-expected`` (an annotation validators ignore) to phrase what a pattern or union accepts.
"""

from __future__ import annotations

import difflib
import functools
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import squals_action
from squals_action.manifest.problems import PathPart, Problem, format_where
from squals_action.manifest.yamlload import Document

if TYPE_CHECKING:
    from jsonschema_rs import Draft202012Validator as FastValidator

SCHEMA_NAME = "squals.schema.json"

_TYPE_WORDS = {
    "object": "a mapping",
    "array": "a list",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "null": "null",
}


def schema_path() -> Path:
    """The schema file: inside the installed package, else the repository's ``schemas/``."""
    package = Path(squals_action.__file__).resolve().parent
    installed = package / "schemas" / SCHEMA_NAME
    if installed.is_file():
        return installed
    return package.parent / "schemas" / SCHEMA_NAME


@functools.cache
def schema_text() -> str:
    return schema_path().read_text(encoding="utf-8")


@functools.cache
def load_schema() -> Mapping[str, Any]:
    loaded: dict[str, Any] = json.loads(schema_text())
    return loaded


@functools.cache
def _validator() -> Any:
    """Build the validator once per process; building it is most of jsonschema's cost on small files."""
    from jsonschema import Draft202012Validator  # type: ignore[import-untyped]

    return Draft202012Validator(load_schema())


def describe(value: Any) -> str:
    """A short rendering of a value for "got ..." (never the whole instance)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return repr(shown)
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__  # pragma: no cover


def suggest(word: str, choices: Iterable[str]) -> str | None:
    """The closest choice to a misspelt word, if one is close enough."""
    matches = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return matches[0] if matches else None


def _expected(schema: Mapping[str, Any], fallback: str) -> str:
    text = schema.get("x-expected")
    return str(text) if isinstance(text, str) else fallback


def _type_words(types: Any) -> str:
    names = [types] if isinstance(types, str) else list(types)
    words = [_TYPE_WORDS.get(str(name), str(name)) for name in names]
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def _branch_keys(branches: Sequence[Any]) -> list[str] | None:
    """For ``anyOf``/``oneOf`` whose branches only require keys, the keys; else None."""
    keys: list[str] = []
    for branch in branches:
        if not isinstance(branch, Mapping) or set(branch) != {"required"}:
            return None
        keys.extend(str(k) for k in branch["required"])
    return keys


class _Mapper:
    def __init__(self, doc: Document) -> None:
        self.doc = doc
        self.problems: list[Problem] = []

    def add(self, path: Sequence[PathPart], message: str, *, key: bool = False) -> None:
        line, col = self.doc.position(path, key=key)
        self.problems.append(Problem(self.doc.file, line, col, format_where(path), message))

    def error(self, error: Any) -> None:
        path: list[PathPart] = list(error.absolute_path)
        kind = error.validator
        schema: Mapping[str, Any] = error.schema if isinstance(error.schema, Mapping) else {}
        instance = error.instance
        value = error.validator_value
        if "propertyNames" in error.absolute_schema_path:
            key = str(instance)
            names_schema = self._property_names_schema(error)
            expected = _expected(names_schema, "a valid key")
            self.add([*path, key], f"expected {expected} as key, got {describe(key)}", key=True)
            return
        if kind == "additionalProperties" and isinstance(instance, dict):
            allowed = list(schema.get("properties", {}))
            for key in instance:
                if key in allowed:
                    continue
                hint = suggest(key, allowed)
                if hint:
                    message = f"unknown key {describe(key)}; did you mean {hint!r}?"
                else:
                    message = f"unknown key {describe(key)}; expected one of: {', '.join(allowed)}"
                self.add([*path, key], message, key=True)
            return
        if kind == "required" and isinstance(instance, dict):
            missing = [str(k) for k in value if k not in instance]
            condition = " (needed for this kind)" if "then" in error.absolute_schema_path else ""
            for key in missing:
                self.add(path, f"missing required key {key!r}{condition}")
            return
        if kind in ("anyOf", "oneOf"):
            keys = _branch_keys(value)
            if keys is not None and isinstance(instance, dict):
                present = [k for k in keys if k in instance]
                if kind == "oneOf" and len(present) > 1:
                    self.add(
                        path, f"expected only one of the keys {', '.join(keys)}, got {' and '.join(present)}"
                    )
                else:
                    self.add(
                        path,
                        f"expected {'one' if kind == 'oneOf' else 'at least one'} of the keys "
                        f"{', '.join(keys)}",
                    )
                return
            self.add(
                path, f"expected {_expected(schema, self._union_words(value))}, got {describe(instance)}"
            )
            return
        if kind == "type":
            expected = _expected(schema, _type_words(value))
            self.add(path, f"expected {expected}, got {describe(instance)}")
            return
        if kind == "pattern":
            expected = _expected(schema, f"a string matching {value}")
            self.add(path, f"expected {expected}, got {describe(instance)}")
            return
        if kind == "enum":
            options = ", ".join(describe(v) for v in value)
            message = f"expected one of {options}, got {describe(instance)}"
            if isinstance(instance, str):
                hint = suggest(instance, [str(v) for v in value])
                if hint:
                    message += f"; did you mean {hint!r}?"
            self.add(path, message)
            return
        if kind == "const":
            self.add(path, f"expected {describe(value)}, got {describe(instance)}")
            return
        if kind == "minLength":
            self.add(
                path, "expected a non-empty string" if value == 1 else f"expected at least {value} characters"
            )
            return
        if kind in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
            sign = {"minimum": ">=", "maximum": "<=", "exclusiveMinimum": ">", "exclusiveMaximum": "<"}[kind]
            self.add(path, f"expected a number {sign} {value}, got {describe(instance)}")
            return
        if kind in ("minItems", "minProperties"):
            what = "items" if kind == "minItems" else "entries"
            self.add(path, f"expected at least {value} {what}, got {len(instance)}")
            return
        if kind == "uniqueItems":
            self.add(path, "expected unique items, got repeated ones")
            return
        self.add(
            path, f"expected {_expected(schema, 'a valid value')}: {' '.join(error.message.split())[:160]}"
        )

    @staticmethod
    def _union_words(branches: Sequence[Any]) -> str:
        words = []
        for branch in branches:
            if isinstance(branch, Mapping) and "type" in branch:
                words.append(_type_words(branch["type"]))
            elif isinstance(branch, Mapping) and "const" in branch:
                words.append(describe(branch["const"]))
        return " or ".join(words) if words else "one of the allowed forms"

    @staticmethod
    def _property_names_schema(error: Any) -> Mapping[str, Any]:
        """The ``propertyNames`` subschema (after ``$ref``) that rejected a key."""
        schema: Any = error.schema
        if isinstance(schema, Mapping) and "x-expected" in schema:
            return schema
        parent = error.parent
        while parent is not None:
            if isinstance(parent.schema, Mapping) and "x-expected" in parent.schema:
                return dict(parent.schema)
            parent = parent.parent
        return schema if isinstance(schema, Mapping) else {}


@functools.cache
def _fast_validator() -> FastValidator:
    """jsonschema-rs compiled once; imported here because its import (~50 ms) must not slow CLI start-up.

    ``offline``: the schema's ``$ref`` are all local, and validation must never reach the network.
    """
    import jsonschema_rs

    return jsonschema_rs.Draft202012Validator(dict(load_schema()), offline=True)


def fast_valid(data: Any) -> bool:
    """The yes/no answer of jsonschema-rs; when it is yes, jsonschema (slow, but located) is not imported.

    A "no" only costs the jsonschema run that phrases the problems. Where the regex dialects differ, as
    in these two cases, jsonschema-rs is the stricter one: Python's ``re`` lets ``$`` match before a final
    newline and ``\\d`` match any Unicode digit, the ECMA-style regex of jsonschema-rs does not.
    """
    return _fast_validator().is_valid(data)


def iter_schema_errors(data: Any) -> Iterator[Any]:
    yield from _validator().iter_errors(data)


def schema_problems(doc: Document) -> list[Problem]:
    """Every schema violation of ``doc.data`` as a located problem."""
    if fast_valid(doc.data):
        return []
    mapper = _Mapper(doc)
    for error in iter_schema_errors(doc.data):
        mapper.error(error)
    return mapper.problems
