"""The resources an experiment needs before it starts: units per variant, days and islands, per design.

From a baseline (a rate, or a mean and a per-unit standard deviation), the minimum detectable effect, the
split, alpha, the power wanted and the daily traffic, :func:`plan` answers for both designs
:mod:`~squals_action.experiments.decide` can run:

* **fixed** (Welch's test, one look at the horizon): the normal approximation of the two-sided test at
  ``alpha / m`` (m variants besides control: the Bonferroni bound of Holm, exact when one variant carries the
  effect), ``N = (z(1 - alpha/2m) + z(power))^2 * (var_c / w_c + var_v / w_v) / effect^2`` units in all,
  with the unpooled variances of the decision (p(1 - p) per arm for a rate; the same standard deviation in
  both arms for a mean). The smallest variant's share binds.
* **sequential** (the mSPRT of :mod:`~squals_action.experiments.stats`, one look per tick): no closed form,
  so a seeded simulation of the difference's normal approximation, :data:`PATHS` paths looked at once per
  tick with the decision's own always-valid boundary (:func:`stats.confidence_sequence` at the same level):
  the horizon is the first tick by which the share of paths that crossed on the side of the effect reaches
  the power. The same paths give the expected time to a decision when the effect is there.

The predicted power agrees with the power simulated through ``decide()`` within 5 points on three designs
(``tests/experiments/test_plan_power.py``; the figures are in docs/experiments.md). Neither prediction counts
sample-ratio false halts (about 1 % of experiments over 30 looks). numpy and scipy are imported when a plan
is computed, never at the CLI's start-up.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from squals_action.errors import EXIT_USAGE
from squals_action.experiments import stats
from squals_action.experiments.interface import ExperimentError

#: Simulated paths of the sequential design (standard error of its power below 0.6 points).
PATHS = 6_000
#: At most this many looks are simulated; a longer schedule is thinned to this many evenly spaced ones.
MAX_LOOKS = 400
#: The simulation's seed: the same inputs print the same plan.
SEED = 20_261_130
#: The sequential design is searched up to this many times the fixed design's horizon.
MAX_HORIZON_FACTOR = 20.0
#: Looks a day when none is given: the example workflow ticks every 15 minutes.
TICKS_PER_DAY = 96.0
#: Where an island's name has its experiment's tag when the plan does not know the experiment id.
TAG = "<tag>"


class PlanError(ExperimentError):
    """Inputs that cannot make a plan (a rate above 1, a split without a variant...): a usage error."""

    exit_code = EXIT_USAGE


@dataclass(frozen=True, kw_only=True)
class Design:
    """What the experiment is planned for; ``effect`` is the absolute difference in the metric's unit.

    ``sd`` is the per-unit standard deviation of a mean (or the delta-method one of a ratio); ``None`` for a
    rate, whose variance is p(1 - p) in each arm. ``split`` is in the order of the squals file, ``control``
    one of its keys; ``daily_units`` counts the units entering the experiment per day over all variants.
    """

    baseline: float
    sd: float | None
    effect: float
    split: Mapping[str, float]
    control: str
    alpha: float = 0.05
    power: float = 0.8
    daily_units: float
    ticks_per_day: float = TICKS_PER_DAY

    @property
    def kind(self) -> Literal["proportion", "mean"]:
        return "proportion" if self.sd is None else "mean"

    @property
    def variants(self) -> tuple[str, ...]:
        """The variants compared with control."""
        return tuple(v for v in self.split if v != self.control)

    @property
    def comparison_alpha(self) -> float:
        """Each comparison's level: alpha over the variants (Holm's first step)."""
        return self.alpha / max(len(self.variants), 1)

    def share(self, variant: str) -> float:
        return self.split[variant] / sum(self.split.values())

    def variances(self) -> tuple[float, float]:
        """Per-unit variances of control and of a variant carrying the effect."""
        if self.sd is None:
            moved = self.baseline + self.effect
            return self.baseline * (1 - self.baseline), moved * (1 - moved)
        return self.sd**2, self.sd**2

    def weakest(self) -> str:
        """The variant with the smallest share: the one whose comparison needs the most traffic."""
        return min(self.variants, key=lambda v: (self.split[v], self.variants.index(v)))

    def spread(self) -> float:
        """Variance of the difference times the total units: var_c / w_c + var_v / w_v (weakest variant)."""
        var_c, var_v = self.variances()
        return var_c / self.share(self.control) + var_v / self.share(self.weakest())


@dataclass(frozen=True, kw_only=True)
class DesignPlan:
    """One design's horizon: total units, units per variant, days, looks, and its power there.

    ``power`` below the design's target means the horizon was capped (:data:`MAX_HORIZON_FACTOR`).
    ``expected_days`` (sequential) is the mean time to a decision when the effect is there, stopping at the
    horizon when none comes.
    """

    method: Literal["fixed", "sequential"]
    total_units: int
    units: Mapping[str, int]
    days: float
    power: float
    looks: int
    expected_days: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "total_units": self.total_units,
            "units": dict(self.units),
            "days": round(self.days, 3),
            "power": round(self.power, 4),
            "looks": self.looks,
            **({"expected_days": round(self.expected_days, 3)} if self.expected_days is not None else {}),
        }


@dataclass(frozen=True, kw_only=True)
class Plan:
    """Both designs for one :class:`Design`, and the islands the experiment runs (one per variant);
    ``experiment_id`` when known (``--id``), which the islands' names depend on."""

    design: Design
    fixed: DesignPlan
    sequential: DesignPlan
    experiment_id: str | None = None

    @property
    def islands(self) -> tuple[str, ...]:
        """The variants' islands as the start names them (:func:`.spec.island_names`): exact when the
        experiment id is known, else with :data:`TAG` where the id's tag will be (the tag is the names' last
        8 characters), never a name the experiment will not use."""
        # here, not at the top: spec loads the manifest model, which the CLI's start-up does not need
        from squals_action.experiments.spec import island_names

        if self.experiment_id is not None:
            return tuple(island_names(self.experiment_id, self.design.split).values())
        return tuple(name[:-8] + TAG for name in island_names("", self.design.split).values())

    def to_json(self) -> dict[str, Any]:
        d = self.design
        return {
            "kind": d.kind,
            "baseline": d.baseline,
            "sd": d.sd,
            "effect": d.effect,
            "relative_effect": d.effect / d.baseline,
            "split": dict(d.split),
            "control": d.control,
            "alpha": d.alpha,
            "power": d.power,
            "daily_units": d.daily_units,
            "ticks_per_day": d.ticks_per_day,
            "experiment_id": self.experiment_id,
            "islands": list(self.islands),
            "fixed": self.fixed.to_json(),
            "sequential": self.sequential.to_json(),
        }


