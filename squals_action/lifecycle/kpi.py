"""The KPI watcher's judgement: Dealer tallies in, readings and breaches out, with no I/O.

The Dealer's tallies are cumulative since it first started, so the bake compares the BLUE variant's tally
now with the one taken when the bake began: counts (activations, errors, events) are differences, which is
what happened *during this bake* even for an environment that served before (a roll-forward of a postprod).
``error_rate`` is errors among the requests *answered* in the window: a request is counted at its arrival but
its error only when it comes, so one still in flight is neither (``VariantTally.answered``); counted as a
success it made a drill that aborted every request read 87.5 %.
Latency percentiles come from the difference of the two latency histograms (the requests of this interval
only: a chaos drill's injected delays do not weigh on the bake after it); a tally without its histogram
gives the Dealer's current figures.

Units follow the squals file: ``error_rate`` is in percent (``max: 1%`` is ``1.0``), latencies in ms.
Metrics the Dealer does not measure here (a Prometheus query, a CloudWatch metric) read as ``None`` and are
reported as not measured; they never count as a breach, and never as a pass either.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from squals_action.dealer.interface import VariantTally
from squals_action.dealer.latency import percentiles_since
from squals_action.manifest.model import Kpi


@dataclass(frozen=True, kw_only=True)
class KpiReading:
    """One KPI at one moment: the measured value against its bounds."""

    metric: str
    value: float | None
    max: float | None = None
    min: float | None = None

    @property
    def measured(self) -> bool:
        return self.value is not None

    @property
    def ok(self) -> bool:
        """True unless the value crossed a bound; an unmeasured metric is not a breach."""
        if self.value is None:
            return True
        if self.max is not None and self.value > self.max:
            return False
        return not (self.min is not None and self.value < self.min)

    def describe(self) -> str:
        """``error_rate 12.5 > max 1`` or ``p95_latency_ms 40 (max 400)``: one phrase for reports."""
        if self.value is None:
            return f"{self.metric}: not measured"
        value = _fmt(self.value)
        if self.max is not None and self.value > self.max:
            return f"{self.metric} {value} > max {_fmt(self.max)}"
        if self.min is not None and self.value < self.min:
            return f"{self.metric} {value} < min {_fmt(self.min)}"
        bounds = [
            f"max {_fmt(self.max)}" if self.max is not None else "",
            f"min {_fmt(self.min)}" if self.min is not None else "",
        ]
        shown = ", ".join(b for b in bounds if b)
        return f"{self.metric} {value}" + (f" ({shown})" if shown else "")


def _fmt(value: float) -> str:
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"


def metrics_since(now: VariantTally, baseline: VariantTally | None) -> dict[str, float | None]:
    """The Dealer's metrics for one variant over the bake: counts since ``baseline``, current percentiles."""
    base = baseline or VariantTally(name=now.name)
    activations = max(0, now.activations - base.activations)
    answered = max(0, now.answered - base.answered)
    errors = max(0, now.answered_errors - base.answered_errors)
    latencies = (now.latency_p50_ms, now.latency_p95_ms, now.latency_p99_ms)
    if now.latency_histogram:  # a Dealer that shows its histogram: percentiles of this interval only
        latencies = percentiles_since(now.latency_histogram, base.latency_histogram)
    metrics: dict[str, float | None] = {
        "visitors": float(max(0, now.units - base.units)),
        "activations": float(activations),
        "errors": float(errors),
        "error_rate": (100.0 * errors / answered) if answered else None,
        "p50_latency_ms": latencies[0],
        "p95_latency_ms": latencies[1],
        "p99_latency_ms": latencies[2],
    }
    for event, count in now.events.items():
        metrics[f"event:{event}"] = float(max(0, count - base.events.get(event, 0)))
    return metrics


def evaluate(kpis: Sequence[Kpi], metrics: Mapping[str, float | None]) -> tuple[KpiReading, ...]:
    """Each declared KPI read from ``metrics``; a metric not present is unmeasured (``None``)."""
    return tuple(KpiReading(metric=k.metric, value=metrics.get(k.metric), max=k.max, min=k.min) for k in kpis)


def breaches(readings: Sequence[KpiReading]) -> tuple[KpiReading, ...]:
    return tuple(r for r in readings if not r.ok)


def breach_reason(readings: Sequence[KpiReading]) -> str | None:
    """The sentence a report shows when KPIs were breached, or ``None`` when all are within bounds."""
    bad = breaches(readings)
    if not bad:
        return None
    return "KPI breach: " + "; ".join(r.describe() for r in bad)
