"""Blue/green promotion: BLUE gets its share and bakes (step by step), promote hooks run, BLUE takes 100 %,
postprod retires.

:meth:`Promoter.promote` reads like the README's hook table, one named step per row:
:meth:`~Promoter._route_blue` (and :meth:`~Promoter._next_step` for each further share of
``rollout.steps``), :meth:`~Promoter._bake_blue` after each, :meth:`~Promoter._promote_hooks`,
:meth:`~Promoter._switch`, :meth:`~Promoter._retire`, then the ``after_postprod`` hooks. Whenever the
promotion cannot go on (a breach, an alarm, a bake without data), :meth:`~Promoter._back_to_green` returns
all traffic to GREEN before recording why.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from squals_action.errors import SqualsError
from squals_action.lifecycle import chaos, machine
from squals_action.lifecycle.bake import BakeOutcome, HealthReading, bake
from squals_action.lifecycle.hooks import failure_message
from squals_action.lifecycle.kpi import KpiReading
from squals_action.lifecycle.machine import Check, Env, Event, Fleet, Status
from squals_action.lifecycle.signals import DealerSignals, KpiSource
from squals_action.lifecycle.source import checkout
from squals_action.lifecycle.steps import (
    LOCK_MARGIN,
    PROD_LOCK,
    LifecycleError,
    Outcome,
    Steps,
    shares,
    timeouts,
)
from squals_action.manifest.model import RolloutStep
from squals_action.providers.interface import EnvironmentHandle

E = Event


@dataclass(kw_only=True)
class _Run:
    """What one promotion has gathered so far: its checks and the bake's last readings, for the outcome."""

    name: str
    start: float
    checks: list[Check] = field(default_factory=list)
    kpis: tuple[KpiReading, ...] = ()
    metrics: Mapping[str, float | None] = field(default_factory=dict)


