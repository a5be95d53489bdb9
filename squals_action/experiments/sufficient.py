"""The sufficient statistics a metric source delivers per variant and metric: the one shape every test reads.

Three kinds, all sums over the experiment's *units* (the sticky visitor, user, cookie...), cumulative since
the start:

* :class:`Proportion` -- units and converters (units with at least one conversion): a conversion rate.
* :class:`Mean` -- ``n`` units, the sum of one value per unit and the sum of its squares: revenue per
  visitor, latency per request (when the request is the unit).
* :class:`Ratio` -- ``n`` units and, per unit, a numerator value x and a denominator value y: the sums of x,
  x², y, y² and x·y. The metric is sum(x) / sum(y) (checkouts per activation, errors per request), tested
  with the delta method because several denominators come from one unit.

These are exactly what GrowthBook's gbstats takes (``ProportionStatistic``, ``SampleMeanStatistic``,
``RatioStatistic``), and what CloudWatch (SampleCount, Sum, and a squared-value metric) and Prometheus (three
counters per metric) can give. A source puts them in :attr:`Reading.stats`; the engine carries them on
:attr:`Observation.stats`, keyed by metric name, and the document keeps them with :func:`to_json`.

:func:`problem` says why numbers cannot be statistics (NaN, infinity, a negative count, converters above
units, a sum of squares that cannot belong to its sum); bad data never reaches a test. Pure :mod:`math`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Literal

MetricKind = Literal["proportion", "mean", "ratio"]
METRIC_KINDS: tuple[MetricKind, ...] = ("proportion", "mean", "ratio")

#: Relative slack for the Cauchy-Schwarz checks: sums of squares from floats lose their last digits.
_SLACK = 1e-9


@dataclass(frozen=True, kw_only=True)
class Proportion:
    """``converters`` of ``units`` converted (each unit counts once)."""

    units: float
    converters: float

    kind: Literal["proportion"] = "proportion"

    @property
    def n(self) -> float:
        return self.units

    @property
    def mean(self) -> float:
        """The conversion rate (0 before any unit)."""
        return self.converters / self.units if self.units > 0 else 0.0

    @property
    def variance(self) -> float:
        """Per-unit variance p(1 - p) (the Bernoulli variance gbstats uses)."""
        p = self.mean
        return p * (1.0 - p)


@dataclass(frozen=True, kw_only=True)
class Mean:
    """``n`` units with values summing to ``total`` and their squares to ``sum_squares``."""

    n: float
    total: float
    sum_squares: float

    kind: Literal["mean"] = "mean"

    @property
    def mean(self) -> float:
        return self.total / self.n if self.n > 0 else 0.0

    @property
    def variance(self) -> float:
        """The per-unit sample variance (n - 1 in the denominator); 0 below two units."""
        if self.n < 2:
            return 0.0
        return max(0.0, (self.sum_squares - self.total * self.total / self.n) / (self.n - 1))


@dataclass(frozen=True, kw_only=True)
class Ratio:
    """Per unit a numerator x and a denominator y: ``n`` units, sums of x, x², y, y² and x·y."""

    n: float
    numerator: float
    numerator_squares: float
    denominator: float
    denominator_squares: float
    cross: float

    kind: Literal["ratio"] = "ratio"

    @property
    def numerator_mean(self) -> Mean:
        return Mean(n=self.n, total=self.numerator, sum_squares=self.numerator_squares)

    @property
    def denominator_mean(self) -> Mean:
        return Mean(n=self.n, total=self.denominator, sum_squares=self.denominator_squares)

    @property
    def covariance(self) -> float:
        """Per-unit sample covariance of x and y (n - 1); 0 below two units."""
        if self.n < 2:
            return 0.0
        return (self.cross - self.numerator * self.denominator / self.n) / (self.n - 1)

    @property
    def mean(self) -> float:
        """sum(x) / sum(y) (0 while the denominator is 0)."""
        return self.numerator / self.denominator if self.denominator > 0 else 0.0

    @property
    def variance(self) -> float:
        """Per-unit delta-method variance of the ratio: (var_x - 2 r cov + r² var_y) / mean_y²."""
        mean_y = self.denominator_mean.mean
        if mean_y <= 0:
            return 0.0
        r = self.mean
        var = self.numerator_mean.variance - 2 * r * self.covariance + r * r * self.denominator_mean.variance
        return max(0.0, var / (mean_y * mean_y))


Sufficient = Proportion | Mean | Ratio
#: The numbers of each kind, in the order of its fields (what the document keeps).
_FIELDS: dict[str, tuple[str, ...]] = {
    "proportion": ("units", "converters"),
    "mean": ("n", "total", "sum_squares"),
    "ratio": ("n", "numerator", "numerator_squares", "denominator", "denominator_squares", "cross"),
}


def _numbers(stats: Sufficient) -> dict[str, float]:
    return {f.name: getattr(stats, f.name) for f in fields(stats) if f.name != "kind"}


def _squares_fit(n: float, total: float, squares: float) -> bool:
    """Cauchy-Schwarz: n values summing to ``total`` have squares summing to at least total² / n."""
    if n <= 0:
        return total == 0 and squares == 0
    return squares >= total * total / n - _SLACK * max(1.0, squares)


def problem(stats: Sufficient) -> str | None:
    """Why these numbers cannot be sufficient statistics, in a few words; ``None`` when they can."""
    for name, value in _numbers(stats).items():
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return f"{name} is not a number ({value!r})"
        if math.isnan(value):
            return f"{name} is NaN"
        if math.isinf(value):
            return f"{name} is infinite"
    if stats.n < 0:
        return f"negative count of units ({stats.n:g})"
    if isinstance(stats, Proportion):
        if stats.converters < 0:
            return f"negative converters ({stats.converters:g})"
        if stats.converters > stats.units:
            return f"{stats.converters:g} converters above {stats.units:g} units"
        return None
    if isinstance(stats, Mean):
        if stats.sum_squares < 0:
            return f"negative sum of squares ({stats.sum_squares:g})"
        if not _squares_fit(stats.n, stats.total, stats.sum_squares):
            return (
                f"sum of squares {stats.sum_squares:g} cannot belong to {stats.n:g} values summing to "
                f"{stats.total:g} (at least {stats.total * stats.total / stats.n if stats.n else 0:g})"
            )
        return None
    for side, mean in (("numerator", stats.numerator_mean), ("denominator", stats.denominator_mean)):
        why = problem(mean)
        if why:
            return f"{side}: {why}"
    if stats.denominator < 0:
        return f"negative denominator sum ({stats.denominator:g})"
    if stats.n >= 2:
        # The centred cross-product is bounded by the centred squares (Cauchy-Schwarz again).
        sxx = stats.numerator_squares - stats.numerator**2 / stats.n
        syy = stats.denominator_squares - stats.denominator**2 / stats.n
        sxy = stats.cross - stats.numerator * stats.denominator / stats.n
        bound = math.sqrt(max(sxx, 0.0) * max(syy, 0.0))
        if abs(sxy) > bound + _SLACK * max(1.0, abs(stats.cross)):
            return f"cross-product {stats.cross:g} cannot belong to these sums of squares"
    return None


def to_json(stats: Sufficient) -> dict[str, Any]:
    """The form the experiment document keeps: ``{"kind": ..., <numbers>}``."""
    return {"kind": stats.kind, **_numbers(stats)}


def from_json(data: Mapping[str, Any]) -> Sufficient:
    """Back from :func:`to_json`; ``ValueError`` naming what is wrong (unknown kind, missing number)."""
    kind = data.get("kind")
    if kind not in _FIELDS:
        expected = ", ".join(_FIELDS)
        raise ValueError(f"unknown kind of sufficient statistics {kind!r} (expected one of {expected})")
    absent = [name for name in _FIELDS[kind] if name not in data]
    if absent:
        raise ValueError(f"{kind} statistics lack {', '.join(absent)}")
    x = {name: float(data[name]) for name in _FIELDS[kind]}
    if kind == "proportion":
        return Proportion(units=x["units"], converters=x["converters"])
    if kind == "mean":
        return Mean(n=x["n"], total=x["total"], sum_squares=x["sum_squares"])
    return Ratio(
        n=x["n"],
        numerator=x["numerator"],
        numerator_squares=x["numerator_squares"],
        denominator=x["denominator"],
        denominator_squares=x["denominator_squares"],
        cross=x["cross"],
    )