def check(design: Design) -> None:
    """:class:`PlanError` naming the first input that cannot be planned, and what was expected."""
    d = design
    if d.control not in d.split:
        raise PlanError(f"split: control {d.control!r} has no share (expected it among {', '.join(d.split)})")
    if not d.variants:
        raise PlanError("split: expected at least one variant besides control")
    bad = [f"{v} {w:g}" for v, w in d.split.items() if not (math.isfinite(w) and w > 0)]
    if bad:
        raise PlanError(f"split: expected positive weights, got {', '.join(bad)}")
    if not 0 < d.alpha < 1:
        raise PlanError(f"alpha: expected a level between 0 and 1, got {d.alpha:g}")
    if not d.alpha < d.power < 1:
        raise PlanError(f"power: expected a probability between alpha ({d.alpha:g}) and 1, got {d.power:g}")
    if not (math.isfinite(d.daily_units) and d.daily_units > 0):
        raise PlanError(f"daily traffic: expected a positive number of units per day, got {d.daily_units:g}")
    if not (math.isfinite(d.ticks_per_day) and d.ticks_per_day > 0):
        raise PlanError(f"ticks per day: expected a positive number, got {d.ticks_per_day:g}")
    if not (math.isfinite(d.effect) and d.effect != 0):
        raise PlanError(f"minimum detectable effect: expected a non-zero difference, got {d.effect:g}")
    if d.sd is None:
        if not 0 < d.baseline < 1:
            raise PlanError(
                f"baseline rate: expected a rate between 0 and 1 (or 0% to 100%), got {d.baseline:g}"
            )
        if not 0 < d.baseline + d.effect < 1:
            raise PlanError(
                f"minimum detectable effect: the rate {d.baseline:g} moved by {d.effect:+g} is "
                f"{d.baseline + d.effect:g}, outside 0 to 1"
            )
        return
    if not (math.isfinite(d.baseline) and d.baseline != 0):
        raise PlanError(
            "baseline mean: expected a non-zero number (the sequential test scales with it), "
            f"got {d.baseline:g}"
        )
    if not (math.isfinite(d.sd) and d.sd > 0):
        raise PlanError(f"baseline standard deviation: expected a positive number, got {d.sd:g}")


def _units(design: Design, total: float) -> dict[str, int]:
    return {v: math.ceil(design.share(v) * total - 1e-9) for v in design.split}


def _norm() -> Any:
    from scipy.stats import norm

    return norm