class Promoter(Steps):
    """The promotion, and the return to GREEN a rollback of an interrupted promotion shares."""

    def promote(self, pr: int, source: str | None = None) -> Outcome:
        """Blue/green: BLUE gets its share, bakes, promote hooks, takes 100 %; old prod becomes postprod.

        The rollout, hooks and tests are those of the squals file of the commit ``pr-N`` runs (as it was
        deployed, uncommitted files included), never the working tree's; ``source`` names another commit
        to take them from (the Action's base branch: a ``pull_request_target`` run never runs the PR's
        code).
        """
        running = _running(self.fleet().get(f"pr-{pr}"))
        commit = source or running
        if commit is None:  # never deployed: the machine refuses it with its reason
            return self._promote(pr, None)
        with checkout(self.repo, commit, self.manifest) as files:
            return self.at(files)._promote(pr, running if source is None else None)

    def _promote(self, pr: int, expected: str | None) -> Outcome:
        """The promotion, with the files bound; ``expected``: the commit pr-N must still run once locked."""
        run = _Run(name=f"pr-{pr}", start=time.monotonic())
        name = run.name
        rollout = self.manifest.rollout
        plan = rollout.plan()
        source = self._source()
        ttl = LOCK_MARGIN + rollout.total_bake + len(plan) * source.settle_limit
        with self._locked(PROD_LOCK, pr, ttl + timeouts(self.manifest, "promote"), "promote"):
            fleet = self.fleet()
            if expected is not None and _running(fleet.get(name)) != expected:
                raise LifecycleError(f"{name} was deployed again meanwhile; run the promotion again")
            green = machine.prod(fleet)
            gaps: list[str] = []
            for index, step in enumerate(plan):
                if index == 0:
                    fleet = self._route_blue(run, fleet, green, step.share)
                    chaos.clear_faults(self.traffic)  # none left by a drill cut short
                    if green is not None and rollout.chaos:
                        fleet, stop = self._chaos_drills(run, fleet, source)
                        if stop is not None:
                            reason, event = stop
                            fleet = self._back_to_green(event, name, fleet, reason, run.checks)
                            back = f"{reason}; all traffic is back on GREEN {green.name}"
                            return self._finish(run, False, back, fleet)
                else:
                    fleet = self._next_step(run, fleet, step.share)
                baked = self._bake_blue(run, fleet, green, step, source, len(plan) > 1)
                if not baked.ok:
                    reason = baked.reason or "the bake failed"
                    event = E.ABORT if self.cancel.is_set() else E.BAKE_BREACH
                    if baked.inconclusive and not self.cancel.is_set():
                        event = E.BAKE_INCONCLUSIVE
                    fleet = self._back_to_green(event, name, fleet, reason, run.checks)
                    back = f"{reason}; all traffic is back on GREEN {green.name if green else ''}".strip()
                    if event is E.BAKE_INCONCLUSIVE:
                        back += f"; {name} stays ready to promote again"
                    return self._finish(run, False, back, fleet)
                gaps += baked.no_data
                if green is None:
                    break  # a first prod took 100 % at once: no step to take
            fleet = self._record(E.BAKE_OK, name, f"{name} baked", checks=tuple(run.checks))
            self.progress.done("bake passed")
            failed = self._promote_hooks(run, fleet)
            if failed:
                fleet = self._back_to_green(E.PROMOTE_HOOK_FAILED, name, fleet, failed, run.checks)
                return self._finish(
                    run, False, f"{failed}; promotion aborted, GREEN has its full share back", fleet
                )
            old_post = machine.postprod(fleet)
            fleet = self._switch(run, fleet, green)
            self._retire(run, old_post)
            self.progress.done(f"traffic: {shares(fleet)}")
            fleet, failed = self._hook_stage("after_postprod", name, fleet, run.checks)
            if failed:
                return self._finish(
                    run, False, f"{failed}; {name} stays prod (reported, not rolled back)", fleet
                )
            postprod = f"; {green.name} is postprod at 0 %" if green else ""
            waived = f"; {_WAIVED}: {'; '.join(gaps)}" if gaps else ""
            drills = [c.name for c in run.checks if c.kind == "chaos"]
            passed = f"; chaos tests passed: {', '.join(drills)}" if drills else ""
            return self._finish(run, True, f"{name} is prod{postprod}{passed}{waived}", fleet)

    def _source(self) -> KpiSource:
        """Where the bake reads BLUE's KPIs: the source this project was given, else the Dealer's tallies."""
        return self.signals if self.signals is not None else DealerSignals(self.traffic.tallies)

    def _route_blue(self, run: _Run, fleet: Fleet, green: Env | None, blue_share: float) -> dict[str, Env]:
        """BLUE gets the first step's share (all of it as the first prod): traffic first, then the record."""
        name = run.name
        env = fleet.get(name) or Env(name=name)
        if env.status in (Status.BLUE, Status.BAKED):  # we hold the prod lock: the run promoting it is gone
            raise LifecycleError(
                f"{name} is {env.status}: a promotion whose run is gone left it there; run `squals rollback` "
                "to return all traffic to GREEN, then promote it again"
            )
        machine.step(name, env.status, E.PROMOTE_START)  # refuse early, with the machine's reason
        self._require_healthy(env, "BLUE")
        planned = machine.apply(fleet, E.PROMOTE_START, name, blue_share=blue_share)
        share = planned[name].share
        self.progress.step(
            f"{name} is BLUE with {share:g} %" + (f", {green.name} is GREEN" if green else " (first prod)")
        )
        self._route(planned)
        try:
            recorded = self._record(
                E.PROMOTE_START,
                name,
                f"promote {name}: BLUE at {share:g} %",
                blue_share=blue_share,
                checks=(),
            )
        except BaseException:
            self._undo_route(fleet)  # the state did not move: neither does the traffic
            raise
        self.progress.done(f"traffic: {shares(recorded)}")
        return recorded

    def _next_step(self, run: _Run, fleet: Fleet, blue_share: float) -> dict[str, Env]:
        """BLUE's next share of a progressive rollout: one route call, then one commit (``BLUE at 25 %``)."""
        name = run.name
        planned = machine.apply(fleet, E.STEP, name, blue_share=blue_share)
        self.progress.step(f"{name} is BLUE with {blue_share:g} %")
        self._route(planned)
        try:
            recorded = self._record(
                E.STEP,
                name,
                f"promote {name}: BLUE at {blue_share:g} %",
                step=f"{blue_share:g}",
                blue_share=blue_share,
            )
        except BaseException:
            self._undo_route(fleet)
            raise
        self.progress.done(f"traffic: {shares(recorded)}")
        return recorded

    def _bake_blue(
        self, run: _Run, fleet: Fleet, green: Env | None, step: RolloutStep, source: KpiSource, label: bool
    ) -> BakeOutcome:
        """The bake, its tests and KPI readings added to ``run``; a first prod has nothing to bake against."""
        if green is None:
            run.checks.append(
                Check(
                    kind="kpi",
                    stage="bake",
                    name="bake",
                    ok=True,
                    detail="first prod: no GREEN to compare with or return to",
                )
            )
            return BakeOutcome(ok=True, reason=None)
        rollout = self.manifest.rollout
        length = step.bake if step.bake is not None else rollout.bake
        self.progress.step(f"bake {length:g} s, checks every {rollout.check_interval:g} s")
        outcome = self._bake(fleet[run.name], fleet, source, length)
        run.kpis, run.metrics = outcome.readings, outcome.metrics
        run.checks += outcome.tests
        prefix = f"at {step.share:g} %: " if label else ""
        run.checks += kpi_checks(outcome, rollout.min_requests, rollout.on_no_data == "promote", prefix)
        return outcome

    def _chaos_drills(
        self, run: _Run, fleet: dict[str, Env], source: KpiSource
    ) -> tuple[dict[str, Env], tuple[str, Event] | None]:
        """Each of ``rollout.chaos`` in turn at BLUE's first share (``lifecycle/chaos.py``), one ``chaos``
        commit per passed test; the fleet, and why the promotion stops with its event (``None``: go on).

        A test that sent all traffic back to GREEN as expected is followed by BLUE at its share again, once
        the fault is removed and BLUE answers its health check.
        """
        name = run.name
        for test in self.manifest.rollout.chaos:
            blue = fleet[name]
            self.progress.step(
                f"chaos test {test.name}: {chaos.describe(test)} after {test.after:g} s, "
                f"for {test.duration:g} s; expecting {test.expect}"
            )

            def watch(length: float, f: Fleet = fleet) -> BakeOutcome:
                return self._bake(f[name], f, source, length, inflight=False)

            def to_green(f: Fleet = fleet) -> object:
                return self._route(machine.apply(f, E.BAKE_BREACH, name))

            try:
                result = chaos.drill(
                    test,
                    blue=blue,
                    traffic=self.traffic,
                    provider=self.provider,
                    manifest=self.manifest,
                    watch=watch,
                    to_green=to_green,
                    cancel=self.cancel,
                    extra_env={"SQUALS_PR": str(blue.pr or ""), "SQUALS_PROJECT": self.manifest.name},
                )
            except SqualsError as exc:  # nothing was left injected; BLUE proved nothing either way
                return fleet, (f"chaos test {test.name} could not run: {exc.one_line()}", E.ABORT)
            run.checks.append(result.check())
            self.progress.done(result.sentence(), ok=result.passed)
            if result.outcome == "interrupted":
                return fleet, ("the chaos tests were interrupted", E.ABORT)
            if not result.passed:
                return fleet, (result.sentence(), E.BAKE_BREACH)
            if result.revive_error is not None:
                return fleet, (
                    f"{result.sentence()}; BLUE could not be started again: {result.revive_error}",
                    E.BAKE_BREACH,
                )
            handle = result.revived or EnvironmentHandle.from_json(blue.handle or {})
            health = self.provider.health(handle)
            if not health.ok:
                why = f"{result.sentence()}; BLUE {name} is {health.status} after it ({health.detail})"
                return fleet, (why, E.BAKE_BREACH)
            updates: dict[str, Any] = (
                {"url": handle.url, "handle": handle.to_json()} if result.revived else {}
            )
            planned = machine.apply(fleet, E.CHAOS, name, **updates)
            if result.outcome == "back-to-green":
                self.progress.step(f"{name} is BLUE with {planned[name].share:g} % again")
            self._route(planned)  # BLUE back at its share (and at its new address, if it has one)
            again = f"; BLUE at {planned[name].share:g} % again" if result.outcome == "back-to-green" else ""
            fleet = self._record(
                E.CHAOS,
                name,
                f"{name}: {result.sentence()}{again}",
                step=test.name,
                checks=tuple(run.checks),
                **updates,
            )
        return fleet, None

    def _bake(
        self, blue: Env, fleet: Fleet, source: KpiSource, length: float, *, inflight: bool = True
    ) -> BakeOutcome:
        """The bake loop wired to this project: BLUE's health from the provider, tallies from the splitter
        (a chaos drill's watcher runs no in-flight tests: ``inflight=False``)."""
        handle = EnvironmentHandle.from_json(blue.handle) if blue.handle else None

        def health() -> HealthReading:
            if handle is None:
                return HealthReading(ok=False, detail="no provider handle recorded")
            h = self.provider.health(handle, timeout=min(2.0, max(1.0, self.manifest.rollout.check_interval)))
            detail = f"{h.status}: {h.detail}" if h.detail else h.status
            return HealthReading(ok=h.ok, detail=detail, fatal=h.status in ("down", "stale"))

        return bake(
            blue=blue,
            rollout=self.manifest.rollout,
            source=source,
            duration=length,
            health=health,
            tests=self._run(blue, fleet, "bake") if inflight else None,
            on_tick=self.progress.tick,
            cancel=self.cancel,
        )

    def _promote_hooks(self, run: _Run, fleet: Fleet) -> str | None:
        """The ``promote`` hooks against the baked BLUE; the failure message, or ``None`` when all passed."""
        hooks = self._hooks("promote", fleet[run.name], fleet)
        run.checks += hooks
        return failure_message(hooks, "promote hook")

    def _switch(self, run: _Run, fleet: Fleet, green: Env | None) -> dict[str, Env]:
        """BLUE takes 100 % and GREEN becomes postprod: traffic first, undone if the record fails."""
        name = run.name
        planned = machine.apply(fleet, E.COMPLETE, name, checks=tuple(run.checks))
        self.progress.step(f"{name} takes 100 %")
        self._route(planned)
        try:
            return self._record(
                E.COMPLETE,
                name,
                f"{name} is prod" + (f", {green.name} is postprod" if green else ""),
                checks=tuple(run.checks),
            )
        except BaseException:
            self._undo_route(machine.apply(fleet, E.PROMOTE_HOOK_FAILED, name))
            raise

    def _retire(self, run: _Run, old_post: Env | None) -> None:
        """Destroy the postprod the switch retired, once the splitter has drained its in-flight requests."""
        if old_post is None or old_post.name == run.name:
            return
        with contextlib.suppress(SqualsError):
            self.traffic.drain([old_post.name], timeout=10.0)
        note = self._destroy(old_post)
        run.checks.append(Check(kind="provider", stage="retire", name=old_post.name, ok=True, detail=note))

    def _back_to_green(
        self, event: Event, name: str, fleet: Fleet, reason: str, checks: list[Check]
    ) -> dict[str, Env]:
        """Traffic first (users come first), then the record."""
        planned = machine.apply(fleet, event, name, reason=reason, checks=tuple(checks))
        self.progress.step("all traffic back to GREEN")
        self._route(planned)
        recorded = self._record(
            event, name, f"{name}: {reason}; traffic back to GREEN", reason=reason, checks=tuple(checks)
        )
        self.progress.done(f"traffic: {shares(recorded)}")
        return recorded

    def _finish(self, run: _Run, ok: bool, message: str, fleet: Mapping[str, Env]) -> Outcome:
        self.progress.done(message, ok=ok)
        return self._outcome(
            "promote",
            ok,
            message,
            run.name,
            fleet,
            run.start,
            checks=run.checks,
            kpis=run.kpis,
            metrics=run.metrics,
        )


