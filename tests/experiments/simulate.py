"""Seeded simulations of whole experiments through :func:`squals_action.experiments.decide.decide`.

Each run feeds ``looks`` cumulative observations (``per_look`` units per arm and look) to the decision, as
a schedule ticking ``looks`` times would, and records what the experiment did at the first final look. The
tests rerun them with a small count; ``python tests/experiments/simulate.py --runs 1000`` prints the figures
docs/experiments.md quotes.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from squals_action.experiments.decide import decide
from squals_action.experiments.interface import Observation
from squals_action.experiments.sufficient import Mean, Proportion, Ratio, Sufficient
from squals_action.manifest import model

T0 = datetime(2026, 1, 1, tzinfo=UTC)
LOOKS = 30


def experiment(
    *,
    kind: str = "proportion",
    method: str = "sequential",
    guardrails: tuple[model.Guardrail, ...] = (),
    split: tuple[float, float] = (50.0, 50.0),
) -> model.Experiment:
    """Two arms; ``kind`` "activations" is a proportion whose units are activations (the old way)."""
    denominator = "activations" if kind == "activations" else "visitors"
    kind = "proportion" if kind == "activations" else kind
    return model.Experiment(
        variants={v: model.Variant(v, "squals.yml") for v in ("control", "b")},
        control="control",
        split={"control": split[0], "b": split[1]},
        objective=model.Objective("objective", "maximize", "x", denominator, kind=kind),  # type: ignore[arg-type]
        guardrails=guardrails,
        significance=model.Significance(0.05, method),  # type: ignore[arg-type]
    )


@dataclass
class Arm:
    """One arm's cumulative sums."""

    units: float = 0.0
    total: float = 0.0
    squares: float = 0.0
    errors: float = 0.0
    denominator: float = 0.0
    denominator_squares: float = 0.0
    cross: float = 0.0

    def add(self, rng: np.random.Generator, n: int, kind: str, lift: float, error_rate: float) -> None:
        self.units += n
        if kind == "proportion":
            self.total += float(rng.binomial(n, 0.1 * (1 + lift)))
            self.squares = self.total
        elif kind in ("ratio", "activations"):
            # checkouts per activation: 1 + Poisson(3) activations per unit, each unit with its own propensity
            # (Beta(0.2, 1.8): mean 10 %, most never buy), so a unit's activations are not independent trials
            y = rng.poisson(3.0, n) + 1
            x = rng.binomial(y, np.minimum(rng.beta(0.2, 1.8, n) * (1 + lift), 1.0)).astype(float)
            self.total += float(x.sum())
            self.squares += float((x * x).sum())
            self.denominator += float(y.sum())
            self.denominator_squares += float((y * y).sum())
            self.cross += float((x * y).sum())
        else:  # revenue per visitor: 30 % buy, lognormal amounts
            values = np.where(rng.random(n) < 0.3, rng.lognormal(3.0, 1.0, n) * (1 + lift), 0.0)
            self.total += float(values.sum())
            self.squares += float((values * values).sum())
        self.errors += float(rng.binomial(n, error_rate))

    def observation(self, name: str, kind: str) -> Observation:
        stats: Sufficient = Mean(n=self.units, total=self.total, sum_squares=self.squares)
        if kind == "proportion":
            stats = Proportion(units=self.units, converters=self.total)
        elif kind == "activations":  # the old way: every activation an independent unit of a proportion
            stats = Proportion(units=self.denominator, converters=self.total)
        elif kind == "ratio":
            stats = Ratio(
                n=self.units,
                numerator=self.total,
                numerator_squares=self.squares,
                denominator=self.denominator,
                denominator_squares=self.denominator_squares,
                cross=self.cross,
            )
        return Observation(
            name,
            int(self.units),
            int(self.total) if kind == "proportion" else 0,
            int(self.units),
            T0,
            errors=int(self.errors),
            stats={"objective": stats},
        )


