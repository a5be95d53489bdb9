"""``gates.checks``: wait, bounded, for other check runs or commit statuses of the same commit.

Toolchain gates (``npm test``, ``go test``) cannot run inside the action's container, which has Python and git
only; they run as jobs of the workflow, and the squals file names them under ``gates.checks``. Squals looks at
the commit's check runs and statuses (the caller supplies :data:`Fetch`, GitHub's API on the action), pausing
``interval`` and then twice as long each time up to :data:`MAX_PAUSE`, until every named check completed, one
failed, or ``timeout`` passed. A name that never shows up is *not found*, a failure: never a pass.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from squals_action.gates.interface import GateResult, GateStatus
from squals_action.manifest.model import GateStage

#: Longest pause between two looks at the commit's checks.
MAX_PAUSE = 120.0
#: Conclusions that count as passed (GitHub's required checks accept these three too).
PASSED = frozenset({"success", "neutral", "skipped"})
#: Stage shown for these gates in reports.
STAGE: GateStage = "checks"
NEEDS_GITHUB = "not checked: needs GitHub (a check run or commit status of the pull request's commit)"


@dataclass(frozen=True)
class CheckState:
    """One check run or commit status: ``conclusion`` is None while it is not complete."""

    name: str
    conclusion: str | None
    url: str | None = None
    state: str = "completed"  # queued, in_progress, pending, ... while incomplete


#: Every check run and status of the commit now (the latest one per name).
Fetch = Callable[[], Sequence[CheckState]]


def not_checked(names: Sequence[str]) -> list[GateResult]:
    """What the CLI reports for ``gates.checks``: skipped, saying why (nothing was looked at)."""
    now = time.time()
    return [GateResult(n, STAGE, "skip", 0.0, NEEDS_GITHUB, started_at=now, ended_at=now) for n in names]


def wait_for_checks(
    names: Sequence[str],
    fetch: Fetch,
    *,
    timeout: float,
    interval: float,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> list[GateResult]:
    """One result per name, in the order given; returns once all completed, one failed, or at ``timeout``."""
    started_at = time.time()
    start = clock()
    pause = max(interval, 0.1)
    while True:
        seen = {c.name: c for c in fetch()}
        states = [seen.get(n) for n in names]
        complete = [s for s in states if s is not None and s.conclusion is not None]
        failed = [s for s in complete if s.conclusion not in PASSED]
        done = len(complete) == len(names)
        remaining = timeout - (clock() - start)
        if done or failed or remaining <= 0:
            elapsed = clock() - start
            reason = f"{failed[0].name} failed" if failed and not done else None
            return [
                _result(n, s, elapsed, started_at, timeout, stopped_by=reason)
                for n, s in zip(names, states, strict=True)
            ]
        sleep(min(pause, remaining))
        pause = min(pause * 2, MAX_PAUSE)


def _result(
    name: str,
    state: CheckState | None,
    elapsed: float,
    started_at: float,
    timeout: float,
    *,
    stopped_by: str | None,
) -> GateResult:
    status: GateStatus
    if state is None:
        status = "skip" if stopped_by else "fail"
        summary = (
            f"not waited for: {stopped_by}"
            if stopped_by
            else f"not found: no check run or commit status named {name!r} on the commit after "
            f"{_span(elapsed)}"
        )
    elif state.conclusion is None:
        status = "skip" if stopped_by else "timeout"
        summary = (
            f"not waited for: {stopped_by} ({state.state})"
            if stopped_by
            else f"still {state.state} after {_span(timeout)}"
        )
    else:
        status = "pass" if state.conclusion in PASSED else "fail"
        summary = state.conclusion
    url = state.url if state is not None else None
    return GateResult(
        name, STAGE, status, elapsed, summary, started_at=started_at, ended_at=started_at + elapsed, url=url
    )


def _span(seconds: float) -> str:
    if seconds >= 120:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.0f} s"
