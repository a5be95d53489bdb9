"""The statistics against the references on a generated corpus: gbstats 0.8.0 (GrowthBook's engine: the
frequentist two-sided test, absolute and relative), statsmodels, and scipy (SRM), to 1e-6.

The corpus is seeded: per case a kind, two arms of 40..4,000 units with skewed per-unit values (revenue-like
lognormals with zeros, several activations per unit for ratios, conversions for proportions), reduced to the
sufficient statistics both engines read. Both references are test-only dependencies.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pytest

from squals_action.experiments import stats
from squals_action.experiments.sufficient import Mean, Proportion, Ratio, Sufficient

gb_stats = pytest.importorskip("gbstats.models.statistics")
gb_tests = pytest.importorskip("gbstats.frequentist.tests")
weightstats = pytest.importorskip("statsmodels.stats.weightstats")

CASES = 60
ALPHA = 0.05


@dataclass(frozen=True)
class Arm:
    """One arm's per-unit values (y is the ratio's denominator) and its sufficient statistics."""

    x: npt.NDArray[np.float64]
    y: npt.NDArray[np.float64] | None
    stats: Sufficient


def _arm(rng: np.random.Generator, kind: str, n: int, lift: float) -> Arm:
    if kind == "proportion":
        x = (rng.random(n) < 0.1 * (1 + lift)).astype(float)
        return Arm(x, None, Proportion(units=n, converters=float(x.sum())))
    if kind == "mean":
        x = np.where(rng.random(n) < 0.3, rng.lognormal(3.0, 1.0, n) * (1 + lift), 0.0)
        return Arm(x, None, Mean(n=n, total=float(x.sum()), sum_squares=float((x * x).sum())))
    y = rng.poisson(3.0, n) + 1.0  # activations per unit
    x = rng.binomial(y.astype(int), 0.1 * (1 + lift)).astype(float)  # checkouts among them
    s = Ratio(
        n=n,
        numerator=float(x.sum()),
        numerator_squares=float((x * x).sum()),
        denominator=float(y.sum()),
        denominator_squares=float((y * y).sum()),
        cross=float((x * y).sum()),
    )
    return Arm(x, y, s)


def corpus() -> list[tuple[str, Arm, Arm]]:
    rng = np.random.default_rng(2026_11_30)
    out = []
    for i in range(CASES):
        kind = ("proportion", "mean", "ratio")[i % 3]
        n_a, n_b = (int(v) for v in rng.integers(40, 4000, size=2))
        out.append((kind, _arm(rng, kind, n_a, 0.0), _arm(rng, kind, n_b, float(rng.uniform(-0.2, 0.3)))))
    return out


def _gb(s: Sufficient) -> object:
    if isinstance(s, Proportion):
        return gb_stats.ProportionStatistic(n=int(s.units), sum=s.converters)
    if isinstance(s, Mean):
        return gb_stats.SampleMeanStatistic(n=int(s.n), sum=s.total, sum_squares=s.sum_squares)
    return gb_stats.RatioStatistic(
        n=int(s.n),
        m_statistic=gb_stats.SampleMeanStatistic(
            n=int(s.n), sum=s.numerator, sum_squares=s.numerator_squares
        ),
        d_statistic=gb_stats.SampleMeanStatistic(
            n=int(s.n), sum=s.denominator, sum_squares=s.denominator_squares
        ),
        m_d_sum_of_products=s.cross,
    )


@pytest.mark.parametrize("relative", [False, True], ids=["absolute", "relative"])
def test_welch_and_its_intervals_equal_gbstats(relative: bool) -> None:
    for kind, a, b in corpus():
        config = gb_tests.FrequentistConfig(
            alpha=ALPHA, difference_type="relative" if relative else "absolute"
        )
        ref = gb_tests.TwoSidedTTest(_gb(a.stats), _gb(b.stats), config).compute_result()
        d = stats.difference(a.stats, b.stats)
        _, p = stats.welch(d, relative=relative)
        interval = stats.welch_interval(d, ALPHA, relative=relative)
        assert interval is not None, kind
        expected = d.relative if relative else d.effect
        assert expected == pytest.approx(ref.expected, rel=1e-6, abs=1e-9), kind
        assert p == pytest.approx(ref.p_value, rel=1e-6, abs=1e-9), kind
        assert interval == pytest.approx(ref.ci, rel=1e-6, abs=1e-9), kind


def _linearised(arm: Arm) -> npt.NDArray[np.float64]:
    assert arm.y is not None
    r = arm.x.sum() / arm.y.sum()
    return r + (arm.x - r * arm.y) / arm.y.mean()  # type: ignore[no-any-return]


def test_means_and_ratios_equal_statsmodels_welch_on_the_per_unit_values() -> None:
    """statsmodels sees the raw values: a mean's, and a ratio's linearisation r + (x - r y) / mean(y)
    (the delta method as data: its mean is r and its sample variance the delta-method variance)."""
    for kind, a, b in corpus():
        if kind == "proportion":
            continue
        if kind == "ratio":
            xa, xb = _linearised(a), _linearised(b)
        else:
            xa, xb = a.x, b.x
        t_ref, p_ref, dof_ref = weightstats.ttest_ind(xb, xa, usevar="unequal")
        low, high = weightstats.CompareMeans.from_data(xb, xa).tconfint_diff(alpha=ALPHA, usevar="unequal")
        d = stats.difference(a.stats, b.stats)
        t, p = stats.welch(d)
        assert (t, p, d.dof) == pytest.approx((t_ref, p_ref, dof_ref), rel=1e-6), kind
        assert stats.welch_interval(d, ALPHA) == pytest.approx((low, high), rel=1e-6, abs=1e-9), kind


def test_proportions_equal_statsmodels_wald_statistic() -> None:
    from statsmodels.stats.proportion import test_proportions_2indep

    for kind, a, b in corpus():
        if kind != "proportion":
            continue
        assert isinstance(a.stats, Proportion) and isinstance(b.stats, Proportion)
        ref = test_proportions_2indep(
            b.stats.converters,
            b.stats.units,
            a.stats.converters,
            a.stats.units,
            method="wald",
            compare="diff",
        )
        t, _ = stats.welch(stats.difference(a.stats, b.stats))
        assert t == pytest.approx(ref.statistic, rel=1e-6)


def test_srm_equals_scipy_chisquare() -> None:
    from scipy.stats import chisquare

    got = stats.srm({"a": 20000, "b": 20900}, {"a": 50, "b": 50})
    assert got is not None
    assert got[1] == pytest.approx(chisquare([20000, 20900]).pvalue, rel=1e-9)
    assert got[1] == pytest.approx(8.6e-6, rel=0.05)  # the example
    rng = np.random.default_rng(12)
    for _ in range(50):
        k = int(rng.integers(2, 6))
        weights = rng.uniform(5, 60, k)
        units = rng.integers(100, 5000, k).astype(float)
        names = [f"v{i}" for i in range(k)]
        got = stats.srm(dict(zip(names, units, strict=True)), dict(zip(names, weights, strict=True)))
        ref = chisquare(units, units.sum() * weights / weights.sum())
        assert got is not None
        assert got == pytest.approx((ref.statistic, ref.pvalue), rel=1e-9)
