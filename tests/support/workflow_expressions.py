"""GitHub Actions expressions, evaluated as the runner documents them, for the workflow's `if:` and groups.

Enough of the language for a workflow's job conditions and concurrency groups: literals, property access
(missing properties are null), ``!``, comparisons (strings compared case-insensitively), ``&&`` / ``||``
returning an operand, parentheses, and the functions contains, startsWith, endsWith, format.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_TOKEN = re.compile(
    r"\s*(?:(?P<string>'(?:[^']|'')*')|(?P<number>-?\d+(?:\.\d+)?)|(?P<op>&&|\|\||==|!=|<=|>=|[()!<>,.\[\]])"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_-]*))"
)


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text.rstrip()):
        found = _TOKEN.match(text, pos)
        assert found and found.lastgroup, f"cannot read the expression at {text[pos:]!r}"
        out.append((found.lastgroup, found.group(found.lastgroup)))
        pos = found.end()
    return out


def truthy(value: Any) -> bool:
    return value not in (None, False, 0, "") if not isinstance(value, dict | list) else True


def _coerce(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


class _Parser:
    def __init__(self, text: str, context: Mapping[str, Any]) -> None:
        self.tokens = _tokens(text)
        self.pos = 0
        self.context = context

    def peek(self) -> str | None:
        return self.tokens[self.pos][1] if self.pos < len(self.tokens) else None

    def take(self, expected: str | None = None) -> tuple[str, str]:
        token = self.tokens[self.pos]
        assert expected is None or token[1] == expected, f"expected {expected!r}, got {token[1]!r}"
        self.pos += 1
        return token

    def expression(self) -> Any:
        value = self.conjunction()
        while self.peek() == "||":
            self.take()
            right = self.conjunction()
            value = value if truthy(value) else right
        return value

    def conjunction(self) -> Any:
        value = self.comparison()
        while self.peek() == "&&":
            self.take()
            right = self.comparison()
            value = right if truthy(value) else value
        return value

    def comparison(self) -> Any:
        value = self.unary()
        while self.peek() in ("==", "!=", "<", ">", "<=", ">="):
            op = self.take()[1]
            a, b = _coerce(value), _coerce(self.unary())
            value = {"==": a == b, "!=": a != b}.get(op)
            if value is None:
                value = {"<": a < b, ">": a > b, "<=": a <= b, ">=": a >= b}[op]
        return value

    def unary(self) -> Any:
        if self.peek() == "!":
            self.take()
            return not truthy(self.unary())
        return self.postfix(self.primary())

    def postfix(self, value: Any) -> Any:
        while self.peek() in (".", "["):
            if self.take()[1] == ".":
                key: Any = self.take()[1]
            else:
                key = self.expression()
                self.take("]")
            value = value.get(key) if isinstance(value, dict) else None
        return value

    def primary(self) -> Any:
        kind, text = self.take()
        if text == "(":
            value = self.expression()
            self.take(")")
            return value
        if kind == "string":
            return text[1:-1].replace("''", "'")
        if kind == "number":
            return float(text)
        if kind == "name" and self.peek() == "(":
            self.take("(")
            args = [self.expression()]
            while self.peek() == ",":
                self.take()
                args.append(self.expression())
            self.take(")")
            return _call(text, args)
        return {"true": True, "false": False, "null": None}.get(text, self.context.get(text))


def _call(name: str, args: list[Any]) -> Any:
    if name == "format":
        return re.sub(r"\{(\d+)\}", lambda m: _text(args[1 + int(m.group(1))]), args[0])
    if name == "contains":
        haystack, needle = args
        if isinstance(haystack, list):
            return any(_coerce(item) == _coerce(needle) for item in haystack)
        return _text(needle).lower() in _text(haystack).lower()
    if name in ("startsWith", "endsWith"):
        text, part = _text(args[0]).lower(), _text(args[1]).lower()
        return text.startswith(part) if name == "startsWith" else text.endswith(part)
    raise AssertionError(f"function {name} is not known here")


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def evaluate(expression: str, context: Mapping[str, Any]) -> Any:
    """The value of one expression (the text of an `if:`, or what stands inside ``${{ }}``)."""
    parser = _Parser(expression, context)
    value = parser.expression()
    assert parser.peek() is None, f"unread tokens in {expression!r}: {parser.tokens[parser.pos :]}"
    return value


def interpolate(template: str, context: Mapping[str, Any]) -> str:
    """A string with ``${{ expression }}`` parts, as the runner renders it."""
    return re.sub(r"\$\{\{(.*?)\}\}", lambda m: _text(evaluate(m.group(1), context)), template, flags=re.S)
