"""Chaos tests of a promotion: one fault injected into BLUE, watched, removed, and its outcome judged.

A drill (:func:`drill`) runs one ``rollout.chaos`` test while BLUE holds its first share:

1. BLUE serves normally for ``after`` seconds;
2. the fault starts: ``kill`` through the provider (:meth:`Provider.kill`), ``latency`` or ``abort`` as the
   Dealer's faults on BLUE (``dealer/faults.py``);
3. once BLUE has answered the requests it held when the fault began (at most :data:`SETTLE_LIMIT` s), the
   bake's watcher runs for ``duration`` seconds (BLUE's health, KPIs and alarms; no in-flight tests). A
   breach ends it at once and all traffic goes back to GREEN right then, as in a real bake: the outcome is
   **back-to-green**. A whole ``duration`` without breach is **survive**. A drill that ends without data
   (too few requests, a KPI without a value) is **no data**: never a pass, whatever was expected;
4. the fault ends whatever happened: the Dealer's faults are cleared (after a latency drill the requests
   it still holds get ``delay`` and a margin to finish, so they weigh on nothing measured later), a killed
   BLUE is revived.

The promotion (``promote.py``) compares the outcome with ``expect``, records it and decides what follows.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

from squals_action.dealer.interface import DealerError
from squals_action.errors import SqualsError
from squals_action.lifecycle.bake import BakeOutcome
from squals_action.lifecycle.machine import Check, Env
from squals_action.lifecycle.traffic import Traffic
from squals_action.manifest.model import Chaos, Manifest
from squals_action.providers.interface import EnvironmentHandle, Killed, Provider

Outcome = Literal["back-to-green", "survive", "no data", "interrupted"]
#: Beyond a latency drill's delay, how long its last held requests get to finish once the fault is removed.
LATENCY_MARGIN = 0.5
#: How long, at most, a Dealer fault's drill waits for BLUE to have no request in flight before its watcher's
#: window opens (a latency fault always holds some: its window opens at this limit).
SETTLE_LIMIT = 0.5


class ChaosError(SqualsError):
    """A chaos test could not inject its fault (no Dealer to inject it, a provider that cannot kill)."""


@runtime_checkable
class FaultInjector(Protocol):
    """A traffic splitter that can delay or answer in an upstream's place (the local Dealer)."""

    def set_faults(self, faults: Mapping[str, Mapping[str, Any]]) -> None: ...

    def injected(self, name: str) -> Mapping[str, int]: ...


@dataclass(frozen=True, kw_only=True)
class DrillResult:
    """What one drill saw: its outcome, why (the watcher's reason), what was injected, and BLUE's handle
    when reviving it changed (``None`` otherwise); ``revive_error`` when BLUE could not be revived."""

    test: Chaos
    outcome: Outcome
    why: str
    injected: str
    revived: EnvironmentHandle | None = None
    revive_error: str | None = None

    @property
    def passed(self) -> bool:
        return self.outcome == self.test.expect

    def sentence(self) -> str:
        """``chaos test slow-blue passed: latency -> back-to-green as expected (KPI breach: ...)``."""
        t = self.test
        if self.passed:
            head = f"chaos test {t.name} passed: {t.kind} -> {self.outcome} as expected"
        else:
            head = f"chaos test {t.name} failed: {t.kind} -> {self.outcome}, expected {t.expect}"
        return f"{head} ({self.why}; {self.injected})"

    def check(self) -> Check:
        return Check(
            kind="chaos",
            stage="bake",
            name=self.test.name,
            ok=self.passed,
            detail=self.sentence(),
            no_data=self.outcome == "no data",
        )


def describe(test: Chaos) -> str:
    """The fault in a few words, for the progress view."""
    if test.kind == "latency":
        return f"{test.delay * 1000:g} ms of latency on {test.share:g} % of BLUE's requests"
    if test.kind == "abort":
        return f"{test.status} answered for {test.share:g} % of BLUE's requests"
    return "BLUE killed"


def dealer_fault(test: Chaos) -> dict[str, Any]:
    """The Dealer's fault (``PUT /faults``) for a ``latency`` or ``abort`` test."""
    if test.kind == "latency":
        return {"delay": {"ms": test.delay * 1000.0, "share": test.share / 100.0}}
    return {"abort": {"status": test.status, "share": test.share / 100.0}}


def injector(traffic: Traffic, test: Chaos) -> FaultInjector:
    """The splitter as a fault injector, or a one-line refusal (an ALB listener injects no fault)."""
    if not isinstance(traffic, FaultInjector):
        raise ChaosError(
            f"{test.location}: chaos test {test.name}: {test.kind} faults are injected by the local Dealer; "
            f"this project's traffic goes through {type(traffic).__name__}, which cannot inject them"
        )
    return traffic


