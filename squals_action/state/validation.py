"""Parsing and schema checks of state documents, shared by every store implementation.

A document read from the branch that does not parse or fails its schema is a :class:`CorruptStateError`
naming the file and commit; a document a transaction wants to write that fails its schema is a bug of the
caller (:class:`StateError`), caught before anything is published.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from squals_action.state.errors import CorruptStateError, StateError
from squals_action.state.layout import (
    ENVIRONMENTS_DIR,
    EXPERIMENTS_DIR,
    LOCKS_DIR,
    META_PATH,
    JsonObject,
    check_path,
)

#: Bounds on a document read from the branch, which anyone who can push to it may have written: far above
#: what squals writes (a few KiB, nesting below 10), far below what exhausts memory or the parser's stack.
MAX_DOCUMENT_BYTES = 16 * 1024 * 1024
MAX_DEPTH = 64

_SCHEMA_BY_DIR = {
    ENVIRONMENTS_DIR: "environment",
    EXPERIMENTS_DIR: "experiment",
    LOCKS_DIR: "lock",
}


def schema_dir() -> Path:
    """Where the JSON Schemas are: inside the installed wheel, or at the repository root in a checkout."""
    package = Path(__file__).resolve().parent.parent
    for candidate in (package / "schemas" / "state", package.parent / "schemas" / "state"):
        if candidate.is_dir():
            return candidate
    raise StateError(f"state schemas not found next to {package}")  # a broken installation


@functools.cache
def _validator(name: str) -> Any:
    import jsonschema  # type: ignore[import-untyped,unused-ignore]

    schema = json.loads((schema_dir() / f"{name}.schema.json").read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def schema_name(path: str) -> str:
    """Which schema governs ``path``: by its directory, ``meta`` for the marker, ``document`` otherwise."""
    if path == META_PATH:
        return "meta"
    head, _, rest = path.partition("/")
    if rest and "/" not in rest and head in _SCHEMA_BY_DIR:
        return _SCHEMA_BY_DIR[head]
    return "document"


def schema_problem(path: str, doc: Any) -> str | None:
    """The first schema violation of ``doc`` as one line (``at key.sub: message``), or ``None``."""
    errors = sorted(_validator(schema_name(path)).iter_errors(doc), key=lambda e: list(e.absolute_path))
    if not errors:
        if schema_name(path) in _SCHEMA_BY_DIR.values():
            stem = path.rsplit("/", 1)[1][: -len(".json")]
            key = {"environment": "name", "experiment": "id", "lock": "environment"}[schema_name(path)]
            if doc.get(key) != stem:
                return f"at {key}: {doc.get(key)!r} does not match the file name {stem!r}"
        return None
    first = errors[0]
    where = ".".join(str(p) for p in first.absolute_path) or "(document)"
    return f"at {where}: {first.message} (schema {schema_name(path)}.schema.json)"


def parse_document(path: str, data: bytes, commit: str | None) -> JsonObject:
    """Parse and check one document read from the branch; :class:`CorruptStateError` names file and commit."""
    if len(data) > MAX_DOCUMENT_BYTES:
        raise CorruptStateError(path, commit, f"{len(data)} bytes, over the limit of {MAX_DOCUMENT_BYTES}")
    try:
        doc = json.loads(data.decode("utf-8"), parse_constant=_no_constant, parse_float=_finite)
    except UnicodeDecodeError as exc:
        raise CorruptStateError(path, commit, f"not UTF-8 ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno}, column {exc.colno}"
        raise CorruptStateError(path, commit, f"not JSON: {exc.msg} at {where}") from None
    except RecursionError:  # the C parser gives up around a thousand levels: far deeper than MAX_DEPTH
        raise CorruptStateError(path, commit, f"nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:  # NaN, Infinity, 1e400
        raise CorruptStateError(path, commit, f"not JSON: {exc}") from None
    if _depth(doc) > MAX_DEPTH:
        raise CorruptStateError(path, commit, f"nested deeper than {MAX_DEPTH} levels")
    if not isinstance(doc, dict):
        raise CorruptStateError(path, commit, f"expected a JSON object, found {type(doc).__name__}")
    problem = schema_problem(path, doc)
    if problem is not None:
        raise CorruptStateError(path, commit, problem)
    return doc


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:40]} is not a finite number")
    return value


def _depth(doc: Any) -> int:
    """How deeply arrays and objects nest in ``doc``, walked without recursion (the schema check recurses)."""
    deepest, todo = 0, [(doc, 1)]
    while todo:
        value, level = todo.pop()
        if isinstance(value, dict | list):
            deepest = max(deepest, level)
            if level <= MAX_DEPTH:
                todo.extend((v, level + 1) for v in (value.values() if isinstance(value, dict) else value))
    return deepest


def prepare_documents(
    docs: Mapping[str, Mapping[str, Any]], checked: Mapping[str, Mapping[str, Any]] | None = None
) -> dict[str, JsonObject]:
    """Check documents a transaction wants to write and return a detached copy of them.

    The round trip through JSON catches values JSON cannot hold (sets, datetimes) and detaches the copy from
    the caller's objects. A document equal to the one at the same path in ``checked`` (the tip's, checked
    when read) is not checked against its schema again: a transaction pays for what it changed.
    """
    prepared: dict[str, JsonObject] = {}
    for path in sorted(docs):
        if path == META_PATH:
            raise StateError(f"{META_PATH} is reserved for the store itself")
        check_path(path)
        doc = docs[path]
        try:
            copy = json.loads(json.dumps(doc, allow_nan=False))
        except (TypeError, ValueError) as exc:
            raise StateError(f"state document {path} is not JSON-serialisable: {exc}") from None
        if not isinstance(copy, dict):
            raise StateError(f"state document {path} must be a JSON object")
        problem = None if checked is not None and checked.get(path) == copy else schema_problem(path, copy)
        if problem is not None:
            raise StateError(f"refusing to write invalid state document {path}: {problem}")
        prepared[path] = copy
    return prepared
