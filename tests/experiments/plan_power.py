"""The plan's predicted power against the power simulated through ``decide()``, on three designs.

Each run draws per-unit data tick by tick (a rate: Bernoulli; a mean: gamma values with the baseline's mean
and standard deviation, shifted by the effect in the variant that carries it), feeds the cumulative
sufficient statistics to the real :func:`~squals_action.experiments.decide.decide` at every tick up to the
plan's sequential horizon (one look at the fixed horizon for the fixed design) and counts the runs that
promoted the variant carrying the effect (in a multi-variant design the others carry none). Traffic is split
exactly by the weights (no sample-ratio noise, which the plan does not count either).
``python tests/experiments/plan_power.py --runs 1000`` prints the figures docs/experiments.md quotes.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from squals_action.experiments.decide import decide
from squals_action.experiments.interface import Observation
from squals_action.experiments.plan import Design, Plan, plan
from squals_action.experiments.sufficient import Mean, Proportion, Sufficient
from squals_action.manifest import model

T0 = datetime(2026, 1, 1, tzinfo=UTC)

#: name -> design: a 10 % rate and +10 % relative; revenue per visitor (mean 50, sd 120) and +5 %; three arms
#: 50/25/25 on a 20 % rate, +10 % in b only (Holm over two comparisons).
DESIGNS: dict[str, Design] = {
    "proportion": Design(
        baseline=0.10,
        sd=None,
        effect=0.01,
        split={"control": 50, "b": 50},
        control="control",
        daily_units=2000,
        ticks_per_day=2,
    ),
    "mean": Design(
        baseline=50.0,
        sd=120.0,
        effect=2.5,
        split={"control": 50, "b": 50},
        control="control",
        daily_units=5000,
        ticks_per_day=2,
    ),
    "three arms": Design(
        baseline=0.20,
        sd=None,
        effect=0.02,
        split={"control": 50, "b": 25, "c": 25},
        control="control",
        daily_units=4000,
        ticks_per_day=2,
    ),
}


def spec_of(design: Design, method: str) -> model.Experiment:
    """The squals file's experiment for ``design``: its split, alpha and kind, no minimum duration."""
    return model.Experiment(
        variants={v: model.Variant(v, "squals.yml") for v in design.split},
        control=design.control,
        split=dict(design.split),
        objective=model.Objective("objective", "maximize", "x", kind=design.kind),
        significance=model.Significance(design.alpha, method),  # type: ignore[arg-type]
    )


@dataclass
class Arm:
    """One arm's cumulative sums; ``mean`` is its true mean (a rate, or a mean with the design's sd)."""

    mean: float
    n: int = 0
    total: float = 0.0
    squares: float = 0.0

    def add(self, rng: np.random.Generator, n: int, sd: float | None) -> None:
        self.n += n
        if sd is None:
            self.total += float(rng.binomial(n, self.mean))
            return
        shape, scale = (self.mean / sd) ** 2, sd * sd / self.mean
        values = rng.gamma(shape, scale, n)
        self.total += float(values.sum())
        self.squares += float((values * values).sum())

    def observation(self, name: str, sd: float | None) -> Observation:
        stats: Sufficient = (
            Proportion(units=self.n, converters=self.total)
            if sd is None
            else Mean(n=self.n, total=self.total, sum_squares=self.squares)
        )
        conversions = int(self.total) if sd is None else 0
        return Observation(name, self.n, conversions, self.n, T0, stats={"objective": stats})


def simulated_power(design: Design, method: str, looks: int, total_units: int, runs: int, seed: int) -> float:
    """Share of ``runs`` that promoted the variant carrying the effect within ``looks`` ticks."""
    rng = np.random.default_rng(seed)
    spec = spec_of(design, method)
    target = design.weakest()
    shares = {v: design.share(v) for v in design.split}
    promoted = 0
    for _ in range(runs):
        arms = {v: Arm(design.baseline + (design.effect if v == target else 0.0)) for v in design.split}
        for look in range(1, looks + 1):
            for v, arm in arms.items():
                arm.add(rng, round(shares[v] * total_units * look / looks) - arm.n, design.sd)
            observations = {v: a.observation(v, design.sd) for v, a in arms.items()}
            decision = decide(observations, spec, T0, T0)
            if decision.final:
                promoted += decision.winner == target
                break
    return promoted / runs


@dataclass(frozen=True)
class Agreement:
    """One design's predicted and simulated power, fixed and sequential."""

    plan: Plan
    fixed: float
    sequential: float


def agreement(name: str, runs: int, seed: int = 5) -> Agreement:
    """The plan of ``DESIGNS[name]`` and the power ``runs`` simulated experiments reach at its horizons."""
    design = DESIGNS[name]
    got = plan(design)
    fixed = simulated_power(design, "fixed", 1, got.fixed.total_units, runs, seed)
    sequential = simulated_power(
        design, "sequential", got.sequential.looks, got.sequential.total_units, runs, seed + 1
    )
    return Agreement(got, fixed, sequential)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=1000)
    runs = parser.parse_args(argv).runs
    print(f"{runs} runs per design; predicted -> simulated power")
    for name in DESIGNS:
        a = agreement(name, runs)
        for label, design, simulated in (
            ("fixed", a.plan.fixed, a.fixed),
            ("sequential", a.plan.sequential, a.sequential),
        ):
            print(
                f"{name:10s} {label:10s} {design.total_units:7d} units {design.days:6.1f} days "
                f"{design.looks:4d} looks: {design.power:.3f} -> {simulated:.3f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
