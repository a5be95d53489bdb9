"""decide() on every metric kind: sample-ratio mismatch halts, means and ratios are tested on their
sufficient statistics, guardrails have explicit margins, fixed designs are honest, and intervals agree with
Holm. Figures are computed by hand here (or by scipy) and compared with what the decision reports."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest

from squals_action.experiments import stats
from squals_action.experiments.decide import decide
from squals_action.experiments.interface import Observation
from squals_action.experiments.sufficient import Mean, Proportion, Ratio, Sufficient
from squals_action.manifest import model

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def spec(
    *,
    kind: str = "proportion",
    method: str = "fixed",
    variants: tuple[str, ...] = ("control", "b"),
    guardrails: tuple[model.Guardrail, ...] = (),
) -> model.Experiment:
    return model.Experiment(
        variants={v: model.Variant(v, "squals.yml") for v in variants},
        control="control",
        split={v: 100.0 / len(variants) for v in variants},
        objective=model.Objective("objective", "maximize", "x", kind=kind),  # type: ignore[arg-type]
        guardrails=guardrails,
        significance=model.Significance(0.05, method),  # type: ignore[arg-type]
    )


def obs(name: str, objective: Sufficient, **more: Sufficient) -> Observation:
    n = int(objective.n)
    conversions = int(objective.converters) if isinstance(objective, Proportion) else 0
    return Observation(name, n, conversions, n, T0, stats={"objective": objective, **more})


def mean(n: int, mu: float, sd: float) -> Mean:
    """A mean's statistics from its mean and sample standard deviation."""
    return Mean(n=n, total=n * mu, sum_squares=(n - 1) * sd * sd + n * mu * mu)


def test_the_issues_srm_case_halts_and_shows_the_counts_instead_of_promoting_b() -> None:
    from scipy.stats import chisquare

    data = {
        "control": obs("control", Proportion(units=20000, converters=2000)),
        "b": obs("b", Proportion(units=20900, converters=2508)),
    }
    d = decide(data, spec(), T0, T0)
    assert d.status == "halted-srm" and d.winner is None and d.final
    assert d.srm_p == pytest.approx(chisquare([20000, 20900]).pvalue, rel=1e-9)
    assert (
        "units control 20000, b 20900 against the declared split 50/50 (chi-square p=8.6e-06" in d.reasons[0]
    )
    assert d.summary().startswith("halted: sample-ratio mismatch")
    balanced = {**data, "b": obs("b", Proportion(units=20000, converters=2400))}
    assert decide(balanced, spec(), T0, T0).winner == "b"  # the same lift without the mismatch wins


def test_a_mean_is_tested_on_its_statistics_not_clipped_to_a_proportion() -> None:
    """Revenue 52,000 vs 56,000 over 10,000 visitors each (the issue's case, p = 1 when clipped)."""
    a, b = mean(10000, 5.2, 10.0), mean(10000, 5.6, 10.0)
    d = decide({"control": obs("control", a), "b": obs("b", b)}, spec(kind="mean"), T0, T0)
    f = d.figures["b"]
    t = 0.4 / math.sqrt(2 * 100.0 / 10000)
    assert f.rate == pytest.approx(5.6) and f.effect == pytest.approx(0.4)
    from scipy.stats import ttest_ind_from_stats

    ref = ttest_ind_from_stats(5.6, 10.0, 10000, 5.2, 10.0, 10000, equal_var=False)
    assert f.p_value == pytest.approx(ref.pvalue, rel=1e-9) and ref.statistic == pytest.approx(t)
    assert f.relative_effect == pytest.approx(0.4 / 5.2)
    assert d.status == "winner" and d.winner == "b"


