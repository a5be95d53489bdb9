"""Benchmark: the experiment statistics on 20 variants x 10M units, against gbstats 0.8.0 on the same
sufficient statistics.

Run by hand: ``python bench/stats.py [--units 10000000] [--variants 20] [--repeat 20]`` (gbstats is a test
dependency: ``pip install -e '.[test]'``). The per-unit data are drawn once (not timed) and reduced to the
sufficient statistics of each kind: a proportion (10 % converting), a mean (revenue: 30 % buy, lognormal
amounts) and a ratio (checkouts per activation, Poisson activations per unit). Then, per kind:

* ``stats``: :func:`squals_action.experiments.stats.compare` (Welch, fixed) of every variant against control,
  with the relative interval -- the same work as gbstats' ``TwoSidedTTest(...).compute_result()`` per variant;
* ``decide``: the whole :func:`~squals_action.experiments.decide.decide` of one tick (SRM, Holm, intervals at
  the Holm levels, the reasons), fixed and sequential;

each the best of ``--repeat`` rounds, printed with its ratio to gbstats (below 1: faster).
"""

from __future__ import annotations

import argparse
import functools
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Literal

import numpy as np

from squals_action.experiments import stats
from squals_action.experiments.decide import decide
from squals_action.experiments.interface import Observation
from squals_action.experiments.sufficient import Mean, Proportion, Ratio, Sufficient
from squals_action.manifest import model

CHUNK = 1_000_000
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def draw(rng: np.random.Generator, kind: str, units: int) -> Sufficient:
    """One variant's sufficient statistics from ``units`` per-unit values, drawn in chunks."""
    if kind == "proportion":
        return Proportion(units=units, converters=float(rng.binomial(units, 0.1)))
    sums = np.zeros(6)
    for start in range(0, units, CHUNK):
        n = min(CHUNK, units - start)
        if kind == "mean":
            x = np.where(rng.random(n) < 0.3, rng.lognormal(3.0, 1.0, n), 0.0)
            sums[:2] += (x.sum(), (x * x).sum())
        else:
            y = rng.poisson(3.0, n) + 1.0
            x = rng.binomial(y.astype(np.int64), 0.1).astype(float)
            sums += (x.sum(), (x * x).sum(), y.sum(), (y * y).sum(), (x * y).sum(), 0.0)
    if kind == "mean":
        return Mean(n=units, total=float(sums[0]), sum_squares=float(sums[1]))
    return Ratio(
        n=units,
        numerator=float(sums[0]),
        numerator_squares=float(sums[1]),
        denominator=float(sums[2]),
        denominator_squares=float(sums[3]),
        cross=float(sums[4]),
    )


def gb(s: Sufficient) -> object:
    from gbstats.models.statistics import ProportionStatistic, RatioStatistic, SampleMeanStatistic

    if isinstance(s, Proportion):
        return ProportionStatistic(n=int(s.units), sum=s.converters)
    if isinstance(s, Mean):
        return SampleMeanStatistic(n=int(s.n), sum=s.total, sum_squares=s.sum_squares)
    return RatioStatistic(
        n=int(s.n),
        m_statistic=SampleMeanStatistic(n=int(s.n), sum=s.numerator, sum_squares=s.numerator_squares),
        d_statistic=SampleMeanStatistic(n=int(s.n), sum=s.denominator, sum_squares=s.denominator_squares),
        m_d_sum_of_products=s.cross,
    )


def best(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def measure(kind: str, data: dict[str, Sufficient], repeat: int) -> str:
    """One kind's line: gbstats, the stats layer and decide() on the same statistics."""
    from gbstats.frequentist.tests import FrequentistConfig, TwoSidedTTest

    names = list(data)
    base = data["control"]
    gb_data = {n: gb(s) for n, s in data.items()}
    config = FrequentistConfig(alpha=0.05, difference_type="relative")

    def reference() -> None:
        for n in names[1:]:
            TwoSidedTTest(gb_data["control"], gb_data[n], config).compute_result()

    def ours() -> None:
        for n in names[1:]:
            c = stats.compare(base, data[n], method="fixed")
            c.interval(0.05)
            c.relative_interval(0.05)

    t_ref, t_ours = best(reference, repeat), best(ours, repeat)
    line = f"gbstats {1000 * t_ref:6.2f} ms | stats {1000 * t_ours:6.2f} ms (ratio {t_ours / t_ref:.2f})"
    obs = {n: Observation(n, int(s.n), 0, int(s.n), T0, stats={"objective": s}) for n, s in data.items()}
    methods: tuple[Literal["fixed", "sequential"], ...] = ("fixed", "sequential")
    for method in methods:
        spec = model.Experiment(
            variants={n: model.Variant(n, "squals.yml") for n in names},
            control="control",
            split={n: 100.0 / len(names) for n in names},
            objective=model.Objective("objective", "maximize", "x", kind=kind),  # type: ignore[arg-type]
            significance=model.Significance(0.05, method),
        )
        t_dec = best(functools.partial(decide, obs, spec, T0, T0), repeat)
        line += f" | decide {method} {1000 * t_dec:6.2f} ms (ratio {t_dec / t_ref:.2f})"
    return line


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--units", type=int, default=10_000_000)
    parser.add_argument("--variants", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    rng = np.random.default_rng(2026)
    names = ["control", *(f"v{i}" for i in range(1, args.variants))]
    print(f"{args.variants} variants x {args.units:,} units, best of {args.repeat}; ratio: time / gbstats'")
    for kind in ("proportion", "mean", "ratio"):
        t = time.perf_counter()
        data = {n: draw(rng, kind, args.units) for n in names}
        drawn = time.perf_counter() - t
        print(f"{kind:10s} (drawn in {drawn:4.1f} s): {measure(kind, data, args.repeat)}")


if __name__ == "__main__":
    main()
