"""The diff of a change, read as the risk score needs it: streamed, line-numbered, never held whole.

``git diff -U0`` is read line by line (a huge diff never sits in memory) and killed after a timeout; the
numbers come from ``git diff --numstat``. Paths are as git prints them with ``core.quotepath=off``.
"""

from __future__ import annotations

import re
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from squals_action.gates.changes import git
from squals_action.gates.interface import GateError

DIFF_TIMEOUT = 120.0


@dataclass
class FileDiff:
    """One file of a diff: its paths and status, the added lines with their numbers, the removed lines."""

    path: str
    old_path: str
    status: str = "M"
    added: list[tuple[int, str]] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    binary: bool = False


def stream_diff(repo: Path, base: str, head: str) -> Iterator[str]:
    """``git diff -U0`` line by line, so a huge diff is never held in memory; killed after a timeout."""
    proc = subprocess.Popen(
        [
            "git",
            "-C",
            str(repo),
            "-c",
            "core.quotepath=off",
            "diff",
            "-U0",
            "-M",
            "--no-color",
            "--no-ext-diff",
            f"{base}...{head}",
            "--",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    timer = threading.Timer(DIFF_TIMEOUT, proc.kill)
    timer.start()
    try:
        assert proc.stdout is not None
        for raw in proc.stdout:
            yield raw.decode("utf-8", "replace").rstrip("\n")
        stderr = proc.stderr.read().decode("utf-8", "replace") if proc.stderr else ""
        if proc.wait() != 0:
            detail = stderr.strip().splitlines()[-1] if stderr.strip() else f"exit {proc.returncode}"
            raise GateError(f"git diff {base}...{head} failed: {detail}")
    finally:
        timer.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout:
            proc.stdout.close()
        if proc.stderr:
            proc.stderr.close()


_HUNK = re.compile(r"^@@ -\d+(?:,\d+)? \+(\d+)(?:,\d+)? @@")


def parse_diff(lines: Iterator[str]) -> list[FileDiff]:
    """The files of a ``git diff -U0`` output, with the new line number of every added line."""
    files: list[FileDiff] = []
    current: FileDiff | None = None
    new_line = 0
    in_hunk = False
    for line in lines:
        if line.startswith("diff --git "):
            m = re.match(r"^diff --git a/(.*) b/(.*)$", line)
            old, new = (m.group(1), m.group(2)) if m else ("", "")
            current = FileDiff(path=new, old_path=old)
            files.append(current)
            in_hunk = False
            continue
        if current is None:
            continue
        if not in_hunk:
            if line.startswith("new file mode"):
                current.status = "A"
            elif line.startswith("deleted file mode"):
                current.status = "D"
            elif line.startswith("rename to "):
                current.status = "R"
                current.path = line[len("rename to ") :]
            elif line.startswith("rename from "):
                current.old_path = line[len("rename from ") :]
            elif line.startswith("Binary files ") or line == "GIT binary patch":
                current.binary = True
            elif line.startswith("+++ ") and line[4:] != "/dev/null":
                current.path = line[6:] if line.startswith("+++ b/") else line[4:]
            elif line.startswith("--- ") and line[4:] != "/dev/null":
                current.old_path = line[6:] if line.startswith("--- a/") else line[4:]
        m = _HUNK.match(line)
        if m:
            in_hunk = True
            new_line = int(m.group(1))
            continue
        if not in_hunk:
            continue
        if line.startswith("+"):
            current.added.append((new_line, line[1:]))
            new_line += 1
        elif line.startswith("-"):
            current.removed.append(line[1:])
    return files


def numstat(repo: Path, base: str, head: str) -> tuple[int, int]:
    """(changed lines, changed files) of the diff, binary files counting as files only."""
    out = git(repo, "diff", "--numstat", "-M", "-z", f"{base}...{head}", "--").decode("utf-8", "replace")
    lines = files = 0
    tokens = out.split("\0")
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if not token:
            i += 1
            continue
        parts = token.split("\t")
        if len(parts) >= 3:
            files += 1
            if parts[0].isdigit() and parts[1].isdigit():
                lines += int(parts[0]) + int(parts[1])
            # A rename is "a\td\t" followed by old and new path tokens.
            i += 3 if parts[2] == "" else 1
        else:
            i += 1
    return lines, files


def show_file(repo: Path, rev: str, path: str) -> str:
    """``path`` as it is at ``rev``; empty when it does not exist there."""
    try:
        return git(repo, "show", f"{rev}:{path}").decode("utf-8", "replace")
    except GateError:
        return ""