def test_a_ratio_uses_the_delta_method_across_several_activations_per_unit() -> None:
    ratio = Ratio(
        n=1000, numerator=300, numerator_squares=500, denominator=3000, denominator_squares=12000, cross=1500
    )
    d = stats.difference(ratio, ratio)
    # by hand: var_x = (500 - 90)/999, var_y = (12000 - 9000)/999, cov = (1500 - 900)/999, r = 0.1, mean_y = 3
    per_unit = (410 - 2 * 0.1 * 600 + 0.01 * 3000) / 999 / 9
    assert ratio.variance == pytest.approx(per_unit)
    assert d.variance == pytest.approx(2 * per_unit / 1000)
    same = decide({"control": obs("control", ratio), "b": obs("b", ratio)}, spec(kind="ratio"), T0, T0)
    assert same.status == "no-difference" and same.figures["b"].p_value == pytest.approx(1.0)


def test_a_fixed_design_never_ends_no_difference_for_a_variant_without_units() -> None:
    control = obs("control", Proportion(units=5000, converters=500))
    unserved = decide({"control": control, "b": obs("b", Proportion(units=0, converters=0))}, spec(), T0, T0)
    assert unserved.status == "halted-srm"  # 5000 vs 0 on a 50/50 split: the assignment is broken
    few = {
        "control": obs("control", Proportion(units=20, converters=2)),
        "b": obs("b", Proportion(units=12, converters=1)),
    }
    d = decide(few, spec(), T0, T0)
    assert d.status == "continue"
    assert d.reasons[0].startswith("too few units to judge control, b (fewer than 30)")
    served = {"control": control, "b": obs("b", Proportion(units=5000, converters=505))}
    assert decide(served, spec(), T0, T0).status == "no-difference"  # with units: the one look is spent


def test_a_relative_guardrail_margin_on_a_mean_excludes_only_beyond_it() -> None:
    guard = (model.Guardrail("latency", max_relative_increase=10.0),)
    three = ("control", "b", "c")
    base = Proportion(units=5000, converters=500)
    data = {
        "control": obs("control", base, latency=mean(5000, 100.0, 20.0)),
        "b": obs("b", base, latency=mean(5000, 130.0, 20.0)),  # +30 %: beyond the 10 % margin
        "c": obs("c", base, latency=mean(5000, 105.0, 20.0)),  # +5 %: worse, but within it
    }
    d = decide(data, spec(variants=three, guardrails=guard), T0, T0)
    assert d.excluded == ("b",) and d.status == "no-difference"
    assert "latency 130 vs control 100: more than +10% of control" in d.figures["b"].excluded  # type: ignore[operator]
    absolute = (model.Guardrail("latency", max_increase=2.0),)
    assert decide(data, spec(variants=three, guardrails=absolute), T0, T0).excluded == ("b", "c")


def test_a_variant_excluded_earlier_stays_out_and_out_of_the_sample_ratio() -> None:
    data = {
        "control": obs("control", Proportion(units=9000, converters=900)),
        "b": obs("b", Proportion(units=1000, converters=300)),  # excluded early: its traffic stopped
        "c": obs("c", Proportion(units=9100, converters=920)),
    }
    s = spec(variants=("control", "b", "c"))
    d = decide(data, s, T0, T0, excluded_before=("b",))
    assert d.status == "no-difference" and "b" in d.excluded and d.winner is None
    assert decide(data, s, T0, T0).status == "halted-srm"  # without the memory, 9000/1000/9100 is a mismatch


@pytest.mark.parametrize("method", ["fixed", "sequential"])
def test_intervals_agree_with_holm(method: str) -> None:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    @settings(max_examples=200, deadline=None)
    @given(rates=st.lists(st.integers(60, 160), min_size=3, max_size=5), units=st.integers(2000, 6000))
    def check(rates: list[int], units: int) -> None:
        names = ("control", "b", "c", "d", "e")[: len(rates)]
        data = {
            n: obs(n, Proportion(units=units, converters=r * units // 1000))
            for n, r in zip(names, rates, strict=True)
        }
        d = decide(data, spec(method=method, variants=names), T0, T0)
        for name in names[1:]:
            f = d.figures[name]
            assert f.ci_low is not None and f.ci_high is not None and f.interval_alpha is not None
            assert f.significant == (not f.ci_low <= 0.0 <= f.ci_high), (name, f)

    check()
