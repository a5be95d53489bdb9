"""The statistics behind a decision, on the sufficient statistics of :mod:`~.sufficient` (any metric kind).

* **Difference**: a variant's mean minus control's, with the unpooled variance ``var_a/n_a + var_b/n_b``
  (per-unit variances: p(1 - p) for proportions, the sample variance for means, the delta method for
  ratios) and Welch-Satterthwaite degrees of freedom; the relative lift ``(m_b - m_a) / m_a`` with its
  delta-method variance. These are gbstats 0.8.0's ``TwoSidedTTest`` formulas, absolute and relative.
* ``fixed``: Welch's two-sided t-test on the difference, evaluated once at the planned horizon.
* ``sequential``: a mixture sequential probability ratio test (mSPRT, Johari, Pekelis & Walsh, "Always valid
  inference", 2017) with a normal mixture N(0, tau^2), tau = :data:`TAU_RELATIVE` x the pooled mean. Its
  likelihood ratio is (approximately) a martingale under no difference, so by Ville's inequality the chance
  that it *ever* crosses ``1/alpha`` is at most ``alpha``. ``1/Lambda`` is an always-valid p-value and the
  values it does not reject form a confidence sequence (same variance: the interval excludes 0 exactly when
  the p-value is below its level).
* **Guardrails**: the same mSPRT centred on the margin, one-sided (a breach is an increase beyond it).
* **SRM**: Pearson's chi-square goodness of fit of units against the declared split.
* several variants: Holm's step-down adjustment, and intervals at the level of the Holm step that judged
  each variant (:func:`holm_levels`), so a Holm-significant variant's interval never contains 0.

scipy is imported inside the functions that need it (the CLI must start without it); the mSPRT is
closed-form :mod:`math`, so a simulation of thousands of looks stays fast.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from squals_action.experiments.sufficient import Sufficient

#: The mSPRT's mixing scale, relative to the pooled mean: tau = TAU_RELATIVE * mean. It is the size of effect
#: the test is most sensitive to (here a 30 % relative change); any value keeps the error guarantee.
TAU_RELATIVE = 0.3
#: Below this many units in an arm no test is attempted (the normal approximation means nothing yet).
MIN_UNITS = 30
#: Sample-ratio mismatch: a chi-square p-value below this halts the experiment.
SRM_ALPHA = 0.001


@dataclass(frozen=True)
class Difference:
    """Arm b against arm a: means, the absolute difference with its variance and Welch degrees of freedom."""

    mean_a: float
    mean_b: float
    variance: float
    dof: float
    n_a: float
    n_b: float
    relative_variance: float | None

    @property
    def effect(self) -> float:
        return self.mean_b - self.mean_a

    @property
    def relative(self) -> float | None:
        """(m_b - m_a) / m_a, ``None`` while control's mean is 0."""
        return self.effect / self.mean_a if self.mean_a else None

    @property
    def testable(self) -> bool:
        """Both arms have :data:`MIN_UNITS` units and the difference has a variance."""
        return min(self.n_a, self.n_b) >= MIN_UNITS and self.variance > 0


def difference(a: Sufficient, b: Sufficient) -> Difference:
    """The difference of b's mean from a's (gbstats' unpooled variance and Welch-Satterthwaite dof)."""
    n_a, n_b = max(a.n, 0.0), max(b.n, 0.0)
    va, vb = a.variance, b.variance
    ma, mb = a.mean, b.mean
    if n_a <= 1 or n_b <= 1:
        return Difference(ma, mb, 0.0, math.inf, n_a, n_b, None)
    var = va / n_a + vb / n_b
    denom = (va / n_a) ** 2 / (n_a - 1) + (vb / n_b) ** 2 / (n_b - 1)
    dof = var * var / denom if denom > 0 else math.inf
    rel = vb / (ma * ma * n_b) + va * mb * mb / (ma**4 * n_a) if ma else None
    return Difference(ma, mb, var, dof, n_a, n_b, rel)


