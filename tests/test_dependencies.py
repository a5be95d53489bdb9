"""Dependencies are declared exactly as imported, and the CLI's start-up imports none of them."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "squals_action"


def imported_top_levels(root: Path) -> dict[str, set[str]]:
    """Top-level module -> files importing it, for every import statement anywhere in a module (inside
    functions and ``TYPE_CHECKING`` blocks too) and every ``importlib.import_module("literal")``."""
    found: dict[str, set[str]] = {}
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            elif (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute | ast.Name)
                and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module"
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                names = [node.args[0].value]
            for name in names:
                found.setdefault(name.split(".")[0], set()).add(str(path.relative_to(root)))
    return found


def third_party(found: dict[str, set[str]]) -> dict[str, set[str]]:
    return {
        name: files
        for name, files in found.items()
        if name not in sys.stdlib_module_names and name != "squals_action"
    }


def declared_runtime() -> set[str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return {canonicalize_name(Requirement(spec).name) for spec in project["dependencies"]}


def test_runtime_dependencies_are_exactly_the_imported_distributions() -> None:
    to_dists = packages_distributions()
    imported = third_party(imported_top_levels(PACKAGE))
    unknown = sorted(name for name in imported if name not in to_dists)
    assert not unknown, f"imported but installed by no distribution: {unknown}"
    needed: dict[str, set[str]] = {}
    for name, files in imported.items():
        for dist in to_dists[name]:
            needed.setdefault(canonicalize_name(dist), set()).update(files)
    declared = declared_runtime()
    undeclared = {dist: sorted(files) for dist, files in needed.items() if dist not in declared}
    assert not undeclared, f"imported but not declared in pyproject's dependencies: {undeclared}"
    unused = sorted(declared - set(needed))
    assert not unused, f"declared in pyproject's dependencies but never imported by squals_action: {unused}"


def test_the_walk_sees_imports_inside_functions_and_import_module(tmp_path: Path) -> None:
    (tmp_path / "mod.py").write_text(
        "import os\n"
        "from yaml import safe_load\n"
        "def later():\n"
        "    import boto3.session\n"
        "    return importlib.import_module('uvloop')\n"
        "from . import sibling\n"
    )
    found = third_party(imported_top_levels(tmp_path))
    assert set(found) == {"yaml", "boto3", "uvloop"}


def test_cli_start_up_imports_no_third_party_module() -> None:
    probe = (
        "import sys\n"
        "before = set(sys.modules)\n"
        "from squals_action.cli import main\n"
        "try:\n"
        "    main(['--version'])\n"
        "except SystemExit as exc:\n"
        "    assert exc.code == 0, exc.code\n"
        "new = {m.split('.')[0] for m in set(sys.modules) - before}\n"
        "print('THIRD=' + ','.join(sorted(new - set(sys.stdlib_module_names) - {'squals_action'})))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "THIRD=\n" in done.stdout, done.stdout  # psutil, cvss, urllib3, requests, yaml... none
