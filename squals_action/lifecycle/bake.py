"""The bake: BLUE serves its share while in-flight tests run and the KPIs are checked every interval.

The loop wakes every ``rollout.check_interval`` seconds (and at once when an in-flight test fails), checks
BLUE's health through the provider, reads the Dealer's tallies, and ends with a :class:`BakeOutcome`. It
takes plain callables, so tests can drive it without a Dealer, and never changes traffic itself: the caller
returns all traffic to GREEN when the outcome is a breach.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from squals_action.dealer.interface import VariantTally
from squals_action.errors import SqualsError
from squals_action.lifecycle.hooks import CommandRun, run_one
from squals_action.lifecycle.kpi import KpiReading, breach_reason, evaluate, metrics_since
from squals_action.lifecycle.machine import Check
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
    """How the bake ended: ``ok`` or the breach's reason, with the last KPI readings and the test results."""

    ok: bool
    reason: str | None
    readings: tuple[KpiReading, ...] = ()
    tests: tuple[Check, ...] = ()
    checks_done: int = 0
    elapsed: float = 0.0
    metrics: Mapping[str, float | None] = field(default_factory=dict)


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
    blue: str,
    rollout: Rollout,
    tallies: Callable[[], Mapping[str, VariantTally]],
    health: Callable[[], HealthReading],
    tests: CommandRun | None = None,
    on_tick: Callable[[BakeTick], None] | None = None,
    cancel: threading.Event | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> BakeOutcome:
    """Watch BLUE for ``rollout.bake`` seconds: the first breach ends it, else time and the tests do.

    ``cancel`` (set on Ctrl-C) ends the bake as a breach whose reason says it was interrupted.
    """
    interval = max(
        0.05, min(rollout.check_interval, rollout.bake) if rollout.bake > 0 else rollout.check_interval
    )
    wake = threading.Event()
    stop = threading.Event()
    runner = (
        _InflightRunner(rollout.inflight_tests, tests, wake, stop)
        if tests and rollout.inflight_tests
        else None
    )
    start = clock()
    deadline = start + rollout.bake
    try:
        baseline = tallies().get(blue)
    except SqualsError as exc:
        return BakeOutcome(ok=False, reason=f"cannot read the Dealer's tallies: {exc.one_line()}")
    if runner is not None:
        runner.start()
    readings: tuple[KpiReading, ...] = ()
    metrics: Mapping[str, float | None] = {}
    done = 0
    suspect = False  # the previous check found BLUE unhealthy (not gone)

    def outcome(ok: bool, reason: str | None) -> BakeOutcome:
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
            metrics=metrics,
        )

    while True:
        remaining = deadline - clock()
        if remaining > 0:
            wake.wait(timeout=min(interval, remaining))
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
                return outcome(False, f"BLUE {blue} is not healthy: {reading.detail}")
            suspect = True
            continue
        suspect = False
        try:
            now = tallies().get(blue) or VariantTally(name=blue)
        except SqualsError as exc:
            return outcome(False, f"cannot read the Dealer's tallies: {exc.one_line()}")
        metrics = metrics_since(now, baseline)
        readings = evaluate(rollout.kpis, metrics)
        if on_tick is not None:
            on_tick(BakeTick(elapsed=clock() - start, bake=rollout.bake, readings=readings, metrics=metrics))
        reason = breach_reason(readings)
        if reason is not None:
            return outcome(False, reason)
        if clock() >= deadline and (runner is None or not runner.is_alive()):
            failing = runner.failure() if runner else None
            if failing is not None:
                return outcome(False, f"in-flight test {failing.name} failed: {failing.detail}")
            return outcome(True, None)
