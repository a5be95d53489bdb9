"""Dependencies, advisories and the vulnerability-source interface every database plugs into."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from squals_action.gates.interface import GateError
from squals_action.manifest.model import Severity

Ecosystem = Literal["PyPI", "npm"]


def normalize_name(name: str, ecosystem: str) -> str:
    """The canonical package name: PEP 503 for PyPI (``Foo_Bar`` is ``foo-bar``); npm names as written."""
    if ecosystem == "PyPI":
        return re.sub(r"[-_.]+", "-", name).lower()
    return name


@dataclass(frozen=True, order=True)
class Dependency:
    """One resolved package of a dependency file, with the 1-based line that declares it."""

    ecosystem: Ecosystem
    name: str
    version: str
    file: str
    line: int
    dev: bool = False

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.ecosystem, normalize_name(self.name, self.ecosystem), self.version)


@dataclass(frozen=True)
class Unpinned:
    """A requirement without an exact version: it cannot be checked, so it is reported as such."""

    name: str
    spec: str
    file: str
    line: int


@dataclass(frozen=True)
class ParsedFile:
    path: str
    dependencies: tuple[Dependency, ...]
    unpinned: tuple[Unpinned, ...] = ()


class LockfileError(GateError):
    """A dependency file that cannot be read; the message names file, line and what was expected."""

    def __init__(self, file: str, line: int, message: str) -> None:
        super().__init__(f"{file}:{line}: {message}")
        self.file = file
        self.line = line


@dataclass(frozen=True)
class Advisory:
    """A published vulnerability as one source describes it for one package.

    ``severity`` is ``None`` when the source gives none (reported as "unknown" and treated as blocking);
    ``score`` is the CVSS base score when one was available.
    """

    id: str
    source: str
    summary: str = ""
    aliases: tuple[str, ...] = ()
    severity: Severity | None = None
    score: float | None = None
    fixed_versions: tuple[str, ...] = ()
    url: str | None = None

    @property
    def ids(self) -> frozenset[str]:
        return frozenset((self.id, *self.aliases))

    @property
    def cves(self) -> tuple[str, ...]:
        return tuple(sorted(a for a in self.ids if a.startswith("CVE-")))


@dataclass(frozen=True)
class Match:
    dependency: Dependency
    advisory: Advisory


class VulnSourceError(GateError):
    """A source failed (network, HTTP status, unreadable database); the message starts with its name."""

    def __init__(self, source: str, message: str) -> None:
        super().__init__(f"{source}: {message}")
        self.source = source


class VulnSource(ABC):
    """A vulnerability database. ``query`` returns every advisory affecting the given dependencies."""

    name: str

    @abstractmethod
    def query(self, dependencies: Sequence[Dependency]) -> list[Match]:
        """Raise :class:`VulnSourceError` when the source cannot answer (never return a silent empty list)."""