def _t_sf(x: float, dof: float) -> float:
    from scipy.stats import t

    return float(t.sf(x, dof))


def _t_isf(q: float, dof: float) -> float:
    from scipy.stats import t

    return float(t.isf(q, dof))


def welch(d: Difference, *, relative: bool = False) -> tuple[float, float]:
    """Two-sided Welch t-test of no difference (absolute or relative): (t, p). (0, 1) when untestable."""
    est, var = (d.relative, d.relative_variance) if relative else (d.effect, d.variance)
    if est is None or var is None or var <= 0 or min(d.n_a, d.n_b) < 2:
        return 0.0, 1.0
    stat = est / math.sqrt(var)
    return stat, min(1.0, 2.0 * _t_sf(abs(stat), d.dof))


def welch_interval(d: Difference, alpha: float, *, relative: bool = False) -> tuple[float, float] | None:
    """The (1 - alpha) Welch interval of the difference (or of the relative lift); ``None`` if untestable."""
    est, var = (d.relative, d.relative_variance) if relative else (d.effect, d.variance)
    if est is None or var is None or var <= 0 or min(d.n_a, d.n_b) < 2:
        return None
    half = _t_isf(alpha / 2.0, d.dof) * math.sqrt(var)
    return est - half, est + half


def _tau2(d: Difference) -> float:
    pooled = (d.n_a * d.mean_a + d.n_b * d.mean_b) / (d.n_a + d.n_b) if d.n_a + d.n_b > 0 else 0.0
    return (TAU_RELATIVE * pooled) ** 2


def msprt(d: Difference, centre: float = 0.0) -> tuple[float, float]:
    """The mSPRT likelihood ratio of "the difference is not ``centre``" and its always-valid p-value.

    Lambda = sqrt(V / (V + tau^2)) * exp((d - c)^2 tau^2 / (2 V (V + tau^2))); p = min(1, 1/Lambda).
    (1, 1) while the arms are too small or the pooled mean is 0.
    """
    tau2 = _tau2(d)
    if not d.testable or tau2 <= 0:
        return 1.0, 1.0
    var = d.variance
    gap = d.effect - centre
    log_lr = 0.5 * math.log(var / (var + tau2)) + gap * gap * tau2 / (2.0 * var * (var + tau2))
    if log_lr > 700:  # beyond any threshold; exp would overflow
        return math.inf, 0.0
    lam = math.exp(log_lr)
    return lam, min(1.0, 1.0 / lam)


def confidence_sequence(d: Difference, alpha: float) -> tuple[float, float] | None:
    """The always-valid (1 - alpha) interval of the difference: every centre the mSPRT would not reject.

    (d - c)^2 < 2 V (V + tau^2) / tau^2 * (ln(1/alpha) + ln((V + tau^2) / V) / 2); ``None`` if untestable.
    """
    tau2 = _tau2(d)
    if not d.testable or tau2 <= 0:
        return None
    var = d.variance
    radius = math.sqrt(
        2.0 * var * (var + tau2) / tau2 * (math.log(1.0 / alpha) + 0.5 * math.log((var + tau2) / var))
    )
    return d.effect - radius, d.effect + radius


@dataclass(frozen=True)
class Comparison:
    """A variant against control with the experiment's method: the p-value, and intervals at any level."""

    diff: Difference
    method: str
    p_value: float
    statistic: float

    def interval(self, alpha: float) -> tuple[float, float] | None:
        """(1 - alpha) interval of the difference, dual to the test (a confidence sequence if sequential)."""
        if self.method == "sequential":
            return confidence_sequence(self.diff, alpha)
        return welch_interval(self.diff, alpha)

    def relative_interval(self, alpha: float) -> tuple[float, float] | None:
        """(1 - alpha) delta-method interval of the relative lift (the absolute one over control's mean if
        sequential, whose radius already covers every look)."""
        if self.method == "sequential":
            got = confidence_sequence(self.diff, alpha)
            base = self.diff.mean_a
            return (got[0] / base, got[1] / base) if got is not None and base > 0 else None
        return welch_interval(self.diff, alpha, relative=True)


