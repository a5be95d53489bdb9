"""Fixtures of the gates tests: real git repositories with a bare origin, gate contexts."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest
from gatesfix import Repo, git

from squals_action.gates.interface import GateContext


@pytest.fixture
def make_repo(tmp_path: Path) -> Callable[[Mapping[str, str | bytes]], Repo]:
    """A repo whose ``main`` (with ``files``) is pushed to a bare origin, then branch ``feature`` checked out.

    The base of the change is ``origin/main``.
    """

    def make(files: Mapping[str, str | bytes]) -> Repo:
        origin = tmp_path / "origin.git"
        subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(origin)], check=True, timeout=30)
        work = tmp_path / "work"
        subprocess.run(["git", "init", "-q", "-b", "main", str(work)], check=True, timeout=30)
        repo = Repo(work)
        repo.commit(files or {"README.md": "shop\n"}, "initial")
        git(work, "remote", "add", "origin", str(origin))
        git(work, "push", "-q", "origin", "main")
        git(work, "fetch", "-q", "origin")
        repo.branch("feature")
        return repo

    return make


@pytest.fixture
def ctx(tmp_path: Path) -> GateContext:
    repo = tmp_path / "repo"
    repo.mkdir()
    return GateContext(repo=repo, log_dir=tmp_path / "logs")