def clear_faults(traffic: Traffic) -> None:
    """Remove whatever faults the splitter still injects: a drill cut short (its CLI killed) must not
    outlive its promotion. Nothing to do for a splitter that injects none."""
    if isinstance(traffic, FaultInjector):
        traffic.set_faults({})


def drill(
    test: Chaos,
    *,
    blue: Env,
    traffic: Traffic,
    provider: Provider,
    manifest: Manifest,
    watch: Callable[[float], BakeOutcome],
    to_green: Callable[[], object],
    cancel: threading.Event,
    extra_env: Mapping[str, str],
) -> DrillResult:
    """Run ``test`` on ``blue`` (steps in the module doc); ``watch(seconds)`` is the bake's watcher and
    ``to_green()`` sends all traffic to GREEN. Raises :class:`ChaosError` (or the provider's error) when the
    fault cannot be injected; nothing is left injected then."""
    if cancel.wait(test.after):
        return DrillResult(test=test, outcome="interrupted", why="interrupted", injected="nothing injected")
    if not blue.handle:
        raise ChaosError(f"chaos test {test.name}: BLUE {blue.name} has no provider handle recorded")
    handle = EnvironmentHandle.from_json(blue.handle)
    killed: Killed | None = None
    faults = None if test.kind == "kill" else injector(traffic, test)
    if faults is not None:
        faults.set_faults({blue.name: dealer_fault(test)})
        _settle(traffic, blue.name)
    else:
        killed = provider.kill(handle)
    try:
        watched = watch(test.duration)
        if not watched.ok and not watched.inconclusive and not cancel.is_set():
            to_green()  # users first: the watcher saw the fault, GREEN takes everything now
    finally:
        if faults is not None:
            counts = faults.injected(blue.name)
            faults.set_faults({})
            injected = _counted(test, counts)
            if test.kind == "latency":  # requests already held finish before anything after is measured
                cancel.wait(test.delay + LATENCY_MARGIN)
            revived, revive_error = None, None
        else:
            assert killed is not None
            injected = killed.detail
            revived, revive_error = _revive(provider, handle, killed, manifest, extra_env)
    return DrillResult(
        test=test,
        injected=injected,
        revived=revived,
        revive_error=revive_error,
        **_judge(test, watched, cancel),
    )


def _settle(traffic: Traffic, blue: str) -> None:
    """Wait until BLUE has no request in flight, at most :data:`SETTLE_LIMIT` s: the requests it had when the
    fault began are answered then, so every answer in the watcher's window is one to a request the fault met
    (a request from before it, answered normally just after the window opened, read 87.5 % where the fault
    aborted every request). Past the limit the window opens anyway."""
    with contextlib.suppress(DealerError):
        traffic.drain([blue], timeout=SETTLE_LIMIT)


def _revive(
    provider: Provider,
    handle: EnvironmentHandle,
    killed: Killed,
    manifest: Manifest,
    extra_env: Mapping[str, str],
) -> tuple[EnvironmentHandle | None, str | None]:
    try:
        return provider.revive(handle, killed, manifest, extra_env=extra_env), None
    except SqualsError as exc:
        return None, exc.one_line()


def _counted(test: Chaos, counts: Mapping[str, int]) -> str:
    requests = counts.get("requests", 0)
    if test.kind == "latency":
        return f"{counts.get('delayed', 0)} of {requests} requests delayed by {test.delay * 1000:g} ms"
    return f"{counts.get('aborted', 0)} of {requests} requests answered {test.status}"


def _judge(test: Chaos, watched: BakeOutcome, cancel: threading.Event) -> dict[str, Any]:
    """The outcome and why, from what the watcher saw during the fault."""
    if cancel.is_set():
        return {"outcome": "interrupted", "why": "the drill was interrupted"}
    if not watched.ok:
        if watched.inconclusive:
            return {"outcome": "no data", "why": watched.reason or "no data"}
        return {"outcome": "back-to-green", "why": watched.reason or "the watcher saw a breach"}
    if watched.no_data:
        return {"outcome": "no data", "why": "; ".join(watched.no_data)}
    served = f"{watched.requests:.0f} requests, " if watched.requests is not None else ""
    kept = "; ".join(r.describe() for r in watched.readings) or "no KPI declared"
    return {"outcome": "survive", "why": f"BLUE kept its share for {test.duration:g} s ({served}{kept})"}
