"""The statistics behind a decision: each variant's objective rate against control's, as two proportions.

* ``fixed``: the classical two-proportion z-test (pooled variance, two-sided; the same as a 2x2 chi-square
  without continuity correction), evaluated once, when the minimum duration is reached.
* ``sequential``: a mixture sequential probability ratio test (mSPRT, Johari, Pekelis & Walsh, "Always valid
  inference", 2017) on the difference of the two rates with a normal mixing distribution N(0, tau^2). Its
  likelihood ratio is (approximately) a martingale under no difference, so by Ville's inequality the chance
  that it *ever* crosses ``1/alpha`` is at most ``alpha``: ticking hourly does not inflate false positives.
  ``1/Lambda`` is an always-valid p-value, and inverting the test gives a confidence sequence.
* several variants: Holm's step-down adjustment across the comparisons with control.

scipy is imported inside the functions that need it (the CLI must start without it); the mSPRT itself is
closed-form and uses :mod:`math` only, so a simulation of thousands of looks stays fast.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

#: The mSPRT's mixing scale, relative to the pooled rate: tau = TAU_RELATIVE * p. It is the size of effect
#: the test is most sensitive to (here a 30 % relative change); any value keeps the error guarantee.
TAU_RELATIVE = 0.3
#: Below this many units in an arm no test is attempted (the normal approximation means nothing yet).
MIN_UNITS = 30


@dataclass(frozen=True)
class Comparison:
    """A variant against control: rate difference, its confidence interval, and the p-value of the test."""

    effect: float
    ci_low: float
    ci_high: float
    p_value: float
    statistic: float


def _clip(n: int, x: int) -> tuple[int, int]:
    """A proportion's counts: conversions never above units, never negative."""
    n = max(int(n), 0)
    return n, min(max(int(x), 0), n)


def pooled_variance(n_a: int, x_a: int, n_b: int, x_b: int) -> float:
    """Variance of p_b - p_a under no difference (pooled rate): 0 when it cannot be estimated."""
    if n_a <= 0 or n_b <= 0:
        return 0.0
    p = (x_a + x_b) / (n_a + n_b)
    return p * (1.0 - p) * (1.0 / n_a + 1.0 / n_b)


def unpooled_variance(n_a: int, x_a: int, n_b: int, x_b: int) -> float:
    """Variance of p_b - p_a with each arm's own rate (for intervals)."""
    if n_a <= 0 or n_b <= 0:
        return 0.0
    pa, pb = x_a / n_a, x_b / n_b
    return pa * (1.0 - pa) / n_a + pb * (1.0 - pb) / n_b


def z_test(n_a: int, x_a: int, n_b: int, x_b: int) -> tuple[float, float]:
    """Two-sided two-proportion z-test of arm b against arm a: (z, p-value). (0, 1) when untestable."""
    from scipy.stats import norm

    n_a, x_a = _clip(n_a, x_a)
    n_b, x_b = _clip(n_b, x_b)
    var = pooled_variance(n_a, x_a, n_b, x_b)
    if var <= 0.0:
        return 0.0, 1.0
    z = (x_b / n_b - x_a / n_a) / math.sqrt(var)
    return z, float(min(1.0, 2.0 * norm.sf(abs(z))))


def msprt(n_a: int, x_a: int, n_b: int, x_b: int, tau_relative: float = TAU_RELATIVE) -> tuple[float, float]:
    """The mSPRT likelihood ratio of "a difference" against "none", and its always-valid p-value.

    Lambda = sqrt(V / (V + tau^2)) * exp(d^2 tau^2 / (2 V (V + tau^2))) with d the observed difference and V
    its pooled variance; p = min(1, 1/Lambda). Returns (1, 1) while the arms are too small to say anything.
    """
    n_a, x_a = _clip(n_a, x_a)
    n_b, x_b = _clip(n_b, x_b)
    if min(n_a, n_b) < MIN_UNITS:
        return 1.0, 1.0
    var = pooled_variance(n_a, x_a, n_b, x_b)
    if var <= 0.0:
        return 1.0, 1.0
    p = (x_a + x_b) / (n_a + n_b)
    tau2 = (tau_relative * p) ** 2
    d = x_b / n_b - x_a / n_a
    log_lr = 0.5 * math.log(var / (var + tau2)) + d * d * tau2 / (2.0 * var * (var + tau2))
    if log_lr > 700:  # beyond any threshold; exp would overflow
        return math.inf, 0.0
    lam = math.exp(log_lr)
    return lam, min(1.0, 1.0 / lam)


