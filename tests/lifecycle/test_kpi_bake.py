"""The KPI judgement and the bake loop, driven by fake tallies and health (no processes, fast)."""

from __future__ import annotations

import threading

from squals_action.dealer.interface import VariantTally
from squals_action.lifecycle import kpi
from squals_action.lifecycle.bake import HealthReading, bake
from squals_action.manifest.model import Kpi, Rollout


def test_metrics_are_differences_since_the_bake_began() -> None:
    base = VariantTally("pr-2", units=5, activations=100, errors=10, events={"checkout": 3})
    now = VariantTally(
        "pr-2", units=9, activations=300, errors=12, events={"checkout": 7}, latency_p95_ms=42.0
    )
    metrics = kpi.metrics_since(now, base)
    assert metrics["activations"] == 200 and metrics["errors"] == 2 and metrics["error_rate"] == 1.0
    assert metrics["visitors"] == 4 and metrics["event:checkout"] == 4 and metrics["p95_latency_ms"] == 42.0


def test_bounds_and_unmeasured_metrics() -> None:
    kpis = (
        Kpi("error_rate", max=1.0),
        Kpi("p95_latency_ms", max=400),
        Kpi("event:checkout", min=1),
        Kpi("cpu"),
    )
    readings = kpi.evaluate(kpis, {"error_rate": 2.5, "p95_latency_ms": 12.0, "event:checkout": 0.0})
    assert [r.ok for r in readings] == [False, True, False, True]
    assert kpi.breach_reason(readings) == "KPI breach: error_rate 2.5 > max 1; event:checkout 0 < min 1"
    assert readings[3].describe() == "cpu: not measured"
    no_traffic = kpi.metrics_since(VariantTally("pr-2"), None)
    assert kpi.evaluate((Kpi("error_rate", max=1.0),), no_traffic)[0].ok  # 0 requests: nothing to judge


def _rollout(bake_s: float = 0.4, **kw: object) -> Rollout:
    return Rollout(blue_share=10, bake=bake_s, check_interval=0.05, **kw)  # type: ignore[arg-type]


def test_bake_passes_when_healthy_and_within_bounds() -> None:
    out = bake(
        blue="pr-2",
        rollout=_rollout(kpis=(Kpi("error_rate", max=1.0),)),
        tallies=lambda: {"pr-2": VariantTally("pr-2", activations=10)},
        health=lambda: HealthReading(ok=True),
    )
    assert out.ok and out.reason is None and out.checks_done >= 2


def test_bake_stops_at_the_first_unhealthy_check() -> None:
    calls = []

    def health() -> HealthReading:
        calls.append(1)
        return HealthReading(ok=len(calls) < 3, detail="down: process gone")

    out = bake(blue="pr-2", rollout=_rollout(60.0), tallies=dict, health=health)
    assert not out.ok and out.checks_done == 3
    assert out.reason == "BLUE pr-2 is not healthy: down: process gone"


def test_bake_breaches_on_errors_seen_through_the_dealer() -> None:
    seen = iter([VariantTally("pr-2"), VariantTally("pr-2", activations=10, errors=5)])
    last = VariantTally("pr-2", activations=10, errors=5)
    out = bake(
        blue="pr-2",
        rollout=_rollout(60.0, kpis=(Kpi("error_rate", max=1.0),)),
        tallies=lambda: {"pr-2": next(seen, last)},
        health=lambda: HealthReading(ok=True),
    )
    assert not out.ok and out.reason == "KPI breach: error_rate 50 > max 1"


def test_bake_can_be_interrupted() -> None:
    cancel = threading.Event()
    cancel.set()
    out = bake(
        blue="pr-2",
        rollout=_rollout(60.0),
        tallies=dict,
        health=lambda: HealthReading(ok=True),
        cancel=cancel,
    )
    assert not out.ok and out.reason == "the bake was interrupted"


def test_one_slow_health_answer_is_forgiven_two_are_not() -> None:
    answers = iter([True, False, True, True, True, True, True, True, True, True])
    out = bake(
        blue="pr-2",
        rollout=_rollout(0.3),
        tallies=dict,
        health=lambda: HealthReading(ok=next(answers, True), detail="unhealthy: timed out", fatal=False),
    )
    assert out.ok
    answers = iter([True, False, False])
    out = bake(
        blue="pr-2",
        rollout=_rollout(60.0),
        tallies=dict,
        health=lambda: HealthReading(ok=next(answers, False), detail="unhealthy: timed out", fatal=False),
    )
    assert not out.ok and out.checks_done == 3
    assert out.reason == "BLUE pr-2 is not healthy: unhealthy: timed out"