def run(
    rng: np.random.Generator,
    spec: model.Experiment,
    *,
    per_look: int = 200,
    lift: float = 0.0,
    share_b: float = 0.5,
    error_rate: float = 0.01,
    looks: int = LOOKS,
) -> tuple[str, str | None, tuple[str, ...]]:
    """(final status or 'continue', winner, excluded variants) of one simulated experiment."""
    arms = {"control": Arm(), "b": Arm()}
    kind = "activations" if spec.objective.denominator == "activations" else spec.objective.kind
    excluded: tuple[str, ...] = ()
    for _ in range(looks):
        n_b = int(rng.binomial(2 * per_look, share_b))
        arms["control"].add(rng, 2 * per_look - n_b, kind, 0.0, error_rate)
        arms["b"].add(rng, n_b, kind, lift, error_rate)
        d = decide({k: a.observation(k, kind) for k, a in arms.items()}, spec, T0, T0, excluded)
        excluded = tuple(sorted(set(excluded) | set(d.excluded)))
        if d.final:
            return d.status, d.winner, excluded
    return "continue", None, excluded


def rate(outcomes: list[bool]) -> float:
    return sum(outcomes) / len(outcomes)


def aa_false_promotion(runs: int, kind: str, seed: int = 1) -> float:
    """Share of A/A experiments (no true difference) that promoted anything within 30 looks."""
    rng = np.random.default_rng(seed)
    spec = experiment(kind=kind)
    return rate([run(rng, spec)[0] == "winner" for _ in range(runs)])


def aa_false_exclusion(runs: int, margin: float, seed: int = 2) -> float:
    """Share of A/A experiments whose healthy variant an error_rate guardrail (1 % both arms) excluded."""
    rng = np.random.default_rng(seed)
    spec = experiment(guardrails=(model.Guardrail("error_rate", max_increase=margin),))
    return rate([bool(run(rng, spec)[2]) for _ in range(runs)])


def srm_halting(runs: int, share_b: float, seed: int = 3) -> float:
    """Share of experiments halted for sample-ratio mismatch (50/50 declared, ``share_b`` delivered to b)."""
    rng = np.random.default_rng(seed)
    spec = experiment()
    return rate([run(rng, spec, share_b=share_b)[0] == "halted-srm" for _ in range(runs)])


def power(runs: int, method: str, lift: float, per_look: int, seed: int = 4) -> float:
    """Share of experiments with a true relative ``lift`` that promoted b (fixed: one look at the horizon)."""
    rng = np.random.default_rng(seed)
    spec = experiment(method=method)
    if method == "fixed":  # one look at the horizon, with everything the 30 looks would have seen
        return rate(
            [run(rng, spec, lift=lift, per_look=per_look * LOOKS, looks=1)[1] == "b" for _ in range(runs)]
        )
    return rate([run(rng, spec, lift=lift, per_look=per_look)[1] == "b" for _ in range(runs)])


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=1000)
    runs = parser.parse_args(argv).runs
    print(f"{runs} runs x {LOOKS} looks, 200 units per arm and look, alpha 0.05")
    print(f"A/A false promotion, proportion (10 %):     {aa_false_promotion(runs, 'proportion'):.3f}")
    print(f"A/A false promotion, mean (revenue):        {aa_false_promotion(runs, 'mean'):.3f}")
    print(f"A/A false promotion, ratio (delta method):  {aa_false_promotion(runs, 'ratio'):.3f}")
    print(f"  the same data, activations as units:      {aa_false_promotion(runs, 'activations'):.3f}")
    for margin in (0.0, 0.1):
        print(f"A/A error_rate exclusion, max_increase {margin:g}%: {aa_false_exclusion(runs, margin):.3f}")
    print(f"SRM halts, 50/50 delivered 50/50:           {srm_halting(runs, 0.5):.3f}")
    print(f"SRM halts, 50/50 delivered 50/53:           {srm_halting(runs, 53 / 103):.3f}")
    for method in ("sequential", "fixed"):
        print(f"power, +10 % on 10 %, {method:10s}:          {power(runs, method, 0.10, 200):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
