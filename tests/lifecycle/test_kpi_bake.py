"""The KPI judgement and the bake loop, driven by fake tallies and health (no processes, fast): breaches,
health, and no data (too few requests, a KPI without a value, a source that cannot be read) as
inconclusive."""

from __future__ import annotations

import itertools
import threading

from squals_action.dealer.interface import DealerError, VariantTally
from squals_action.lifecycle import kpi
from squals_action.lifecycle.bake import HealthReading, bake
from squals_action.lifecycle.machine import Env, Status
from squals_action.lifecycle.signals import DealerSignals
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


BLUE = Env(name="pr-2", status=Status.BLUE, share=10.0)


def _rollout(bake_s: float = 0.4, **kw: object) -> Rollout:
    return Rollout(blue_share=10, bake=bake_s, check_interval=0.05, **kw)  # type: ignore[arg-type]


def _growing() -> DealerSignals:
    """BLUE's tallies with ten more requests at every read, none failed."""
    reads = itertools.count(1)
    return DealerSignals(lambda: {"pr-2": VariantTally("pr-2", activations=10 * next(reads))})


def test_bake_passes_when_healthy_and_within_bounds() -> None:
    out = bake(
        blue=BLUE,
        rollout=_rollout(kpis=(Kpi("error_rate", max=1.0),)),
        source=_growing(),
        health=lambda: HealthReading(ok=True),
    )
    assert out.ok and out.reason is None and out.checks_done >= 2 and out.no_data == ()
    assert out.requests is not None and out.requests >= 20


def test_too_few_requests_or_a_kpi_without_data_is_inconclusive_unless_the_file_allows() -> None:
    kpis = (Kpi("error_rate", max=1.0),)
    out = bake(
        blue=BLUE,
        rollout=_rollout(0.2, kpis=kpis),
        source=DealerSignals(dict),
        health=lambda: HealthReading(ok=True),
    )
    assert not out.ok and out.inconclusive
    assert out.reason == (
        "inconclusive: BLUE pr-2 served 0 requests during the bake (at least 1 expected); "
        "error_rate: no data: BLUE pr-2 served no request through the Dealer during this step"
    )
    out = bake(
        blue=BLUE,
        rollout=_rollout(0.2, kpis=kpis, min_requests=1000),
        source=_growing(),
        health=lambda: HealthReading(ok=True),
    )
    assert out.inconclusive and out.reason is not None and "(at least 1000 expected)" in out.reason
    out = bake(
        blue=BLUE,
        rollout=_rollout(0.2, kpis=kpis, on_no_data="promote"),
        source=DealerSignals(dict),
        health=lambda: HealthReading(ok=True),
    )
    assert out.ok and not out.inconclusive and len(out.no_data) == 2


def test_a_source_that_cannot_be_read_is_inconclusive_not_a_pass() -> None:
    def broken() -> dict[str, VariantTally]:
        raise DealerError("connection refused")

    out = bake(
        blue=BLUE, rollout=_rollout(0.2), source=DealerSignals(broken), health=lambda: HealthReading(ok=True)
    )
    assert not out.ok and out.inconclusive
    assert out.reason == "cannot read BLUE's KPIs: cannot read the Dealer's tallies: connection refused"


def test_bake_stops_at_the_first_unhealthy_check() -> None:
    calls = []

    def health() -> HealthReading:
        calls.append(1)
        return HealthReading(ok=len(calls) < 3, detail="down: process gone")

    out = bake(blue=BLUE, rollout=_rollout(60.0), source=DealerSignals(dict), health=health)
    assert not out.ok and out.checks_done == 3
    assert out.reason == "BLUE pr-2 is not healthy: down: process gone"


def test_bake_breaches_on_errors_seen_through_the_dealer() -> None:
    seen = iter([VariantTally("pr-2"), VariantTally("pr-2", activations=10, errors=5)])
    last = VariantTally("pr-2", activations=10, errors=5)
    out = bake(
        blue=BLUE,
        rollout=_rollout(60.0, kpis=(Kpi("error_rate", max=1.0),)),
        source=DealerSignals(lambda: {"pr-2": next(seen, last)}),
        health=lambda: HealthReading(ok=True),
    )
    assert not out.ok and out.reason == "KPI breach: error_rate 50 > max 1"


def test_bake_can_be_interrupted() -> None:
    cancel = threading.Event()
    cancel.set()
    out = bake(
        blue=BLUE,
        rollout=_rollout(60.0),
        source=DealerSignals(dict),
        health=lambda: HealthReading(ok=True),
        cancel=cancel,
    )
    assert not out.ok and out.reason == "the bake was interrupted"


def test_one_slow_health_answer_is_forgiven_two_are_not() -> None:
    answers = iter([True, False, True, True, True, True, True, True, True, True])
    out = bake(
        blue=BLUE,
        rollout=_rollout(0.3),
        source=_growing(),
        health=lambda: HealthReading(ok=next(answers, True), detail="unhealthy: timed out", fatal=False),
    )
    assert out.ok
    answers = iter([True, False, False])
    out = bake(
        blue=BLUE,
        rollout=_rollout(60.0),
        source=DealerSignals(dict),
        health=lambda: HealthReading(ok=next(answers, False), detail="unhealthy: timed out", fatal=False),
    )
    assert not out.ok and out.checks_done == 3
    assert out.reason == "BLUE pr-2 is not healthy: unhealthy: timed out"


def test_latency_percentiles_are_those_of_the_interval_when_the_histogram_is_shown() -> None:
    from squals_action.dealer.tally import LatencyHistogram

    slow, fast = LatencyHistogram(), LatencyHistogram()
    for _ in range(100):
        slow.add(2000.0)  # a drill's injected delays, before the bake began
    for _ in range(100):
        fast.add(10.0)
    everything = dict(slow.buckets)
    for index, count in fast.buckets.items():
        everything[index] = everything.get(index, 0) + count
    base = VariantTally("pr-2", activations=100, latency_p95_ms=2000.0, latency_histogram=dict(slow.buckets))
    now = VariantTally("pr-2", activations=200, latency_p95_ms=2000.0, latency_histogram=everything)
    metrics = kpi.metrics_since(now, base)
    assert metrics["p95_latency_ms"] is not None and 9.9 <= metrics["p95_latency_ms"] <= 10.1
    assert kpi.metrics_since(base, base)["p95_latency_ms"] is None  # no request in the interval: no data