def wald_interval(n_a: int, x_a: int, n_b: int, x_b: int, alpha: float) -> tuple[float, float]:
    """Classical (1 - alpha) interval of p_b - p_a (unpooled variance)."""
    from scipy.stats import norm

    n_a, x_a = _clip(n_a, x_a)
    n_b, x_b = _clip(n_b, x_b)
    if n_a <= 0 or n_b <= 0:
        return -1.0, 1.0
    d = x_b / n_b - x_a / n_a
    half = float(norm.isf(alpha / 2.0)) * math.sqrt(unpooled_variance(n_a, x_a, n_b, x_b))
    return d - half, d + half


def confidence_sequence(
    n_a: int, x_a: int, n_b: int, x_b: int, alpha: float, tau_relative: float = TAU_RELATIVE
) -> tuple[float, float]:
    """The always-valid (1 - alpha) interval of p_b - p_a: every theta the mSPRT would not reject.

    (d - theta)^2 < 2 V (V + tau^2) / tau^2 * (ln(1/alpha) + ln((V + tau^2) / V) / 2).
    """
    n_a, x_a = _clip(n_a, x_a)
    n_b, x_b = _clip(n_b, x_b)
    var = unpooled_variance(n_a, x_a, n_b, x_b)
    if n_a <= 0 or n_b <= 0 or var <= 0.0:
        return -1.0, 1.0
    p = (x_a + x_b) / (n_a + n_b)
    tau2 = max((tau_relative * p) ** 2, 1e-12)
    d = x_b / n_b - x_a / n_a
    radius = math.sqrt(
        2.0 * var * (var + tau2) / tau2 * (math.log(1.0 / alpha) + 0.5 * math.log((var + tau2) / var))
    )
    return d - radius, d + radius


def compare(n_a: int, x_a: int, n_b: int, x_b: int, *, method: str, alpha: float) -> Comparison:
    """Arm b (a variant) against arm a (control) with the experiment's method; ``alpha`` for the interval."""
    n_a, x_a = _clip(n_a, x_a)
    n_b, x_b = _clip(n_b, x_b)
    effect = (x_b / n_b if n_b else 0.0) - (x_a / n_a if n_a else 0.0)
    if method == "sequential":
        lam, p = msprt(n_a, x_a, n_b, x_b)
        low, high = confidence_sequence(n_a, x_a, n_b, x_b, alpha)
        return Comparison(effect, low, high, p, lam)
    z, p = z_test(n_a, x_a, n_b, x_b)
    low, high = wald_interval(n_a, x_a, n_b, x_b, alpha)
    return Comparison(effect, low, high, p, z)


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


def increase_p_value(n_a: int, x_a: int, n_b: int, x_b: int, margin: float = 0.0) -> float:
    """One-sided p-value that arm b's rate exceeds arm a's by more than ``margin`` (a guardrail breach).

    Unpooled variance, because under this null the two rates differ; with no variance at all the answer is
    0 or 1 from the observed difference.
    """
    from scipy.stats import norm

    n_a, x_a = _clip(n_a, x_a)
    n_b, x_b = _clip(n_b, x_b)
    if n_a <= 0 or n_b <= 0:
        return 1.0
    excess = x_b / n_b - x_a / n_a - margin
    var = unpooled_variance(n_a, x_a, n_b, x_b)
    if var <= 0.0:
        return 0.0 if excess > 0 else 1.0
    return float(norm.sf(excess / math.sqrt(var)))
