"""Helpers of the gates tests: fixture paths and a git work tree with a bare origin."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from pathlib import Path

DATA = Path(__file__).parent / "data"
LOCKFILES = DATA / "lockfiles"
VULNDB = Path(__file__).parent.parent / "fixtures" / "vulndb"


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