_WAIVED = "no data (promoted as the squals file allows)"


def _running(env: Env | None) -> str | None:
    """The commit an environment's app runs: its provider's (a dirty deploy's snapshot), else the
    recorded one."""
    if env is None:
        return None
    handled = (env.handle or {}).get("commit")
    return str(handled) if handled else env.commit


def kpi_checks(outcome: BakeOutcome, min_requests: int, waived: bool, prefix: str = "") -> list[Check]:
    """One check per KPI of a step's bake, and one for BLUE's requests when too few: a reading without
    data is marked ``no_data`` (shown as "no data", never as passed), passing only where the file waives
    it."""
    label = _WAIVED if waived else "no data"
    checks = [
        Check(kind="kpi", stage="bake", name=r.metric, ok=r.ok, detail=prefix + r.describe())
        if r.measured
        else Check(
            kind="kpi",
            stage="bake",
            name=r.metric,
            ok=waived,
            no_data=True,
            detail=f"{prefix}{label}: {outcome.missing.get(r.metric, 'no value')}",
        )
        for r in outcome.readings
    ]
    requests = outcome.requests
    if min_requests > 0 and (requests is None or requests < min_requests) and outcome.checks_done:
        served = "unknown" if requests is None else f"{requests:.0f}"
        checks.append(
            Check(
                kind="kpi",
                stage="bake",
                name="requests",
                ok=waived,
                no_data=True,
                detail=f"{prefix}{label}: BLUE served {served} requests (at least {min_requests} expected)",
            )
        )
    return checks
