"""The schema itself: draft 2020-12, described everywhere, its examples valid, the reference doc in step,
and the fast yes/no path (jsonschema-rs) agreeing with jsonschema."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from jsonschema import Draft202012Validator

from squals_action.manifest import schema as schema_module
from squals_action.manifest.reference import render_reference
from squals_action.manifest.yamlload import parse_text
from tests.support.corpus import case_dirs

from .test_property import documents

REPO = Path(__file__).resolve().parents[2]
SCHEMA = schema_module.load_schema()
VALIDATOR = Draft202012Validator(SCHEMA)
FAST = schema_module.fast_valid


def test_schema_is_draft_2020_12_with_id() -> None:
    Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert SCHEMA["$id"].startswith("https://")
    assert schema_module.schema_path().samefile(REPO / "schemas" / "squals.schema.json")


def _properties(node: Any, path: str = "#") -> list[tuple[str, dict[str, Any]]]:
    found = []
    if isinstance(node, dict):
        for name, sub in node.get("properties", {}).items():
            found.append((f"{path}/properties/{name}", sub))
        for key, sub in node.items():
            if key != "if":  # a condition, not a place where keys are declared
                found.extend(_properties(sub, f"{path}/{key}"))
    elif isinstance(node, list):
        for index, sub in enumerate(node):
            found.extend(_properties(sub, f"{path}/{index}"))
    return found


def test_every_property_has_a_description() -> None:
    props = _properties(SCHEMA)
    assert len(props) > 60
    missing = [path for path, sub in props if not str(sub.get("description", "")).strip()]
    assert missing == []
    assert all(str(d.get("description", "")).strip() for d in SCHEMA["$defs"].values())


def test_typos_are_caught_where_keys_are_fixed() -> None:
    def objects(node: Any) -> list[dict[str, Any]]:
        out = []
        if isinstance(node, dict):
            if "properties" in node:
                out.append(node)
            for key, sub in node.items():
                if key != "if":
                    out.extend(objects(sub))
        elif isinstance(node, list):
            for sub in node:
                out.extend(objects(sub))
        return out

    found = objects(SCHEMA)
    assert len(found) > 20
    assert [obj.get("description") for obj in found if obj.get("additionalProperties") is not False] == []
    assert SCHEMA["additionalProperties"] is False


def test_schema_examples_are_valid() -> None:
    for example in SCHEMA["examples"]:
        assert list(VALIDATOR.iter_errors(example)) == []

    def walk(node: Any, sub_schema: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "examples" and isinstance(value, list) and isinstance(sub_schema, dict):
                    local = {**sub_schema, "$defs": SCHEMA["$defs"]}
                    local.pop("examples", None)
                    for example in value:
                        assert list(Draft202012Validator(local).iter_errors(example)) == [], (
                            sub_schema,
                            example,
                        )
                else:
                    walk(value, value)
        elif isinstance(node, list):
            for item in node:
                walk(item, item)

    walk(SCHEMA["$defs"], SCHEMA["$defs"])
    walk(SCHEMA["properties"], SCHEMA["properties"])


def test_reference_doc_is_in_step_with_schema() -> None:
    committed = (REPO / "docs" / "squals-file.md").read_text(encoding="utf-8")
    assert committed == render_reference(), (
        "regenerate: squals schema --format markdown > docs/squals-file.md"
    )


def _readme_hook_rows() -> dict[str, tuple[str, str]]:
    """The README's hook table: stage -> (when it runs, what a failing command does), markdown emphasis
    removed."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    table = readme.split("## Hook semantics", 1)[1].split("\n\n", 2)[1]
    rows: dict[str, tuple[str, str]] = {}
    for line in table.splitlines()[2:]:
        cells = [c.strip().replace("**", "") for c in line.strip("|").split("|")]
        rows[cells[0].strip("`")] = (cells[1], cells[2])
    return rows


def test_hook_descriptions_say_what_the_readme_hook_table_says() -> None:
    """Issue 14, finding 4: the schema (so docs/squals-file.md and `squals schema`) had after_preprod run
    "after a PR's island is torn down" and after_postprod "after the previous prod is retired"."""
    hooks = SCHEMA["properties"]["hooks"]["properties"]
    rows = _readme_hook_rows()
    assert set(hooks) <= set(rows), f"hooks missing from the README's table: {sorted(set(hooks) - set(rows))}"
    for name, spec in hooks.items():
        runs, failing = rows[name]
        said = f"{runs[0].upper()}{runs[1:]}; a failing command {failing}."
        assert spec["description"].startswith(said), f"hooks.{name}: {spec['description']!r} != {said!r}"


def test_env_passthrough_lists_the_secrets_commands_do_not_see() -> None:
    from squals_action.process import SECRET_VARIABLES

    description = SCHEMA["properties"]["env_passthrough"]["description"]
    listed = description.split("By default they see none of ", 1)[1].split(":", 1)[0]
    assert {name.strip(" `") for name in listed.split(",")} == set(SECRET_VARIABLES)


def _corpus_data() -> list[Any]:
    data = []
    for kind in ("valid", "invalid"):
        for case in case_dirs(kind):
            for path in sorted(case.rglob("*.yml")):
                try:
                    data.append(parse_text(path.read_bytes().decode("utf-8-sig"), "x").data)
                except Exception:
                    continue
    return data


@pytest.mark.parametrize("data", _corpus_data())
def test_fast_check_agrees_with_jsonschema_on_corpus(data: Any) -> None:
    assert FAST(data) == (not list(VALIDATOR.iter_errors(data)))


@pytest.mark.slow
@settings(max_examples=150, deadline=None)
@given(documents)
def test_fast_check_agrees_with_jsonschema_on_random_documents(document: dict[str, Any]) -> None:
    data = yaml.safe_load(yaml.safe_dump(document))
    if FAST(data):
        assert list(VALIDATOR.iter_errors(data)) == []


def test_fast_check_booleans_are_not_numbers() -> None:
    base = {"version": 1, "name": "shop", "app": {"start": "x"}}
    assert FAST(base)
    assert not FAST({**base, "version": True})
    assert not FAST({**base, "gates": {"security": {"risk": {"max_score": True}}}})
    assert FAST({**base, "gates": {"security": {"risk": {"max_score": 7.0}}}})


def test_fast_check_is_stricter_where_regex_dialects_differ() -> None:
    """Python's ``$`` also matches before a final newline, Rust's does not: the fast path says no, and
    jsonschema (the one that phrases problems) keeps the last word."""
    named = {"version": 1, "name": "shop\n", "app": {"start": "x"}}
    assert not FAST(named)
    assert list(VALIDATOR.iter_errors(named)) == []


def test_valid_file_needs_neither_jsonschema_nor_start_up_cost(tmp_path: Path) -> None:
    """jsonschema-rs is imported by the first validation, never by ``squals --version``; a valid file
    never imports jsonschema."""
    (tmp_path / ".git").mkdir()
    target = tmp_path / "squals.yml"
    target.write_text("version: 1\nname: shop\napp: {start: python app.py}\n", encoding="utf-8")
    probe = (
        "import sys\n"
        "from squals_action.cli import main\n"
        "try:\n"
        "    main(['--version'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('VERSION', 'jsonschema_rs' in sys.modules)\n"
        f"code = main(['validate', {str(target)!r}])\n"
        "print('VALIDATE', code, 'jsonschema_rs' in sys.modules, 'jsonschema' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "VERSION False\n" in done.stdout
    assert "VALIDATE 0 True False\n" in done.stdout
