"""``squals experiment plan``: the fixed design against statsmodels, the sequential design's search, bad input
in one line, and the command's three formats run as a real subprocess."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import power_proportions_2indep

from squals_action.experiments import records
from squals_action.experiments.plan import Design, PlanError, fixed_power, plan
from squals_action.experiments.spec import island_names
from squals_action.manifest import load
from tests.cli.test_cli import SHOP, run_squals

MEAN = Design(
    baseline=50.0, sd=120.0, effect=2.5, split={"control": 60, "b": 40}, control="control", daily_units=5000
)
RATE = Design(
    baseline=0.10, sd=None, effect=0.01, split={"control": 50, "b": 50}, control="control", daily_units=2000
)


@pytest.mark.parametrize("split", [{"control": 50, "b": 50}, {"control": 60, "b": 40}])
def test_fixed_design_is_statsmodels_normal_power_for_a_mean(split: dict[str, float]) -> None:
    design = dataclasses.replace(MEAN, split=split)
    got = plan(design).fixed
    ratio = split["b"] / split["control"]
    # one side at alpha/2: the two-sided test's power towards the effect (the decision wins only there)
    reference = NormalIndPower()
    n_control = reference.solve_power(
        effect_size=2.5 / 120.0, alpha=0.025, power=0.8, ratio=ratio, alternative="larger"
    )
    assert 0 <= got.units["control"] - n_control < 2
    assert fixed_power(design, 20_000) == pytest.approx(
        reference.power(
            effect_size=2.5 / 120.0,
            nobs1=20_000 * split["control"] / 100,
            alpha=0.025,
            ratio=ratio,
            alternative="larger",
        ),
        abs=1e-9,
    )
    assert got.days == pytest.approx(got.total_units / 5000)
    assert got.looks == 1 and got.power >= 0.8


def test_several_variants_share_alpha_and_the_smallest_share_binds() -> None:
    design = dataclasses.replace(MEAN, split={"control": 50, "b": 30, "c": 20})
    got = plan(design).fixed
    n_control = NormalIndPower().solve_power(
        effect_size=2.5 / 120.0, alpha=0.05 / 2 / 2, power=0.8, ratio=20 / 50, alternative="larger"
    )
    assert 0 <= got.units["control"] - n_control < 2
    assert got.units == {
        "control": got.units["control"],
        "b": pytest.approx(got.units["control"] * 0.6, abs=1),
        "c": pytest.approx(got.units["control"] * 0.4, abs=1),
    }
    assert plan(design).islands == ("exp-control-<tag>", "exp-b-<tag>", "exp-c-<tag>")


def test_islands_are_the_names_the_start_claims_or_carry_a_placeholder_tag() -> None:
    """The plan never prints a name the experiment will not use: with the id, the start's own names
    (``records.claimed_names``, what a new claim records); without it, each of those names with its tag
    (the last 8 characters) left open, a variant clipped to fit an environment name included."""
    spec = load(SHOP).experiment
    assert spec is not None
    design = dataclasses.replace(MEAN, split=dict(spec.split))
    for eid in ("shop-0123456789ab", "other"):
        claimed = tuple(records.claimed_names(None, eid, spec).values())
        assert plan(design, eid).islands == claimed
        assert plan(design).islands == tuple(name[:-8] + "<tag>" for name in claimed)
    long = dataclasses.replace(MEAN, split={"control": 50, "v" * 70: 50})
    real = island_names("any-id", long.split)["v" * 70]
    assert plan(long).islands[1] == real[:-8] + "<tag>" and len(real) == 63


def test_fixed_design_for_a_rate_agrees_with_statsmodels_two_proportions() -> None:
    got = plan(RATE).fixed
    reference = power_proportions_2indep(
        diff=0.01, prop2=0.10, nobs1=got.units["b"], ratio=1.0, alpha=0.05, return_results=False
    )
    # statsmodels takes the critical value under the pooled null variance, the decision the unpooled one
    assert got.power == pytest.approx(float(reference), abs=0.01)


@pytest.mark.slow
def test_sequential_design_needs_more_units_than_fixed_but_decides_earlier_on_average() -> None:
    got = plan(RATE)
    seq = got.sequential
    assert seq.power >= 0.8
    assert got.fixed.total_units < seq.total_units < 3 * got.fixed.total_units
    assert seq.expected_days is not None and seq.expected_days < seq.days
    assert seq.looks == round(seq.days * RATE.ticks_per_day)
    assert plan(RATE) == got  # seeded: the same inputs print the same plan
    bigger = plan(dataclasses.replace(RATE, effect=0.02)).sequential
    assert bigger.total_units < seq.total_units / 2


def test_fewer_ticks_give_fewer_chances_to_cross_and_a_longer_horizon() -> None:
    hourly = plan(dataclasses.replace(RATE, ticks_per_day=24)).sequential
    daily = plan(dataclasses.replace(RATE, ticks_per_day=1)).sequential
    assert daily.days > hourly.days
    assert daily.looks == math.ceil(daily.days)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"baseline": 1.5}, "baseline rate: expected a rate between 0 and 1 (or 0% to 100%), got 1.5"),
        ({"effect": 0.95}, "minimum detectable effect: the rate 0.1 moved by +0.95 is 1.05, outside 0 to 1"),
        ({"effect": 0.0}, "minimum detectable effect: expected a non-zero difference, got 0"),
        ({"split": {"control": 100}}, "split: expected at least one variant besides control"),
        ({"split": {"a": 50, "b": 50}}, "split: control 'control' has no share (expected it among a, b)"),
        ({"split": {"control": 50, "b": 0}}, "split: expected positive weights, got b 0"),
        ({"power": 0.01}, "power: expected a probability between alpha (0.05) and 1, got 0.01"),
        ({"daily_units": 0.0}, "daily traffic: expected a positive number of units per day, got 0"),
        ({"sd": -1.0, "baseline": 5.0}, "baseline standard deviation: expected a positive number, got -1"),
        ({"sd": 1.0, "baseline": 0.0}, "baseline mean: expected a non-zero number"),
    ],
)
def test_what_cannot_be_planned_is_one_line_naming_the_input(change: dict[str, object], message: str) -> None:
    with pytest.raises(PlanError) as caught:
        plan(dataclasses.replace(RATE, **change))  # type: ignore[arg-type]
    assert caught.value.one_line().startswith(message)
    assert caught.value.exit_code == 2


@pytest.mark.slow
def test_plan_command_prints_both_designs_for_people_json_and_markdown() -> None:
    args = (
        "experiment",
        "plan",
        "--rate",
        "10%",
        "--mde",
        "10%",
        "--daily-traffic",
        "2000",
        "--ticks-per-day",
        "2",
    )
    text = run_squals(*args)
    assert text.returncode == 0, text.stderr
    assert "proportion from 10.00 % to 11.00 % (+10.0 %)" in text.stdout
    assert "29,498" in text.stdout and "14,749" in text.stdout  # the fixed design, per variant
    assert "islands (one per variant): exp-control-<tag>, exp-variant-1-<tag>" in text.stdout
    assert "`<tag>`: 8 hex digits of the experiment id's sha256, known at its start" in text.stdout
    assert "set `min_duration.time` to 15d" in text.stdout

    doc = json.loads(run_squals(*args, "--format", "json").stdout)
    assert doc["fixed"]["units"] == {"control": 14749, "variant-1": 14749}
    assert doc["sequential"]["power"] >= 0.8 and doc["sequential"]["looks"] == round(
        2 * doc["sequential"]["days"]
    )
    assert doc["islands"] == ["exp-control-<tag>", "exp-variant-1-<tag>"] and doc["experiment_id"] is None

    md = run_squals(*args, "--split", "control=50,<b>@x=50", "--format", "markdown")
    assert md.returncode == 0, md.stderr
    assert "<code>&lt;b&gt;&#64;x</code> units" in md.stdout and "<b>" not in md.stdout
    assert "<code>exp-control-&lt;tag&gt;</code>" in md.stdout and "- `<tag>`: 8 hex digits" in md.stdout
    assert (
        "| fixed (Welch's test, one look at the horizon) | 14,749 | 14,749 | 29,498 | 14.7 | 1 | 80.0 % |"
        in md.stdout
    )


@pytest.mark.slow
def test_plan_reads_the_squals_files_experiment_and_flags_override_it() -> None:
    base = (
        "experiment",
        "plan",
        "--from",
        str(SHOP),
        "--mde",
        "10%",
        "--daily-traffic",
        "2000",
        "--format",
        "json",
    )
    doc = json.loads(run_squals(*base, "--rate", "10%").stdout)
    assert doc["split"] == {"control": 50.0, "green": 50.0} and doc["alpha"] == 0.05
    assert doc["islands"] == ["exp-control-<tag>", "exp-green-<tag>"]
    spec = load(SHOP).experiment
    assert spec is not None
    exact = json.loads(run_squals(*base, "--rate", "10%", "--id", "shop-0123456789ab").stdout)
    assert exact["islands"] == list(records.claimed_names(None, "shop-0123456789ab", spec).values())
    assert exact["islands"] == ["exp-control-d89eadba", "exp-green-d89eadba"]
    over = json.loads(
        run_squals(*base, "--rate", "10%", "--split", "control=80,green=20", "--alpha", "1%").stdout
    )
    assert over["split"] == {"control": 80.0, "green": 20.0} and over["alpha"] == 0.01
    assert over["fixed"]["total_units"] > doc["fixed"]["total_units"]


@pytest.mark.parametrize(
    ("extra", "line"),
    [
        (
            ("--rate", "150%"),
            "squals: error: baseline rate: expected a rate between 0 and 1 (or 0% to 100%), got 1.5",
        ),
        (("--rate", "abc"), "argument --rate: expected a number or a percentage (0.1 or 10%), got 'abc'"),
        (("--rate", "10%", "--split", "50"), "argument --split: expected control and at least one variant"),
        (
            ("--mean", "5", "--sd", "2", "--from", str(SHOP)),
            "the objective conversion is a proportion: give its baseline as --rate (not --mean/--sd)",
        ),
        (
            ("--rate", "10%", "--id", "a b"),
            "argument --id: invalid experiment name 'a b': expected letters, digits, '.', '_' or '-'",
        ),
        (
            ("--rate", "10%", "--from", "missing.yml"),
            "--from missing.yml: no such file (expected a squals file)",
        ),
    ],
)
def test_bad_plan_input_is_one_line_and_a_usage_exit(extra: tuple[str, ...], line: str) -> None:
    done = run_squals("experiment", "plan", "--mde", "10%", "--daily-traffic", "2000", *extra)
    assert done.returncode == 2
    assert done.stdout == ""
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert line in done.stderr


@pytest.mark.slow
def test_the_effect_follows_the_direction_and_an_absolute_mde_is_in_the_metrics_unit() -> None:
    base = ("experiment", "plan", "--daily-traffic", "2000", "--format", "json")
    up = json.loads(run_squals(*base, "--rate", "10%", "--mde", "0.01").stdout)
    down = json.loads(run_squals(*base, "--rate", "10%", "--mde", "10%", "--direction", "minimize").stdout)
    assert up["effect"] == pytest.approx(0.01) and down["effect"] == pytest.approx(-0.01)
    # a rate falling to 9 % varies less than one rising to 11 %: fewer units for the same power
    assert down["fixed"]["total_units"] < up["fixed"]["total_units"]
    mean = json.loads(run_squals(*base, "--mean", "50", "--sd", "120", "--mde", "2.5").stdout)
    assert mean["kind"] == "mean" and mean["relative_effect"] == pytest.approx(0.05)