def fixed_power(design: Design, total_units: float) -> float:
    """Power of the fixed design at ``total_units``: P(the weakest variant is significantly better)."""
    se = math.sqrt(design.spread() / total_units)
    z = float(_norm().isf(design.comparison_alpha / 2))
    return float(_norm().cdf(abs(design.effect) / se - z))


def fixed_plan(design: Design) -> DesignPlan:
    """The fixed design's horizon: the normal approximation of Welch's test solved for the units."""
    norm = _norm()
    z = float(norm.isf(design.comparison_alpha / 2)) + float(norm.ppf(design.power))
    total = math.ceil(z * z * design.spread() / design.effect**2)
    units = _units(design, total)
    total = sum(units.values())
    return DesignPlan(
        method="fixed",
        total_units=total,
        units=units,
        days=total / design.daily_units,
        power=fixed_power(design, total),
        looks=1,
    )


def _boundary(design: Design, total: float) -> float | None:
    """The always-valid boundary of the difference after ``total`` units (None while not testable)."""
    var_c, var_v = design.variances()
    n_c, n_v = design.share(design.control) * total, design.share(design.weakest()) * total
    mean_v = design.baseline + design.effect
    diff = stats.Difference(design.baseline, mean_v, var_c / n_c + var_v / n_v, math.inf, n_c, n_v, None)
    got = stats.confidence_sequence(diff, design.comparison_alpha)
    return None if got is None else got[1] - diff.effect


@functools.cache
def _normals() -> Any:
    """The seeded standard normal increments every simulation reuses (common random numbers: the power of
    two horizons is compared on the same paths, so the search over horizons is monotone)."""
    import numpy as np

    return np.random.default_rng(SEED).standard_normal((PATHS, MAX_LOOKS))


def _simulate(design: Design, looks: int) -> tuple[float, float]:
    """(power, mean days to a decision) of the sequential design stopped after ``looks`` ticks.

    The difference estimate after t units is ``effect + sqrt(spread) * B(t) / t`` (B a standard random
    walk in units: control's and the variant's noise together), its normal approximation; a path stops at
    the first look where it leaves the always-valid boundary, a success when on the effect's side, else at
    the horizon. Beyond :data:`MAX_LOOKS` ticks the looks are thinned to that many evenly spaced ones (fewer
    looks, fewer chances to cross: the power is then slightly underestimated).
    """
    import numpy as np

    per_tick = design.daily_units / design.ticks_per_day
    shown = min(looks, MAX_LOOKS)
    totals = per_tick * looks * np.arange(1, shown + 1) / shown
    w = min(design.share(design.control), design.share(design.weakest()))
    radius = np.array(
        [
            r if w * t >= stats.MIN_UNITS and (r := _boundary(design, t)) is not None else np.inf
            for t in totals
        ]
    )
    walk = np.cumsum(_normals()[:, :shown] * np.sqrt(np.diff(totals, prepend=0.0)), axis=1)
    estimate = abs(design.effect) + math.sqrt(design.spread()) * walk / totals
    crossed = np.abs(estimate) >= radius
    decided = crossed.any(axis=1)
    first = np.where(decided, crossed.argmax(axis=1), shown - 1)
    won = int(np.count_nonzero(decided & (estimate[np.arange(PATHS), first] > 0)))
    return won / PATHS, float(totals[first].mean()) / design.daily_units


def sequential_plan(design: Design, cap_units: float) -> DesignPlan:
    """The sequential design's horizon: the first tick whose simulated power reaches the target.

    Bisected over the ticks (to 0.1 %) up to ``cap_units`` units in all, reported with the power reached
    there when even that falls short.
    """
    per_tick = design.daily_units / design.ticks_per_day
    low, high = 0, max(1, math.ceil(cap_units / per_tick))
    if _simulate(design, high)[0] >= design.power:
        while high - low > max(1, high // 1000):
            middle = (low + high) // 2
            if _simulate(design, middle)[0] >= design.power:
                high = middle
            else:
                low = middle
    power, expected_days = _simulate(design, high)
    units = _units(design, per_tick * high)
    return DesignPlan(
        method="sequential",
        total_units=sum(units.values()),
        units=units,
        days=high / design.ticks_per_day,
        power=power,
        looks=high,
        expected_days=expected_days,
    )


def plan(design: Design, experiment_id: str | None = None) -> Plan:
    """Both designs' horizons for ``design``, checked first (:class:`PlanError` says what cannot be), and
    the islands of the experiment ``experiment_id`` (their tag left open when it is not known yet)."""
    check(design)
    fixed = fixed_plan(design)
    return Plan(
        design=design,
        fixed=fixed,
        sequential=sequential_plan(design, MAX_HORIZON_FACTOR * fixed.total_units),
        experiment_id=experiment_id,
    )
