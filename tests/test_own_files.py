"""``.squals/`` is created in one place, always with its ``.gitignore``: after any command a ``git add -A``
commits none of squals' logs or state (issue 14, finding 6: ``squals gates`` wrote ``.squals/logs`` bare)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from squals_action.own_files import OWN_DIR
from tests.support.lifecycle import git

PACKAGE = Path(__file__).resolve().parents[1] / "squals_action"
SQUALS = [sys.executable, "-m", "squals_action.cli"]
SQUALS_FILE = """\
version: 1
name: shop
app: {start: python3 app.py}
gates:
  compile: [{name: build, run: echo built}]
hooks:
  before_preprod: [{name: refuse, run: "echo not today; exit 3"}]
"""


def test_only_own_files_names_the_folder() -> None:
    """Every other module asks :func:`squals_action.own_files.own_dir` (or names it through ``OWN_DIR``)."""
    naming = sorted(
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if path.name != "own_files.py"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Constant) and node.value == OWN_DIR
    )
    assert naming == []


@pytest.mark.parametrize(
    "command",
    [["gates"], ["deploy", "--pr", "1", "--report", "none"]],
    ids=["gates", "deploy"],
)
def test_a_command_that_writes_there_leaves_nothing_for_git_add(tmp_path: Path, command: list[str]) -> None:
    git(tmp_path, "init", "-q", "-b", "main")
    (tmp_path / "squals.yml").write_text(SQUALS_FILE)
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-q", "-m", "shop")
    done = subprocess.run([*SQUALS, *command], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode in (0, 1), done.stderr  # the deploy stops at its refusing hook
    assert any((tmp_path / OWN_DIR / "logs").rglob("*.log")), "the command wrote no log"
    assert (tmp_path / OWN_DIR / ".gitignore").read_text().endswith("\n*\n")
    assert git(tmp_path, "status", "--porcelain", "--untracked-files=all") == ""
