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

    def render(self) -> str:
        """``path:line:col: error: <where>: <expected>`` — the text format of ``squals validate``."""
        text = f"{self.file}:{self.line}:{self.col}: {self.severity}: {self.where}: {self.message}"
        return text.translate(_LINE_BREAKS)

    def as_dict(self) -> dict[str, object]:
        return {
            "file": self.file,
            "line": self.line,
            "col": self.col,
            "where": self.where,
            "message": self.message,
            "severity": self.severity,
        }


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
    ) -> None:
        self.file = file
        self.line = line
        self.col = col
        self.where = where
        self.message = message
        first = Problem(file, line, col, where, message)
        self.problems: tuple[Problem, ...] = tuple(problems) or (first,)
        more = len(self.problems) - 1
        suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more > 0 else ""
        super().__init__(f"{file}:{line}:{col}: {where}: {message}{suffix}")

    @classmethod
    def from_problems(cls, problems: Iterable[Problem]) -> ManifestError:
        ordered = sorted(set(problems))
        if not ordered:
            raise ValueError("a ManifestError needs at least one problem")
        first = ordered[0]
        return cls(first.file, first.line, first.col, first.where, first.message, ordered)

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
