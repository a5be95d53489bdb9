"""Compile and test gates: one user command each, run through :mod:`squals_action.process`."""

from __future__ import annotations

import re
import time
from pathlib import Path

from squals_action.gates.changes import first_match
from squals_action.gates.interface import Gate, GateContext, GateError, GateResult, GateStatus
from squals_action.manifest.model import Command, GateStage, TestGate
from squals_action.process import ProcessError, read_log_tail, run_command


def log_name(stage: str, name: str) -> str:
    """A file name for a gate's log that no gate name can turn into a path outside the log directory."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "gate"
    return f"{stage}-{safe[:80]}.log"


class CommandGate(Gate):
    """Runs a declared command in its own process group with the command's timeout, env and workdir."""

    def __init__(self, command: Command, stage: GateStage, grace: float = 5.0) -> None:
        self.command = command
        self.name = command.name
        self.stage = stage
        self.grace = grace

    @property
    def paths(self) -> tuple[str, ...]:
        return self.command.paths if isinstance(self.command, TestGate) else ()

    def skip_reason(self, ctx: GateContext) -> str | None:
        """Why this gate does not apply to the change, or ``None`` when it must run."""
        if not self.paths or ctx.changed_files is None:
            return None
        if first_match(ctx.changed_files, self.paths) is None:
            return f"no changed file matches {', '.join(self.paths)}"
        return None

    def _workdir(self, ctx: GateContext) -> Path:
        repo = ctx.repo.resolve()
        workdir = (ctx.squals_dir / self.command.workdir).resolve()
        if workdir != repo and repo not in workdir.parents:
            raise GateError(
                f"{self.command.location}: workdir {self.command.workdir!r} of gate {self.name!r} "
                "is outside the repository"
            )
        if not workdir.is_dir():  # named as the squals file writes it, never by a temporary checkout's path
            raise GateError(
                f"{self.command.location}: workdir {self.command.workdir!r} of gate {self.name!r} "
                "is not a folder"
            )
        return workdir

    def run(self, ctx: GateContext) -> GateResult:
        reason = self.skip_reason(ctx)
        now = time.time()
        if reason is not None:
            return GateResult(
                self.name, self.stage, "skip", 0.0, f"skipped: {reason}", started_at=now, ended_at=now
            )
        env = {**ctx.env, "SQUALS_GATE": self.name, "SQUALS_STAGE": self.stage, **self.command.env}
        log_path = ctx.log_dir / log_name(self.stage, self.name)
        try:
            result = run_command(
                self.command.run,
                log_path=log_path,
                timeout=self.command.timeout,
                env=env,
                cwd=self._workdir(ctx),
                grace=self.grace,
                passthrough=ctx.passthrough,
            )
        except ProcessError as exc:
            raise GateError(f"gate {self.name!r}: {exc.one_line()}") from exc
        status: GateStatus
        if result.timed_out:
            status = "timeout"
            summary = f"timed out after {self.command.timeout:g}s; process group killed"
        elif result.exit_code == 0:
            status, summary = "pass", "exit code 0"
        else:
            status = "fail"
            last = read_log_tail(result.log_path, max_bytes=2048, max_lines=1).strip()
            summary = f"exit code {result.exit_code}" + (f": {last[:160]}" if last else "")
        return GateResult(
            name=self.name,
            stage=self.stage,
            status=status,
            duration=result.duration,
            summary=summary,
            log_path=result.log_path,
            started_at=result.started_at,
            ended_at=result.ended_at,
        )