def compare(a: Sufficient, b: Sufficient, *, method: str) -> Comparison:
    """Arm b (a variant) against arm a (control): Welch (``fixed``) or mSPRT (``sequential``)."""
    d = difference(a, b)
    if method == "sequential":
        lam, p = msprt(d)
        return Comparison(d, method, p, lam)
    stat, p = welch(d) if d.testable else (0.0, 1.0)
    return Comparison(d, method, p, stat)


def holm(p_values: Mapping[str, float], total: int | None = None) -> dict[str, float]:
    """Holm-adjusted p-values (step-down, monotone); ``total`` counts comparisons not listed (as p = 1)."""
    m = max(total or 0, len(p_values))
    ordered = sorted(p_values.items(), key=lambda item: (item[1], item[0]))
    adjusted: dict[str, float] = {}
    running = 0.0
    for rank, (name, p) in enumerate(ordered):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[name] = running
    return adjusted


def holm_levels(p_values: Mapping[str, float], alpha: float, total: int | None = None) -> dict[str, float]:
    """The interval level (its alpha) per comparison that agrees with Holm at ``alpha``.

    A variant rejected at step k gets ``alpha / (m - k)`` (its raw p is below that, so a dual interval
    excludes 0); the others get ``alpha / (m - r)`` with r the number rejected (their raw p is above it,
    so their interval contains 0).
    """
    m = max(total or 0, len(p_values))
    ordered = sorted(p_values.items(), key=lambda item: (item[1], item[0]))
    levels: dict[str, float] = {}
    rejected = 0
    for rank, (name, p) in enumerate(ordered):
        if rejected == rank and p <= alpha / (m - rank):
            levels[name] = alpha / (m - rank)
            rejected += 1
    rest = alpha / (m - rejected) if m > rejected else alpha
    return {name: levels.get(name, rest) for name in p_values}


def breach(
    a: Sufficient, b: Sufficient, *, absolute: float = 0.0, relative: float = 0.0
) -> tuple[float, float]:
    """Sequential one-sided test that b's mean exceeds a's by more than the margin: (excess, always-valid p).

    The margin is ``absolute`` (in the metric's unit) plus ``relative`` x control's mean; the null
    hypothesis "b <= a + margin" is tested with the mSPRT centred on the margin at its boundary, and only an
    observed excess counts (p = 1 otherwise), so an A/A guardrail excludes in at most alpha of runs however
    often it looks. With a relative margin the contrast is ``m_b - (1 + r) m_a`` (its variance scales a's
    part by (1 + r)^2).
    """
    d = difference(a, b)
    if relative:
        scale = 1.0 + relative
        d = Difference(
            d.mean_a * scale,
            d.mean_b,
            d.variance + (scale * scale - 1.0) * a.variance / max(d.n_a, 1.0),
            d.dof,
            d.n_a,
            d.n_b,
            None,
        )
    excess = d.effect - absolute
    if excess <= 0:
        return excess, 1.0
    return excess, msprt(d, centre=absolute)[1]


def srm(units: Mapping[str, float], weights: Mapping[str, float]) -> tuple[float, float] | None:
    """Pearson's chi-square goodness of fit of ``units`` against the ``weights``: (statistic, p-value).

    ``None`` with fewer than two weighted arms or an expected count below 5 (the approximation's rule);
    the same numbers as ``scipy.stats.chisquare(observed, expected)``.
    """
    from scipy.stats import chi2

    arms = [v for v in weights if weights[v] > 0]
    total_w = sum(weights[v] for v in arms)
    total_n = sum(units.get(v, 0.0) for v in arms)
    if len(arms) < 2 or total_n <= 0:
        return None
    expected = {v: total_n * weights[v] / total_w for v in arms}
    if min(expected.values()) < 5:
        return None
    stat = sum((units.get(v, 0.0) - expected[v]) ** 2 / expected[v] for v in arms)
    return stat, float(chi2.sf(stat, len(arms) - 1))
