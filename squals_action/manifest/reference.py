"""The squals-file reference (``docs/squals-file.md``), generated from the schema's descriptions.

One source of truth: editors show the schema's descriptions on hover, and this page is rendered from the
same text (a test keeps the committed page in step; regenerate with ``squals schema --format markdown``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from squals_action.manifest.schema import load_schema

HEADER = """# The squals file

<!-- Generated from schemas/squals.schema.json by `squals schema --format markdown`; do not edit by hand. -->

{description}

Validate with `squals validate [PATH...]` (no path: `squals.yml` and `squals/*.yml` at the repository root).
Problems print as `path:line:col: error: <where>: <what was expected>`; the exit code is 0 when valid,
1 when a problem was found and 2 for a usage error. Under GitHub Actions (`GITHUB_ACTIONS=true`) the same
problems are also printed as `::error file=...,line=...,col=...::` workflow commands, so they show on the
pull request's diff; `--format github` prints only those, `--format json` one JSON document. Editors that
understand JSON Schema can use `squals schema > squals.schema.json` for completion and hover help. The
workflow that runs the action is described in [github.md](github.md).

## Value grammar

- **Duration**: {duration}
- **Percentage**: {percentage}
- **Amount**: {amount}
- **Name**: {name}
- **Metric**: {metric}
- **Path**: {relpath}

## Limits

Files over 1 MiB, bytes that are not UTF-8, more than one YAML document, nesting deeper than 64 levels,
duplicate keys, YAML tags other than the plain ones, `.inf`/`.nan`, and aliases expanding to more than
10,000 nodes are refused before anything else is checked.

## Keys
"""


def _resolve(schema: Mapping[str, Any], root: Mapping[str, Any]) -> Mapping[str, Any]:
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        target = root["$defs"][ref.removeprefix("#/$defs/")]
        merged = dict(target)
        merged.update({k: v for k, v in schema.items() if k != "$ref"})
        return merged
    return schema


_DEF_WORDS = {
    "relpath": "path",
    "env": "env mapping",
    "parameters": "parameter mapping",
    "commands": "list of command",
    "test_gate": "test gate",
    "amount": "number or percentage",
}


def _type_of(schema: Mapping[str, Any], root: Mapping[str, Any]) -> str:
    ref = schema.get("$ref")
    if isinstance(ref, str):
        name = ref.removeprefix("#/$defs/")
        return _DEF_WORDS.get(name, name.replace("_", " "))
    if "const" in schema:
        return f"`{json.dumps(schema['const'])}`"
    if "enum" in schema:
        return " \\| ".join(f"`{v}`" for v in schema["enum"])
    kind = schema.get("type", "")
    if not kind and "anyOf" in schema:
        return " or ".join(_type_of(b, root) for b in schema["anyOf"])
    if kind == "array":
        items = schema.get("items", {})
        return f"list of {_type_of(items, root)}"
    if kind == "object":
        extra = schema.get("additionalProperties")
        if isinstance(extra, Mapping) and "properties" not in schema:
            return f"mapping of name to {_type_of(extra, root)}"
        return "mapping"
    if isinstance(kind, list):
        return " or ".join(kind)
    return str(kind) or "value"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _rows(schema: Mapping[str, Any], root: Mapping[str, Any], prefix: str, out: list[str]) -> None:
    schema = _resolve(schema, root)
    props = schema.get("properties")
    extra = schema.get("additionalProperties")
    items = schema.get("items")
    if isinstance(props, Mapping):
        required = set(schema.get("required", ()))
        for key, sub in props.items():
            sub_resolved = _resolve(sub, root)
            path = f"{prefix}.{key}" if prefix else key
            default = sub.get("default", sub_resolved.get("default"))
            notes = []
            if key in required:
                notes.append("required")
            if default is not None:
                notes.append(f"default `{json.dumps(default)}`")
            note = f" ({', '.join(notes)})" if notes else ""
            out.append(
                f"| `{path}` | {_type_of(sub, root)} | {_cell(str(sub.get('description', '')))}{note} |"
            )
            _rows(sub, root, path, out)
    if isinstance(extra, Mapping) and extra:
        extra_resolved = _resolve(extra, root)
        if "properties" in extra_resolved:
            _rows(extra, root, f"{prefix}.<name>", out)
    if isinstance(items, Mapping):
        _rows(items, root, f"{prefix}[]", out)
    for branch in schema.get("anyOf", ()):
        if isinstance(branch, Mapping) and "properties" in branch:
            _rows(branch, root, prefix, out)


def render_reference(schema: Mapping[str, Any] | None = None) -> str:
    """The markdown reference page for ``schema`` (default: the shipped one)."""
    root = schema if schema is not None else load_schema()
    defs = root["$defs"]
    text = HEADER.format(
        description=_cell(root["description"]),
        **{
            name: _cell(defs[name]["description"])
            for name in ("duration", "percentage", "amount", "name", "metric", "relpath")
        },
    )
    rows = ["| key | type | description |", "|---|---|---|"]
    _rows(root, root, "", rows)
    example = root.get("examples", [{}])[0]
    body = "\n".join(rows)
    from yaml import safe_dump

    sample = safe_dump(example, sort_keys=False, default_flow_style=None, width=100)
    return f"{text}\n{body}\n\n## Example\n\n```yaml\n{sample}```\n"
