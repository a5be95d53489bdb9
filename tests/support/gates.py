"""Support of the gates tests: fixture paths, a git work tree with a bare origin, gate contexts."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from squals_action.gates.interface import GateContext

TESTS = Path(__file__).resolve().parent.parent
LOCKFILES = TESTS / "gates" / "data" / "lockfiles"
VULNDB = TESTS / "fixtures" / "vulndb"


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True, timeout=30
    ).stdout


class Repo:
    """A work tree cloned from a bare origin; ``commit`` writes files (bytes or text) and commits them."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def write(self, files: Mapping[str, str | bytes | None]) -> None:
        for name, content in files.items():
            path = self.root / name
            if content is None:
                git(self.root, "rm", "-q", name)
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content)
            git(self.root, "add", name)

    def commit(self, files: Mapping[str, str | bytes | None], message: str = "change") -> str:
        self.write(files)
        git(self.root, "commit", "-q", "-m", message)
        return git(self.root, "rev-parse", "HEAD").strip()

    def branch(self, name: str) -> None:
        git(self.root, "checkout", "-q", "-b", name)


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
