"""The change under test: which files a ``BASE...HEAD`` diff touches, and glob path filters against them.

``BASE...HEAD`` (three dots) is the diff GitHub shows on a pull request: from the merge base to the head,
so commits that landed on the base branch meanwhile do not count as part of the change.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from squals_action.gates.interface import GateError
from squals_action.gitcmd import GIT_TIMEOUT, run_git


def git(repo: Path, *args: str, timeout: float = GIT_TIMEOUT) -> bytes:
    """Run one git command in ``repo`` and return stdout; a failure becomes a one-line :class:`GateError`."""
    return run_git(repo, *args, timeout=timeout, error=GateError)


def changed_files(repo: Path, base: str, head: str = "HEAD") -> tuple[str, ...]:
    """Paths (relative to the repository root) that ``git diff --name-only BASE...HEAD`` lists."""
    out = git(repo, "diff", "--name-only", "-z", "--no-renames", f"{base}...{head}", "--")
    return tuple(p for p in out.decode("utf-8", "surrogateescape").split("\0") if p)


@functools.lru_cache(maxsize=512)
def _compile(pattern: str) -> re.Pattern[str]:
    """A gitignore-like glob: ``*`` and ``?`` stay in one path segment, ``**`` crosses segments."""
    anchored = "/" in pattern.rstrip("/")
    pat = pattern.lstrip("/")
    if pat.endswith("/"):
        pat += "**"
    out: list[str] = []
    i = 0
    while i < len(pat):
        ch = pat[i]
        if pat.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pat.startswith("**", i):
            out.append(".*")
            i += 2
        elif ch == "*":
            out.append("[^/]*")
            i += 1
        elif ch == "?":
            out.append("[^/]")
            i += 1
        elif ch == "[":
            end = pat.find("]", i + 1)
            if end == -1:
                out.append(re.escape(ch))
                i += 1
            else:
                body = pat[i + 1 : end].replace("\\", "\\\\")
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append(f"[{body}]")
                i = end + 1
        else:
            out.append(re.escape(ch))
            i += 1
    body = "".join(out)
    # An unanchored pattern (no slash) matches a file or directory name at any depth, as in .gitignore.
    prefix = "" if anchored else "(?:.*/)?"
    return re.compile(f"^{prefix}{body}(?:/.*)?$")


def matches(path: str, pattern: str) -> bool:
    """True when ``path`` matches the glob ``pattern`` (``src/**``, ``*.py``, ``tests/unit/``)."""
    return _compile(pattern).match(path) is not None


def first_match(paths: Iterable[str], patterns: Sequence[str]) -> str | None:
    """The first changed path that matches any pattern, or ``None``."""
    for path in paths:
        if any(matches(path, p) for p in patterns):
            return path
    return None
