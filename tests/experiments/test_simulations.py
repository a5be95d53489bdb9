"""The error guarantees by simulation through decide() (docs/experiments.md quotes the 1,000-run figures:
``python tests/experiments/simulate.py --runs 1000``). Here a smaller count, SQUALS_SIM_RUNS (default 150),
keeps the suite fast; the bounds leave room for that count's noise (a binomial standard error at alpha 5 %
and 150 runs is 1.8 points)."""

from __future__ import annotations

import os

import pytest

from tests.experiments.simulate import aa_false_exclusion, aa_false_promotion, power, srm_halting

RUNS = int(os.environ.get("SQUALS_SIM_RUNS", "150"))
pytestmark = pytest.mark.slow


@pytest.mark.parametrize("kind", ["proportion", "mean", "ratio"])
def test_aa_experiments_promote_at_most_alpha_over_30_looks(kind: str) -> None:
    assert aa_false_promotion(RUNS, kind) <= 0.05 + 2 * (0.05 * 0.95 / RUNS) ** 0.5


@pytest.mark.parametrize("margin", [0.0, 0.1])
def test_aa_guardrail_excludes_a_healthy_variant_at_most_alpha_over_30_looks(margin: float) -> None:
    assert aa_false_exclusion(RUNS, margin) <= 0.05 + 2 * (0.05 * 0.95 / RUNS) ** 0.5


def test_srm_halts_a_50_53_delivery_and_spares_a_sound_one() -> None:
    assert srm_halting(RUNS, 53 / 103) >= 0.3
    assert srm_halting(RUNS, 0.5) <= 0.02


def test_a_true_lift_is_promoted_more_often_than_alpha() -> None:
    assert power(RUNS // 3, "sequential", 0.2, 200) >= 0.5
