"""Benchmark of the experiment statistics: error rates and power by seeded simulation, and decide()'s cost.

Run by hand: ``.venv/bin/python bench/stats.py [--runs 1000]``. Everything is measured in the same run:

* A/A (5 % vs 5 %), 50 looks of 200 units per arm: how often each method ever declares a difference.
  Goal: the sequential test at or under alpha; peeking at a z-test shows the inflation it prevents.
* A/B (5 % vs 8 %): how often each method detects it, and after how many units per arm (sequential).
* the time of one ``decide()`` with two and with four variants, against one bare z-test (ratio).
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime

import numpy as np

from squals_action.experiments import stats
from squals_action.experiments.decide import decide
from squals_action.experiments.interface import Observation
from squals_action.manifest import model


def paths(
    rng: np.random.Generator, p_a: float, p_b: float, per_look: int, looks: int, runs: int
) -> np.ndarray:
    """Cumulative counts, shape (runs, looks, 4): n_a, x_a, n_b, x_b."""
    a = np.cumsum(rng.binomial(per_look, p_a, size=(runs, looks)), axis=1)
    b = np.cumsum(rng.binomial(per_look, p_b, size=(runs, looks)), axis=1)
    n = np.broadcast_to(per_look * np.arange(1, looks + 1), (runs, looks))
    return np.stack([n, a, n, b], axis=2)


def first_rejection(run: np.ndarray, test: str, alpha: float) -> int | None:
    for i, (n_a, x_a, n_b, x_b) in enumerate(run):
        if test == "msprt":
            p = stats.msprt(int(n_a), int(x_a), int(n_b), int(x_b))[1]
        else:
            var = stats.pooled_variance(int(n_a), int(x_a), int(n_b), int(x_b))
            z = (x_b / n_b - x_a / n_a) / var**0.5 if var > 0 else 0.0
            p = 0.0 if abs(z) >= 1.959964 else 1.0
        if p <= alpha:
            return i
    return None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=1000)
    args = parser.parse_args()
    rng = np.random.default_rng(2026)
    alpha, looks, per_look = 0.05, 50, 200

    aa = paths(rng, 0.05, 0.05, per_look, looks, args.runs)
    seq_fp = sum(first_rejection(r, "msprt", alpha) is not None for r in aa) / args.runs
    peek_fp = sum(first_rejection(r, "peek", alpha) is not None for r in aa) / args.runs
    once_fp = sum(first_rejection(r[-1:], "peek", alpha) is not None for r in aa) / args.runs
    print(f"A/A 5%/5%, {looks} looks x {per_look} units/arm, {args.runs} runs, alpha {alpha}:")
    print(f"  false positives: sequential {seq_fp:.3f} | z-test peeked at every look {peek_fp:.3f} "
          f"| z-test once at the end {once_fp:.3f}")
    print(f"  ratio sequential/alpha {seq_fp / alpha:.2f}; peeking/alpha {peek_fp / alpha:.2f}")

    ab = paths(rng, 0.05, 0.08, per_look, looks, args.runs)
    hits = [first_rejection(r, "msprt", alpha) for r in ab]
    found = [h for h in hits if h is not None]
    median_units = (np.median(found) + 1) * per_look if found else float("nan")
    sized = 1000 // per_look  # a fixed test sized for ~80 % power at 5 % -> 8 % needs ~1,055 units per arm
    fixed = sum(first_rejection(r[sized - 1 : sized], "peek", alpha) is not None for r in ab) / args.runs
    within = sum(h is not None and h < sized for h in hits) / args.runs
    print(f"A/B 5%/8%: sequential detects {len(found) / args.runs:.3f} within {looks * per_look} units/arm, "
          f"median {median_units:.0f} units/arm to decide")
    print(f"  within 1000 units/arm: sequential {within:.3f} | fixed z-test at 1000 units/arm {fixed:.3f}")

    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    for k in (2, 4):
        names = ("control", "b", "c", "d")[:k]
        spec = model.Experiment(
            variants={n: model.Variant(n, "squals.yml") for n in names},
            control="control",
            split={n: 100.0 / k for n in names},
            objective=model.Objective("conversion", "maximize", "event:checkout"),
            guardrails=(model.Guardrail("error_rate", max_increase=0.5),),
        )
        data = {n: Observation(n, 5000, 250 + 20 * i, 5000, t0, errors=10) for i, n in enumerate(names)}
        decide(data, spec, t0, t0)  # warm (scipy import)
        reps = 300
        start = time.perf_counter()
        for _ in range(reps):
            decide(data, spec, t0, t0)
        per_decide = (time.perf_counter() - start) / reps
        start = time.perf_counter()
        for _ in range(reps):
            stats.z_test(5000, 250, 5000, 270)
        per_z = (time.perf_counter() - start) / reps
        print(
            f"decide() with {k} variants: {per_decide * 1e3:.2f} ms per call, "
            f"{per_decide / per_z:.1f}x one z-test"
        )


if __name__ == "__main__":
    main()
