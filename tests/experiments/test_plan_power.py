"""The plan's predicted power against the power simulated through ``decide()`` (docs/experiments.md quotes the
1,000-run figures: ``python tests/experiments/plan_power.py --runs 1000``).

The issue's bound is 5 points. Here SQUALS_SIM_RUNS runs (default 300) keep the suite fast; below 1,000 runs
the bound widens to 2.5 binomial standard errors (at 80 % power and 300 runs, 5.8 points), so the sampling
noise of a small count does not fail a sound plan. Seeded: every run of the suite draws the same numbers.
"""

from __future__ import annotations

import os

import pytest

from tests.experiments.plan_power import DESIGNS, agreement, simulated_power

RUNS = int(os.environ.get("SQUALS_SIM_RUNS", "300"))


def bound(runs: int) -> float:
    return max(0.05, 2.5 * (0.8 * 0.2 / runs) ** 0.5)


def test_the_fixed_plans_power_is_what_decide_reaches_at_its_horizon() -> None:
    from squals_action.experiments.plan import plan

    design = DESIGNS["proportion"]
    fixed = plan(design).fixed
    simulated = simulated_power(design, "fixed", 1, fixed.total_units, 300, seed=7)
    assert abs(simulated - fixed.power) <= bound(300), (simulated, fixed.power)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(DESIGNS))
def test_predicted_power_agrees_with_simulated_power_for_both_designs(name: str) -> None:
    got = agreement(name, RUNS)
    assert abs(got.fixed - got.plan.fixed.power) <= bound(RUNS), (got.fixed, got.plan.fixed)
    assert abs(got.sequential - got.plan.sequential.power) <= bound(RUNS), (
        got.sequential,
        got.plan.sequential,
    )
