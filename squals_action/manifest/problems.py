"""Problems found in squals files, as values, and the one exception that carries them.

Every problem names a file, a 1-based line and column, where in the document it is (a JSONPath-like
``$.gates.test[1].timeout``) and what was expected, so editors, terminals and PR annotations all point
at the same spot.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from squals_action.errors import SqualsError

PathPart = str | int
#: Everything ``str.splitlines`` breaks on, escaped so a rendered problem is always one line.
_LINE_BREAKS = {ord(c): f"\\u{ord(c):04x}" for c in "\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"} | {
    ord("\n"): "\\n",
    ord("\r"): "\\r",
}
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


def in_commit(name: str, commit: str = "") -> str:
    """``name``, with `` in commit 1a2b3c4d5e6f`` for a file read from a commit: a checkout in a temporary
    folder is never named, the user knows the repository's path and the commit."""
    return f"{name} in commit {commit}" if commit else name


def located(file: str, line: int, col: int, commit: str = "") -> str:
    """``squals.yml:12:3``, or ``squals.yml:12:3 in commit 1a2b3c4d5e6f`` (:func:`in_commit`)."""
    return in_commit(f"{file}:{line}:{col}", commit)


def format_where(path: Sequence[PathPart]) -> str:
    """``("gates", "test", 1, "timeout")`` -> ``$.gates.test[1].timeout``; odd keys get ``["..."]``."""
    out = ["$"]
    for part in path:
        if isinstance(part, int):
            out.append(f"[{part}]")
        elif _IDENT.match(part):
            out.append(f".{part}")
        else:
            out.append(f"[{json.dumps(part, ensure_ascii=False)}]")
    return "".join(out)


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong in one squals file."""

    file: str
    line: int
    col: int
    where: str
    message: str
    severity: str = field(default="error", compare=False)
    #: the commit the file was read from, as messages name it (``1a2b3c4d5e6f``); "" for the working tree
    commit: str = field(default="", compare=False)

    @property
    def at(self) -> str:
        """``path:line:col``, with the commit the file was read from (:func:`located`)."""
        return located(self.file, self.line, self.col, self.commit)

    def render(self) -> str:
        """``path:line:col: error: <where>: <expected>`` — the text format of ``squals validate``."""
        return f"{self.at}: {self.severity}: {self.where}: {self.message}".translate(_LINE_BREAKS)

    def as_dict(self) -> dict[str, object]:
        found: dict[str, object] = {
            "file": self.file,
            "line": self.line,
            "col": self.col,
            "where": self.where,
            "message": self.message,
            "severity": self.severity,
        }
        if self.commit:
            found["commit"] = self.commit
        return found


class ManifestError(SqualsError):
    """A squals file is invalid; carries the first problem's location and all problems found."""

    def __init__(
        self,
        file: str,
        line: int,
        col: int,
        where: str,
        message: str,
        problems: Sequence[Problem] = (),
        *,
        commit: str = "",
    ) -> None:
        self.file = file
        self.line = line
        self.col = col
        self.where = where
        self.message = message
        first = Problem(file, line, col, where, message, commit=commit)
        self.problems: tuple[Problem, ...] = tuple(problems) or (first,)
        more = len(self.problems) - 1
        suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more > 0 else ""
        super().__init__(f"{first.at}: {where}: {message}{suffix}")

    @classmethod
    def from_problems(cls, problems: Iterable[Problem]) -> ManifestError:
        ordered = sorted(set(problems))
        if not ordered:
            raise ValueError("a ManifestError needs at least one problem")
        first = ordered[0]
        return cls(
            first.file, first.line, first.col, first.where, first.message, ordered, commit=first.commit
        )

    @property
    def problem(self) -> Problem:
        return self.problems[0]


@dataclass(frozen=True)
class FileResult:
    """The outcome for one squals file: its model when valid."""

    path: str
    manifest: (
        object | None
    )  # a squals_action.manifest.model.Manifest; typed loosely to keep this module light
    problems: tuple[Problem, ...] = ()


@dataclass(frozen=True)
class ValidationReport:
    """All problems of a set of squals files, sorted by file and position; valid when there are none."""

    files: tuple[str, ...]
    problems: tuple[Problem, ...]
    results: tuple[FileResult, ...] = ()

    @property
    def valid(self) -> bool:
        return not any(p.severity == "error" for p in self.problems)

    def as_dict(self) -> dict[str, object]:
        return {
            "valid": self.valid,
            "files": list(self.files),
            "problems": [p.as_dict() for p in self.problems],
        }
