"""What a gate is and what it returns: the small door between the runner, the gates and the reports.

A gate never raises for an ordinary failure: it returns a :class:`GateResult` whose ``status`` says what
happened, so one gate's failure never stops the others and reports can show every gate.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from squals_action.errors import SqualsError
from squals_action.manifest.model import EMPTY, GateStage

GateStatus = Literal["pass", "fail", "skip", "error", "timeout"]
GATE_STATUSES: tuple[GateStatus, ...] = ("pass", "fail", "skip", "error", "timeout")
#: Statuses that let a change go on to provisioning.
OK_STATUSES: frozenset[GateStatus] = frozenset({"pass", "skip"})


class GateError(SqualsError):
    """A gate could not do its job (bad dependency file, unreachable database, unknown base ref).

    The runner turns it into a result with status ``error`` and this message as the summary.
    """


@dataclass(frozen=True)
class Finding:
    """One thing a gate wants a human to look at, pointing at a file line when it can.

    ``blocking`` findings are the reason a gate failed; the others are warnings. ``details`` holds
    JSON-ready extra fields (advisory aliases, fixed versions, a risk factor's points).
    """

    kind: str
    message: str
    severity: str | None = None
    file: str | None = None
    line: int | None = None
    blocking: bool = False
    details: Mapping[str, object] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "message": self.message,
            "severity": self.severity,
            "file": self.file,
            "line": self.line,
            "blocking": self.blocking,
            "details": dict(self.details),
        }


@dataclass(frozen=True)
class GateResult:
    """The outcome of one gate. Times are epoch seconds; ``duration`` is monotonic seconds."""

    name: str
    stage: GateStage
    status: GateStatus
    duration: float
    summary: str
    findings: tuple[Finding, ...] = ()
    log_path: Path | None = None
    started_at: float = 0.0
    ended_at: float = 0.0
    url: str | None = None  # where a check run or commit status (``gates.checks``) shows its details

    @property
    def ok(self) -> bool:
        return self.status in OK_STATUSES

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "stage": self.stage,
            "status": self.status,
            "duration": round(self.duration, 3),
            "summary": self.summary,
            "findings": [f.to_json() for f in self.findings],
            "log_path": str(self.log_path) if self.log_path else None,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "url": self.url,
        }


@dataclass(frozen=True)
class GateContext:
    """Everything a gate may look at: the checkout, the change, where to write logs, extra environment.

    ``changed_files`` is ``None`` when the change is unknown (no base): then path filters match everything,
    so no test is skipped by mistake. ``env`` holds ``SQUALS_*`` variables every gate command receives.
    ``base_dir`` is the squals file's directory, which its relative paths (``workdir``, dependency files,
    database directories) start from; it defaults to the repository root. ``source_env`` holds the
    variables of squals' own environment that the vulnerability sources read (``SQUALS_OSV_URL``,
    ``SAFETY_API_KEY``, …): settings of squals, not of the commands the squals file names.
    """

    repo: Path
    log_dir: Path
    base: str | None = None
    head: str = "HEAD"
    changed_files: tuple[str, ...] | None = None
    env: Mapping[str, str] = EMPTY
    base_dir: Path | None = None
    #: The squals file's ``env_passthrough``: which of squals' own secrets gate commands may see.
    passthrough: tuple[str, ...] = ()
    source_env: Mapping[str, str] = EMPTY

    @property
    def squals_dir(self) -> Path:
        return self.base_dir if self.base_dir is not None else self.repo

    def repo_relative(self, path: Path) -> str:
        """``path`` relative to the repository root (as annotations want it), or as given if outside."""
        try:
            return path.resolve().relative_to(self.repo.resolve()).as_posix()
        except ValueError:
            return str(path)


class Gate(ABC):
    """One gate of a stage. Implementations return results; they raise only :class:`GateError`."""

    name: str
    stage: GateStage

    @abstractmethod
    def run(self, ctx: GateContext) -> GateResult:
        """Run the gate against the change described by ``ctx``."""


def run_one(gate: Gate, ctx: GateContext) -> GateResult:
    """Run a gate and turn any exception into a result with status ``error`` (failures are values)."""
    started = time.time()
    start = time.monotonic()
    try:
        return gate.run(ctx)
    except GateError as exc:
        summary = exc.one_line()
    except Exception as exc:  # a bug in one gate must not take the others down
        summary = f"internal error: {type(exc).__name__}: {' '.join(str(exc).split())[:200]}"
    duration = time.monotonic() - start
    return GateResult(
        gate.name, gate.stage, "error", duration, summary, started_at=started, ended_at=started + duration
    )
