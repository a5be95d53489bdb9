"""The bake: BLUE serves its share while in-flight tests run and the KPIs are checked every interval.

The loop wakes every ``rollout.check_interval`` seconds (and at once when an in-flight test fails), checks
BLUE's health through the provider, reads a :class:`~squals_action.lifecycle.signals.KpiSource` (the Dealer's
tallies, or CloudWatch) for KPIs and stop signals, and ends with a :class:`BakeOutcome`. No data is not a
pass: a step whose last read lacks a KPI or the minimum of requests ends inconclusive. It never changes
traffic itself: the caller returns all traffic to GREEN when the outcome is not ok.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from squals_action.errors import SqualsError
from squals_action.lifecycle.hooks import CommandRun, run_one
from squals_action.lifecycle.kpi import KpiReading, breach_reason, evaluate
from squals_action.lifecycle.machine import Check, Env
from squals_action.lifecycle.signals import KpiSource, Signals
from squals_action.manifest.model import Command, Rollout


@dataclass(frozen=True, kw_only=True)
class HealthReading:
    """BLUE's health as the bake needs it (the provider's :class:`Health` reduced to ok + why).

    ``fatal`` readings (the process is gone) end the bake at once; a merely unhealthy answer (a slow or
    failing health endpoint on a busy machine) ends it only when the next check says the same.
    """

    ok: bool
    detail: str = ""
    fatal: bool = True


@dataclass(frozen=True, kw_only=True)
class BakeOutcome:
    """How the bake ended: ``ok``, or the breach's reason (``inconclusive`` when it is a lack of data), with
    the last KPI readings, why each missing one is missing, BLUE's requests and the test results.
    ``no_data`` lists what could not be judged (a pass with gaps when the squals file allows it)."""

    ok: bool
    reason: str | None
    inconclusive: bool = False
    readings: tuple[KpiReading, ...] = ()
    tests: tuple[Check, ...] = ()
    checks_done: int = 0
    elapsed: float = 0.0
    metrics: Mapping[str, float | None] = field(default_factory=dict)
    missing: Mapping[str, str] = field(default_factory=dict)
    requests: float | None = None
    no_data: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class BakeTick:
    """One check of the loop, for the progress view."""

    elapsed: float
    bake: float
    readings: tuple[KpiReading, ...]
    metrics: Mapping[str, float | None]


class _InflightRunner(threading.Thread):
    """Runs the in-flight tests one after another; wakes the loop at the first failure."""

    def __init__(
        self, commands: Sequence[Command], run: CommandRun, wake: threading.Event, stop: threading.Event
    ) -> None:
        super().__init__(name="squals-inflight", daemon=True)
        self.commands, self.run_spec, self.wake, self.stop = commands, run, wake, stop
        self.results: list[Check] = []

    def run(self) -> None:
        for command in self.commands:
            if self.stop.is_set():
                break
            check = run_one(command, "inflight-test", "bake", self.run_spec, cancel=self.stop)
            self.results.append(check)
            if not check.ok:
                self.wake.set()
                return

    def failure(self) -> Check | None:
        return next((c for c in list(self.results) if not c.ok), None)


def bake(
    *,
    blue: Env,
    rollout: Rollout,
    source: KpiSource,
    health: Callable[[], HealthReading],
    duration: float | None = None,
    tests: CommandRun | None = None,
    on_tick: Callable[[BakeTick], None] | None = None,
    cancel: threading.Event | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> BakeOutcome:
    """Watch BLUE for ``duration`` seconds (default ``rollout.bake``): the first breach or firing alarm
    ends it, else time and the tests do, then the last read is judged for data.

    The last read may wait (at most ``source.settle_limit`` seconds) for a source whose window lags
    (CloudWatch).
    A step that ends with a KPI without data or fewer than ``rollout.min_requests`` requests is
    *inconclusive* unless ``rollout.on_no_data`` is ``promote``; a source that cannot be read is inconclusive
    too. ``cancel`` (set on Ctrl-C) ends the bake as a breach whose reason says it was interrupted.
    """
    length = rollout.bake if duration is None else duration
    interval = max(0.05, min(rollout.check_interval, length) if length > 0 else rollout.check_interval)
    wake = threading.Event()
    stop = threading.Event()
    runner = (
        _InflightRunner(rollout.inflight_tests, tests, wake, stop)
        if tests and rollout.inflight_tests
        else None
    )
    start = clock()
    deadline = start + length
    try:
        source.begin(blue)
    except SqualsError as exc:
        return BakeOutcome(ok=False, inconclusive=True, reason=f"cannot read BLUE's KPIs: {exc.one_line()}")
    if runner is not None:
        runner.start()
    readings: tuple[KpiReading, ...] = ()
    signals = Signals(metrics={})
    done = 0
    suspect = False  # the previous check found BLUE unhealthy (not gone)
    overtime = False  # past the deadline, waiting for the tests or for the source's last window

    def outcome(ok: bool, reason: str | None, **extra: Any) -> BakeOutcome:
        stop.set()
        if runner is not None:
            runner.join()
        return BakeOutcome(
            ok=ok,
            reason=reason,
            readings=readings,
            tests=tuple(runner.results) if runner else (),
            checks_done=done,
            elapsed=clock() - start,
            metrics=signals.metrics,
            missing=signals.missing,
            requests=signals.requests,
            **extra,
        )

    while True:
        remaining = deadline - clock()
        pause = min(interval, remaining) if remaining > 0 else (interval if overtime else 0.0)
        if pause > 0:
            wake.wait(timeout=pause)
        wake.clear()
        if cancel is not None and cancel.is_set():
            return outcome(False, "the bake was interrupted")
        failing = runner.failure() if runner else None
        if failing is not None:
            return outcome(False, f"in-flight test {failing.name} failed: {failing.detail}")
        reading = health()
        done += 1
        if not reading.ok:
            if reading.fatal or suspect:
                return outcome(False, f"BLUE {blue.name} is not healthy: {reading.detail}")
            suspect = True
            continue
        suspect = False
        final = clock() >= deadline and (runner is None or not runner.is_alive())
        try:
            signals = source.read(final=final)
        except SqualsError as exc:
            return outcome(False, f"cannot read BLUE's KPIs: {exc.one_line()}", inconclusive=True)
        readings = evaluate(rollout.kpis, signals.metrics)
        if on_tick is not None:
            on_tick(
                BakeTick(elapsed=clock() - start, bake=length, readings=readings, metrics=signals.metrics)
            )
        reason = signals.stop_reason or breach_reason(readings)
        if reason is not None:
            return outcome(False, reason)
        if clock() < deadline:
            continue
        if not final or (signals.pending and clock() < deadline + source.settle_limit):
            overtime = True
            continue
        gaps = no_data(readings, signals, rollout.min_requests, blue.name)
        if signals.pending:
            gaps.insert(
                0, f"{signals.pending}; not readable within {source.settle_limit:g} s of the bake's end"
            )
        if gaps and rollout.on_no_data == "inconclusive":
            return outcome(False, "inconclusive: " + "; ".join(gaps), inconclusive=True, no_data=tuple(gaps))
        return outcome(True, None, no_data=tuple(gaps))


def no_data(readings: Sequence[KpiReading], signals: Signals, min_requests: int, blue: str) -> list[str]:
    """What the step could not judge: too few requests for BLUE, and each KPI without a value (with why)."""
    gaps: list[str] = []
    if min_requests > 0:
        if signals.requests is None:
            why = signals.missing.get("activations", "no data")
            gaps.append(f"BLUE {blue}'s requests: {why}")
        elif signals.requests < min_requests:
            gaps.append(
                f"BLUE {blue} served {signals.requests:.0f} requests during the bake "
                f"(at least {min_requests} expected)"
            )
    for r in readings:
        if not r.measured:
            gaps.append(f"{r.metric}: {signals.missing.get(r.metric, 'no data')}")
    return gaps
