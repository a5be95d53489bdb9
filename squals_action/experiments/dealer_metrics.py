"""Metrics from the Dealer's per-variant tallies: the source every experiment has without declaring one.

Names follow the squals file: ``visitors`` (sticky units seen), ``activations`` (requests), ``errors``,
``error_rate`` (percent), ``p50_latency_ms``/``p95_latency_ms``/``p99_latency_ms`` and ``event:<name>``
(responses carrying ``X-Squals-Event: <name>``, or events posted to the Dealer; each unit counts once per
kind unless the Dealer's config caps it higher). Tallies are cumulative since the experiment's Dealer
started, which is what the statistics want.

The Dealer aggregates per unit, so every ``event:<name>`` comes with real sufficient statistics: a
proportion (the units that sent it among the units seen), or, for a ``mean`` objective, the mean per unit of
its value (of its count when its events carry no value) with n, sum and sum of squares over units; and a
ratio ``<numerator>/<denominator>`` with ``event:<name>`` or ``activations`` over ``activations`` or
``visitors``, with the per-unit sums, squares and cross products the delta method needs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from squals_action.dealer.interface import DealerError, EventSums, VariantTally
from squals_action.experiments.interface import MetricError, Reading
from squals_action.experiments.sufficient import Mean, Proportion, Ratio, Sufficient
from squals_action.manifest.model import DEALER_METRICS

#: Metrics a tally always has (latencies may still be unmeasured before the first response).
_COUNTS = frozenset({"visitors", "units", "activations", "errors", "error_rate"})
#: What a ratio's sides may be: a per-unit quantity over requests or over units.
_RATIO_DENOMINATORS = frozenset({"activations", "visitors", "units"})


def _per_unit(tally: VariantTally, metric: str) -> tuple[float, float, float]:
    """Sum over units of a per-unit quantity x, of x² and of x times the unit's requests: an event's value
    (its count when its events carry none), or the requests themselves."""
    if metric == "activations":
        return tally.unit_activations, tally.unit_activations_sq, tally.unit_activations_sq
    sums = tally.event_sums.get(metric[len("event:") :], EventSums())
    if sums.value or sums.value_sq:
        return sums.value, sums.value_sq, sums.value_acts
    return sums.count, sums.count_sq, sums.count_acts


def _ratio(tally: VariantTally, numerator: str, denominator: str) -> Ratio:
    x, xx, xa = _per_unit(tally, numerator)
    n = float(tally.units)
    if denominator == "activations":
        y, yy, xy = tally.unit_activations, tally.unit_activations_sq, xa
    else:  # per unit: 1
        y, yy, xy = n, n, x
    return Ratio(n=n, numerator=x, numerator_squares=xx, denominator=y, denominator_squares=yy, cross=xy)


def _ratio_sides(metric: str) -> tuple[str, str] | None:
    numerator, sep, denominator = metric.partition("/")
    if not sep or denominator not in _RATIO_DENOMINATORS:
        return None
    if numerator != "activations" and not (numerator.startswith("event:") and "/" not in numerator):
        return None
    return numerator, denominator


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
    sides = _ratio_sides(metric)
    if sides is not None:
        return _ratio(tally, *sides).mean
    if metric.startswith("event:"):
        return float(tally.events.get(metric[len("event:") :], 0))
    latency = {
        "p50_latency_ms": tally.latency_p50_ms,
        "p95_latency_ms": tally.latency_p95_ms,
        "p99_latency_ms": tally.latency_p99_ms,
    }
    return latency.get(metric)


class DealerMetrics:
    """A :class:`~squals_action.experiments.interface.MetricSource` over a Dealer's ``tallies()``.

    ``means`` names the ``event:`` metrics whose statistics are a mean per unit (a ``mean`` objective's
    numerator) rather than a proportion of converting units.
    """

    name = "dealer"

    def __init__(
        self, tallies: Callable[[], Mapping[str, VariantTally]], means: frozenset[str] = frozenset()
    ) -> None:
        self._tallies = tallies
        self._means = means

    def knows(self, metric: str) -> bool:
        return (
            metric in DEALER_METRICS
            or metric in _COUNTS
            or (metric.startswith("event:") and "/" not in metric)
            or _ratio_sides(metric) is not None
        )

    def _stats(self, tally: VariantTally, metric: str) -> Sufficient | None:
        sides = _ratio_sides(metric)
        if sides is not None:
            return _ratio(tally, *sides)
        if metric in self._means:
            total, squares, _ = _per_unit(tally, metric)
            return Mean(n=float(tally.units), total=total, sum_squares=squares)
        if metric.startswith("event:"):  # units sending it among the units seen: a proportion
            converters = tally.event_units.get(metric[len("event:") :], 0)
            return Proportion(units=tally.units, converters=converters)
        return None

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
                given = self._stats(tally, metric)
                if given is not None:
                    stats.setdefault(variant, {})[metric] = given
        return Reading(values, missing, stats)
