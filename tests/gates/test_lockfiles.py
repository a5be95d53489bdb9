"""Dependency-file parsers on realistic files (npm/yarn files were produced by npm 11 and yarn 1/4)."""

from __future__ import annotations

import json

import pytest

from squals_action.gates.security.interface import LockfileError
from squals_action.gates.security.lockfiles import npm, yarn
from squals_action.gates.security.lockfiles.registry import parse_text, parser_for
from tests.support.gates import LOCKFILES


def _parse(name: str, as_name: str | None = None):  # type: ignore[no-untyped-def]
    return parse_text((LOCKFILES / name).read_text(), as_name or name)


def _line_of(name: str, number: int) -> str:
    return (LOCKFILES / name).read_text().splitlines()[number - 1]


def test_requirements_pins_and_unpinned() -> None:
    parsed = _parse("requirements.txt")
    pins = {(d.name, d.version): d.line for d in parsed.dependencies}
    assert pins == {
        ("certifi", "2023.7.22"): 9,
        ("charset-normalizer", "3.2.0"): 13,
        ("idna", "3.4"): 16,
        ("requests", "2.25.0"): 19,
        ("urllib3", "1.26.18"): 22,
        ("Jinja2", "2.4.1"): 23,
    }
    unpinned = {u.name: (u.spec, u.line) for u in parsed.unpinned}
    assert unpinned["flask"] == (">=2.0", 24)
    assert unpinned["gunicorn"] == ("(no version)", 25)
    assert unpinned["django"][1] == 27
    assert any(u.spec == "editable" for u in parsed.unpinned)


def test_poetry_lock_lines_and_local_packages() -> None:
    parsed = _parse("poetry.lock")
    found = {d.name: (d.version, d.line) for d in parsed.dependencies}
    assert found == {
        "certifi": ("2023.7.22", 4),
        "idna": ("3.4", 15),
        "pytest": ("7.4.2", 39),
        "requests": ("2.25.0", 56),
    }
    assert "internal-lib" not in found  # a directory source is the project's own code
    for _, line in found.values():
        assert _line_of("poetry.lock", line).startswith("name = ")


def test_pipfile_lock_default_and_develop() -> None:
    parsed = _parse("Pipfile.lock")
    found = {d.name: (d.version, d.dev) for d in parsed.dependencies}
    assert found == {
        "jinja2": ("2.10", False),
        "markupsafe": ("2.1.3", False),
        "requests": ("2.25.0", False),
        "gunicorn": ("20.0.0", True),
    }
    for dep in parsed.dependencies:
        assert _line_of("Pipfile.lock", dep.line).strip() == f'"{dep.name}": {{'
    assert [u.name for u in parsed.unpinned] == ["shop-core"]


def test_package_lock_v3_with_workspaces_and_nested_node_modules() -> None:
    parsed = _parse("workspaces-package-lock.json", "package-lock.json")
    data = json.loads((LOCKFILES / "workspaces-package-lock.json").read_text())
    registry_entries = [
        k for k, v in data["packages"].items() if k and "node_modules/" in k and not v.get("link")
    ]
    assert len(parsed.dependencies) == len(registry_entries) > 300
    by_path_line = {d.line: d for d in parsed.dependencies}
    # The workspace's own conflicting lodash is nested under the workspace.
    nested = [d for d in parsed.dependencies if d.name == "lodash"]
    assert {d.version for d in nested} == {"4.17.21", "4.17.15"}
    ws = next(d for d in nested if d.version == "4.17.15")
    assert (
        _line_of("workspaces-package-lock.json", ws.line).strip() == '"packages/web/node_modules/lodash": {'
    )
    # Nested node_modules/a/node_modules/b entries carry b's name and their own line.
    debug = [d for d in parsed.dependencies if d.name == "debug"]
    assert len(debug) >= 3
    for dep in debug:
        assert _line_of("workspaces-package-lock.json", dep.line).strip().endswith('node_modules/debug": {')
    # Workspace sources and their links are not registry packages.
    names = {d.name for d in parsed.dependencies}
    assert "@shop/web" not in names and "@shop/api" not in names
    assert any(d.dev for d in parsed.dependencies) and len(by_path_line) == len(parsed.dependencies)


def test_package_lock_v1_and_errors() -> None:
    v1 = json.dumps(
        {
            "name": "old",
            "lockfileVersion": 1,
            "dependencies": {
                "express": {
                    "version": "4.17.1",
                    "dependencies": {"debug": {"version": "2.6.9"}},
                },
                "local": {"version": "file:../local"},
            },
        },
        indent=2,
    )
    parsed = npm.parse(v1, "package-lock.json")
    assert sorted((d.name, d.version) for d in parsed.dependencies) == [
        ("debug", "2.6.9"),
        ("express", "4.17.1"),
    ]
    with pytest.raises(LockfileError, match=r"package-lock.json:3: not valid JSON"):
        npm.parse('{\n "a": 1,\n oops\n}', "package-lock.json")
    assert npm.package_name("packages/app/node_modules/@scope/x") == "@scope/x"
    assert npm.package_name("packages/app") is None


def test_yarn_v1_real_lockfile() -> None:
    parsed = _parse("yarn-v1.lock", "yarn.lock")
    found = {d.name: d for d in parsed.dependencies}
    assert found["lodash"].version == "4.17.15"
    assert found["@babel/code-frame"].version == "7.12.13"
    assert found["minimist"].version == "0.0.8"
    for dep in parsed.dependencies:
        header = _line_of("yarn-v1.lock", dep.line)
        assert header.lstrip('"').startswith(dep.name + "@") and header.endswith(":")


def test_yarn_berry_real_lockfile_skips_workspaces() -> None:
    parsed = _parse("yarn-berry.lock", "yarn.lock")
    assert sorted((d.name, d.version) for d in parsed.dependencies) == [
        ("debug", "2.6.9"),
        ("lodash", "4.17.15"),
        ("minimist", "0.0.8"),
        ("ms", "2.0.0"),
    ]


def test_yarn_bad_header_names_the_line() -> None:
    with pytest.raises(LockfileError, match=r"yarn.lock:3: expected"):
        yarn.parse('# yarn lockfile v1\n\nlodash@^4 "oops"\n  version "4.17.21"\n', "yarn.lock")


def test_registry_by_file_name() -> None:
    assert parser_for("requirements-dev.txt") is not None
    assert parser_for("sub/dir/package-lock.json") is npm.parse
    assert parser_for("package.json") is None
    with pytest.raises(LockfileError, match=r"poetry.lock:\d+: not valid TOML"):
        parse_text("[[package]\nname = 1\n", "poetry.lock")
