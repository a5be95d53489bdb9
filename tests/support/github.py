"""Shared helpers for the GitHub tests: the payload fixtures and the OpenAPI excerpt."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "github"
EVENTS = FIXTURES / "events"


def event(name: str) -> dict[str, Any]:
    """A payload file from tests/fixtures/github/events (see the README there for its source)."""
    data: dict[str, Any] = json.loads((EVENTS / f"{name}.json").read_text())
    return data


def openapi() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / "openapi-excerpt.json").read_text())
    return data


API = "https://api.github.com"
REPO = "Codertocat/Hello-World"
BASE = f"{API}/repos/{REPO}"
#: PyGithub sends every request to host:443 explicitly; mocks are registered at that address.
WIRE = f"{API}:443/repos/{REPO}"


def example(
    method: str, template: str, code: str = "200", which: str | None = None, /, **overrides: Any
) -> Any:
    """A documented response example from the OpenAPI excerpt, with ``overrides`` applied on top."""
    import copy

    examples = openapi()["paths"][template][method]["responses"][code]
    value = copy.deepcopy(examples[which] if which else next(iter(examples.values())))
    if isinstance(value, dict):
        value.update(overrides)
    return value


def _template_regex(template: str) -> re.Pattern[str]:
    pattern = re.sub(r"\\{[a-z_]+\\}", r"[^/]+", re.escape(template))
    return re.compile(f"^{pattern}$")


def find_operation(method: str, path: str) -> tuple[str, dict[str, Any]]:
    """The documented operation for ``method path`` (path below /repos/...), or an AssertionError."""
    ops = openapi()["paths"]
    matches = [t for t in ops if _template_regex(t).match(path) and method.lower() in ops[t]]
    assert matches, f"{method} {path} is not in the OpenAPI excerpt"
    # the most specific template: the one with the fewest placeholders
    template = min(matches, key=lambda t: t.count("{"))
    return template, ops[template][method.lower()]


def check_schema(value: Any, schema: dict[str, Any], where: str, closed: bool = True) -> None:
    """A small JSON-Schema check: types, required, known properties, enums, maxLength, maxItems.

    ``closed``: properties not described are errors (GitHub ignores or rejects them); alternatives of
    ``anyOf``/``oneOf`` only add constraints, they do not close the object again.
    """
    types = schema.get("type")
    kinds = {
        "object": dict,
        "array": list,
        "string": str,
        "boolean": bool,
        "integer": int,
        "number": (int, float),
    }
    if isinstance(types, str):
        assert isinstance(value, kinds[types]), f"{where}: {value!r} is not {types}"  # type: ignore[arg-type]
    if "enum" in schema:
        assert value in schema["enum"], f"{where}: {value!r} not in {schema['enum']}"
    if "maxLength" in schema and isinstance(value, str):
        assert len(value) <= schema["maxLength"], f"{where}: longer than {schema['maxLength']}"
    if isinstance(value, dict) and "properties" in schema:
        unknown = set(value) - set(schema["properties"]) if closed else set()
        assert not unknown, f"{where}: properties not in the API description: {sorted(unknown)}"
        missing = set(schema.get("required", [])) - set(value)
        assert not missing, f"{where}: required properties missing: {sorted(missing)}"
        for key, sub in value.items():
            if key in schema["properties"]:
                check_schema(sub, schema["properties"][key], f"{where}.{key}")
    if isinstance(value, list) and "items" in schema:
        if "maxItems" in schema:
            assert len(value) <= schema["maxItems"], f"{where}: more than {schema['maxItems']} items"
        for i, item in enumerate(value):
            check_schema(item, schema["items"], f"{where}[{i}]")
    for alt in ("oneOf", "anyOf"):
        if alt in schema:
            errors = []
            for option in schema[alt]:
                try:
                    check_schema(value, option, where, closed=False)
                    break
                except AssertionError as exc:
                    errors.append(str(exc))
            else:
                raise AssertionError(f"{where}: matches none of {alt}: {errors}")


def assert_documented(method: str, url: str, body: Any) -> None:
    """The call exists in GitHub's REST description; its query and body fit the documented parameters."""
    from urllib.parse import parse_qs, urlsplit

    parts = urlsplit(url)
    host = parts.netloc.removesuffix(":443")
    assert parts.scheme == "https" and host in ("api.github.com", "ghe.example.com"), url
    path = parts.path.removeprefix("/api/v3")
    template, op = find_operation(method, path)
    query = set(parse_qs(parts.query))
    declared = {p["name"] for p in op["parameters"] if p["in"] == "query"}
    assert query <= declared, f"{method} {template}: undocumented query parameters {sorted(query - declared)}"
    schema = op.get("requestBody")
    if body is None:
        assert schema is None or method in ("GET", "DELETE"), f"{method} {template}: body expected"
        return
    assert schema is not None, f"{method} {template} takes no body"
    check_schema(body, schema, f"{method} {template}")
