"""A fast yes/no check of data against the squals schema, so valid files never pay for jsonschema.

The schema is compiled once into nested closures covering exactly the keywords it uses. The answer is
conservative: ``True`` only when the data is valid under JSON Schema 2020-12 semantics (booleans are not
numbers, ``pattern`` searches, ``1.0`` is an integer); anything unsure answers ``False`` and the caller
runs jsonschema, which also produces the located messages. A schema keyword this module does not know
makes :func:`compile_schema` refuse, and the caller then always uses jsonschema.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

Check = Callable[[Any], bool]

#: Keywords that do not constrain the instance.
ANNOTATIONS = frozenset(
    {"$schema", "$id", "$defs", "title", "description", "examples", "default", "x-expected", "$comment"}
)


class Unsupported(Exception):
    """The schema uses a keyword the fast path does not implement."""


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


_TYPES: dict[str, Check] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "number": _is_number,
    "integer": lambda v: (
        (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, float) and v.is_integer())
    ),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def _same(a: Any, b: Any) -> bool:
    """JSON equality for scalars: ``true`` is not ``1``."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, str) or isinstance(b, str):
        return isinstance(a, str) and isinstance(b, str) and a == b
    if _is_number(a) and _is_number(b):
        return bool(a == b)
    return a is None and b is None


class _Compiler:
    def __init__(self, root: Mapping[str, Any]) -> None:
        self.root = root
        self.refs: dict[str, Check] = {}

    def ref(self, target: str) -> Check:
        if not target.startswith("#/$defs/") or "/" in target.removeprefix("#/$defs/"):
            raise Unsupported(target)
        found = self.refs.get(target)
        if found is not None:
            return found
        slot: list[Check] = []
        self.refs[target] = lambda v: slot[0](v)  # ties the knot for recursive definitions
        slot.append(self.compile(self.root["$defs"][target.removeprefix("#/$defs/")]))
        return self.refs[target]

    def compile(self, schema: Any) -> Check:
        if schema is True:
            return lambda v: True
        if schema is False:
            return lambda v: False
        if not isinstance(schema, Mapping):
            raise Unsupported(repr(schema))
        checks: list[Check] = []
        keys = set(schema) - ANNOTATIONS
        for key in sorted(keys):
            checks.append(self.keyword(key, schema[key], schema))
        checks = [c for c in checks if c is not _ALWAYS]
        if not checks:
            return _ALWAYS
        if len(checks) == 1:
            return checks[0]
        return lambda v: all(check(v) for check in checks)

    def keyword(self, key: str, value: Any, schema: Mapping[str, Any]) -> Check:
        handler = getattr(self, "kw_" + key.replace("$", "dollar_"), None)
        if handler is None:
            raise Unsupported(key)
        check: Check = handler(value, schema)
        return check

    # keywords -------------------------------------------------------------------------------------

    def kw_dollar_ref(self, value: Any, schema: Mapping[str, Any]) -> Check:
        return self.ref(str(value))

    def kw_type(self, value: Any, schema: Mapping[str, Any]) -> Check:
        names = [value] if isinstance(value, str) else list(value)
        tests = [_TYPES[n] for n in names]
        return lambda v: any(t(v) for t in tests)

    def kw_enum(self, value: Any, schema: Mapping[str, Any]) -> Check:
        options = list(value)
        return lambda v: any(_same(v, o) for o in options)

    def kw_const(self, value: Any, schema: Mapping[str, Any]) -> Check:
        return lambda v: _same(v, value)

    def kw_pattern(self, value: Any, schema: Mapping[str, Any]) -> Check:
        search = re.compile(str(value)).search
        return lambda v: not isinstance(v, str) or search(v) is not None

    def kw_minLength(self, value: Any, schema: Mapping[str, Any]) -> Check:
        return lambda v: not isinstance(v, str) or len(v) >= value

    def kw_minimum(self, value: Any, schema: Mapping[str, Any]) -> Check:
        return lambda v: not _is_number(v) or v >= value

    def kw_maximum(self, value: Any, schema: Mapping[str, Any]) -> Check:
        return lambda v: not _is_number(v) or v <= value

    def kw_exclusiveMinimum(self, value: Any, schema: Mapping[str, Any]) -> Check:
        return lambda v: not _is_number(v) or v > value

    def kw_exclusiveMaximum(self, value: Any, schema: Mapping[str, Any]) -> Check:
        return lambda v: not _is_number(v) or v < value

    def kw_minProperties(self, value: Any, schema: Mapping[str, Any]) -> Check:
        return lambda v: not isinstance(v, dict) or len(v) >= value

    def kw_uniqueItems(self, value: Any, schema: Mapping[str, Any]) -> Check:
        if not value:
            return _ALWAYS

        def unique(v: Any) -> bool:
            if not isinstance(v, list):
                return True
            if not all(isinstance(item, str) for item in v):
                return False  # unsure: let jsonschema decide
            return len(set(v)) == len(v)

        return unique

    def kw_required(self, value: Any, schema: Mapping[str, Any]) -> Check:
        names = list(value)
        return lambda v: not isinstance(v, dict) or all(n in v for n in names)

    def kw_properties(self, value: Any, schema: Mapping[str, Any]) -> Check:
        props = {name: self.compile(sub) for name, sub in value.items()}

        def check(v: Any) -> bool:
            if not isinstance(v, dict):
                return True
            return all(sub(v[name]) for name, sub in props.items() if name in v)

        return check

    def kw_additionalProperties(self, value: Any, schema: Mapping[str, Any]) -> Check:
        if "patternProperties" in schema:
            raise Unsupported("patternProperties")
        known = frozenset(schema.get("properties", {}))
        if value is False:
            return lambda v: not isinstance(v, dict) or all(k in known for k in v)
        sub = self.compile(value)
        return lambda v: not isinstance(v, dict) or all(sub(item) for k, item in v.items() if k not in known)

    def kw_propertyNames(self, value: Any, schema: Mapping[str, Any]) -> Check:
        sub = self.compile(value)
        return lambda v: not isinstance(v, dict) or all(sub(k) for k in v)

    def kw_items(self, value: Any, schema: Mapping[str, Any]) -> Check:
        sub = self.compile(value)
        return lambda v: not isinstance(v, list) or all(sub(item) for item in v)

    def kw_anyOf(self, value: Any, schema: Mapping[str, Any]) -> Check:
        subs = [self.compile(s) for s in value]
        return lambda v: any(s(v) for s in subs)

    def kw_oneOf(self, value: Any, schema: Mapping[str, Any]) -> Check:
        subs = [self.compile(s) for s in value]
        return lambda v: sum(1 for s in subs if s(v)) == 1

    def kw_allOf(self, value: Any, schema: Mapping[str, Any]) -> Check:
        subs = [self.compile(s) for s in value]
        return lambda v: all(s(v) for s in subs)

    def kw_if(self, value: Any, schema: Mapping[str, Any]) -> Check:
        if "else" in schema:
            raise Unsupported("else")
        condition = self.compile(value)
        then = self.compile(schema.get("then", True))
        return lambda v: not condition(v) or then(v)

    def kw_then(self, value: Any, schema: Mapping[str, Any]) -> Check:
        return _ALWAYS  # applied by kw_if


def _always(value: Any) -> bool:
    return True


_ALWAYS: Check = _always


def compile_schema(schema: Mapping[str, Any]) -> Check:
    """A function answering "valid?" for ``schema``; raises :class:`Unsupported` for unknown keywords."""
    return _Compiler(schema).compile(schema)
