"""``squals validate`` finds the scripts the commands start (``run: ./scripts/announce.sh``) missing before a
deploy exits 127 on them (issue 14, finding 6): in the working tree, or in the commit ``--commit`` names."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support.lifecycle import git

SQUALS = """\
version: 1
name: shop
app: {start: ./bin/serve --port 8000, workdir: web}
gates:
  test:
    - {name: unit, run: ./node_modules/.bin/jest --ci}
    - {name: lint, run: ./lint.sh, workdir: tools}
hooks:
  before_preprod: [{run: ./scripts/present.sh}]
  after_preprod: [{run: ./scripts/announce.sh after_preprod, timeout: 30s}]
exit_tests:
  - {name: e2e, run: SHOP=1 ./scripts/e2e.sh}
experiment:
  variants:
    control: {squals: squals.yml}
    green: {squals: variants/green.yml}
  split: {control: 50, green: 50}
  objective: {maximize: conversion, numerator: "event:checkout", denominator: visitors}
"""
GREEN = "version: 1\nname: shop\napp: {start: python3 app.py}\nhooks:\n  promote: [{run: ./green.sh}]\n"


def validate(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "squals_action.cli", "validate", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=60,
    )


def shop(root: Path) -> Path:
    """A repository whose squals file starts seven scripts: three there, four missing (one of them
    generated: under node_modules, which git ignores)."""
    repo = root / "shop"
    (repo / "variants").mkdir(parents=True)
    git(root, "init", "-q", "-b", "main", str(repo))
    (repo / "squals.yml").write_text(SQUALS)
    (repo / "variants" / "green.yml").write_text(GREEN)
    (repo / ".gitignore").write_text("node_modules/\n")
    for script in ("scripts/present.sh", "scripts/e2e.sh", "tools/lint.sh"):
        (repo / script).parent.mkdir(parents=True, exist_ok=True)
        (repo / script).write_text("#!/bin/sh\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "shop")
    return repo


def test_missing_scripts_are_one_line_each_with_file_line_and_path(tmp_path: Path) -> None:
    repo = shop(tmp_path)
    done = validate(repo)
    assert done.returncode == 1, done.stderr
    assert done.stdout.splitlines() == [
        "squals.yml:3:14: error: $.app.start: expected an existing script, web/bin/serve is not in the "
        "working tree",
        "squals.yml:10:25: error: $.hooks.after_preprod[0].run: expected an existing script, "
        "scripts/announce.sh is not in the working tree",
        "variants/green.yml:5:19: error: $.hooks.promote[0].run: expected an existing script, "
        "variants/green.sh is not in the working tree",  # relative to the variant file's folder
    ]
    assert done.stderr == "squals: 3 problems in 1 file\n"


def test_with_commit_the_scripts_are_looked_for_in_that_commit(tmp_path: Path) -> None:
    repo = shop(tmp_path)
    for script in ("web/bin/serve", "scripts/announce.sh", "variants/green.sh"):
        (repo / script).parent.mkdir(parents=True, exist_ok=True)
        (repo / script).write_text("#!/bin/sh\n")
    assert validate(repo).returncode == 0  # all there, in the working tree
    head = git(repo, "rev-parse", "HEAD")[:12]
    done = validate(repo, "--commit", "HEAD")  # not in the commit a deploy of HEAD would run
    assert done.returncode == 1
    assert [line.split(": ")[-1] for line in done.stdout.splitlines()] == [
        f"expected an existing script, {path} is not in commit HEAD ({head})"
        for path in ("web/bin/serve", "scripts/announce.sh", "variants/green.sh")
    ]
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "scripts")
    (repo / "scripts" / "e2e.sh").unlink()  # gone from the working tree, still in the commit
    assert validate(repo, "--commit", "HEAD").returncode == 0
    assert "scripts/e2e.sh is not in the working tree" in validate(repo).stdout


def test_a_commit_that_does_not_exist_is_a_usage_error(tmp_path: Path) -> None:
    repo = shop(tmp_path)
    done = validate(repo, "--commit", "no-such-ref")
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == f"squals: error: 'no-such-ref' is not a commit of the repository at {repo}\n"
