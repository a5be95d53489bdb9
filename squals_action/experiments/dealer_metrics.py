"""Metrics from the Dealer's per-variant tallies: the source every experiment has without declaring one.

Names follow the squals file: ``visitors`` (sticky units seen), ``activations`` (requests), ``errors``,
``error_rate`` (percent), ``p50_latency_ms``/``p95_latency_ms``/``p99_latency_ms`` and ``event:<name>``
(responses carrying ``X-Squals-Event: <name>``, or events posted to the Dealer). Tallies are cumulative
since the experiment's Dealer started, which is what the statistics want. An ``event:<name>`` also comes
with its proportion's sufficient statistics: the units that sent it at least once among the units seen.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from squals_action.dealer.interface import DealerError, VariantTally
from squals_action.experiments.interface import MetricError, Reading
from squals_action.experiments.sufficient import Proportion, Sufficient
from squals_action.manifest.model import DEALER_METRICS

#: Metrics a tally always has (latencies may still be unmeasured before the first response).
_COUNTS = frozenset({"visitors", "units", "activations", "errors", "error_rate"})


def tally_value(tally: VariantTally, metric: str) -> float | None:
    """One metric of one tally in the squals file's unit; ``None`` when not measured (yet)."""
    if metric in ("visitors", "units"):
        return float(tally.units)
    if metric == "activations":
        return float(tally.activations)
    if metric == "errors":
        return float(tally.errors)
    if metric == "error_rate":
        return 100.0 * tally.error_rate
    if metric.startswith("event:"):
        return float(tally.events.get(metric[len("event:") :], 0))
    latency = {
        "p50_latency_ms": tally.latency_p50_ms,
        "p95_latency_ms": tally.latency_p95_ms,
        "p99_latency_ms": tally.latency_p99_ms,
    }
    return latency.get(metric)


class DealerMetrics:
    """A :class:`~squals_action.experiments.interface.MetricSource` over a Dealer's ``tallies()``."""

    name = "dealer"

    def __init__(self, tallies: Callable[[], Mapping[str, VariantTally]]) -> None:
        self._tallies = tallies

    def knows(self, metric: str) -> bool:
        return metric in DEALER_METRICS or metric in _COUNTS or metric.startswith("event:")

    def read(self, metrics: Sequence[str], variants: Sequence[str]) -> Reading:
        try:
            tallies = self._tallies()
        except DealerError as exc:
            raise MetricError(f"the experiment's Dealer cannot be read: {exc.one_line()}") from exc
        values: dict[str, dict[str, float]] = {}
        missing: dict[str, dict[str, str]] = {}
        stats: dict[str, dict[str, Sufficient]] = {}
        for variant in variants:
            tally = tallies.get(variant) or VariantTally(variant)
            for metric in metrics:
                if not self.knows(metric):
                    continue
                value = tally_value(tally, metric)
                if value is None:
                    missing.setdefault(variant, {})[metric] = "no response measured yet"
                else:
                    values.setdefault(variant, {})[metric] = value
                if metric.startswith("event:"):  # units sending it among the units seen: a proportion
                    converters = tally.event_units.get(metric[len("event:") :], 0)
                    stats.setdefault(variant, {})[metric] = Proportion(
                        units=tally.units, converters=converters
                    )
        return Reading(values, missing, stats)
