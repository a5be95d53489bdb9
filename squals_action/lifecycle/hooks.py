"""Hooks, exit tests and in-flight tests: user commands run with the environment's names as variables.

Every command runs through :func:`squals_action.process.run_command` (own process group, its own timeout,
output to a log file), gets ``SQUALS_*`` variables describing the environment it concerns, and comes back as
a :class:`~squals_action.lifecycle.machine.Check` value: a failing command is a value, never an exception.
Values from the PR (branch names, titles) only ever travel in environment variables, never in the command.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from squals_action.faults import point
from squals_action.lifecycle.machine import Check
from squals_action.manifest.model import NOWHERE, Command
from squals_action.process import ProcessError, read_log_tail, run_command


@dataclass(frozen=True, kw_only=True)
class CommandRun:
    """How to run one batch of commands: where, with which variables, logging where."""

    cwd: Path
    log_dir: Path
    variables: Mapping[str, str]
    #: The squals file's ``env_passthrough``: which of squals' own secrets the commands may see.
    passthrough: tuple[str, ...] = ()


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")[:60] or "command"


def run_one(
    command: Command, kind: str, stage: str, run: CommandRun, *, cancel: threading.Event | None = None
) -> Check:
    """Run ``command`` and say how it went; a command that cannot even start is a failed check."""
    log = run.log_dir / f"{_slug(stage)}-{_slug(command.name)}.log"
    env = {**run.variables, **dict(command.env), "SQUALS_STAGE": stage}
    cwd = (run.cwd / command.workdir).resolve()
    if not cwd.is_dir():
        # named as the squals file writes it, never by the folder it would run in (a temporary checkout)
        where = "" if command.location == NOWHERE else f" ({command.location})"
        detail = f"cannot run {command.run!r}: workdir {command.workdir!r}{where} is not a folder"
        return Check(kind=kind, stage=stage, name=command.name, ok=False, detail=detail)
    try:
        result = run_command(
            command.run,
            log_path=log,
            timeout=command.timeout,
            env=env,
            cwd=cwd,
            grace=2.0,
            cancel=cancel,
            passthrough=run.passthrough,
        )
    except ProcessError as exc:
        return Check(kind=kind, stage=stage, name=command.name, ok=False, detail=exc.one_line())
    if result.ok:
        return Check(kind=kind, stage=stage, name=command.name, ok=True, duration=result.duration)
    if result.timed_out:
        why = f"timed out after {command.timeout:g} s"
    elif result.cancelled:
        why = "stopped: the bake ended early"
    else:
        why = f"exit {result.exit_code}"
    tail = read_log_tail(log, max_bytes=2048, max_lines=3).strip("\n")
    return Check(
        kind=kind,
        stage=stage,
        name=command.name,
        ok=False,
        detail=f"{why}; log {log}",
        output=tail,
        duration=result.duration,
    )


def run_sequence(
    commands: Sequence[Command], kind: str, stage: str, run: CommandRun, *, stop_at_failure: bool = True
) -> tuple[Check, ...]:
    """Run commands in order; hooks stop at the first failure (the rest are reported as skipped)."""
    checks: list[Check] = []
    failed = False
    if commands:
        point(f"{kind}:{stage}")  # a kill point of the fault sweep (squals_action.faults)
    for command in commands:
        if failed and stop_at_failure:
            checks.append(
                Check(
                    kind=kind,
                    stage=stage,
                    name=command.name,
                    ok=False,
                    detail="skipped: an earlier hook failed",
                )
            )
            continue
        check = run_one(command, kind, stage, run)
        checks.append(check)
        failed = failed or not check.ok
    return tuple(checks)


def first_failure(checks: Sequence[Check]) -> Check | None:
    for check in checks:
        if not check.ok:
            return check
    return None


def failure_message(checks: Sequence[Check], what: str) -> str | None:
    """``after_preprod hook migrate failed: exit 3; log ...`` or ``None`` when all passed."""
    bad = first_failure(checks)
    if bad is None:
        return None
    return f"{what} {bad.name} failed: {bad.detail}"
