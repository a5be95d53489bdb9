"""Pure parts of the Dealer: bucketing statistics, weight checks, latency histogram, config."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.stats import chi2

from squals_action.dealer.bucketing import assign, normalise_weights, unit_hash
from squals_action.dealer.config import config_from_json, config_to_json, load_config
from squals_action.dealer.interface import DealerConfig, DealerError
from squals_action.dealer.latency import LatencyHistogram

UNITS = [f"unit-{i}" for i in range(10_000)]


def test_split_30_70_of_10000_units_is_within_the_chi_square_bound() -> None:
    counts = {"a": 0, "b": 0}
    for unit in UNITS:
        counts[assign(unit, {"a": 30.0, "b": 70.0}, "squals")] += 1
    expected = {"a": 3000.0, "b": 7000.0}
    statistic = sum((counts[k] - expected[k]) ** 2 / expected[k] for k in counts)
    assert statistic < chi2.ppf(1 - 0.001, df=1), counts


def test_three_way_split_is_proportional_for_random_units() -> None:
    rng = random.Random(7)
    units = [f"{rng.getrandbits(64):x}" for _ in range(10_000)]
    weights = {"a": 20.0, "b": 30.0, "c": 50.0}
    counts = {k: 0 for k in weights}
    for unit in units:
        counts[assign(unit, weights, "seed-2")] += 1
    statistic = sum((counts[k] - 100.0 * weights[k]) ** 2 / (100.0 * weights[k]) for k in weights)
    assert statistic < chi2.ppf(1 - 0.001, df=2), counts


def test_50_50_to_60_40_moves_about_10_percent_and_only_towards_the_raised_variant() -> None:
    before = {u: assign(u, {"a": 50.0, "b": 50.0}, "squals") for u in UNITS}
    after = {u: assign(u, {"a": 60.0, "b": 40.0}, "squals") for u in UNITS}
    moved = [u for u in UNITS if before[u] != after[u]]
    assert 0.08 <= len(moved) / len(UNITS) <= 0.12
    assert all(before[u] == "b" and after[u] == "a" for u in moved)


def test_adding_a_variant_only_moves_units_to_it_and_removing_it_moves_them_back() -> None:
    two = {u: assign(u, {"a": 50.0, "b": 50.0}, "s") for u in UNITS}
    three = {u: assign(u, {"a": 50.0, "b": 50.0, "c": 20.0}, "s") for u in UNITS}
    assert all(three[u] in (two[u], "c") for u in UNITS)
    assert {u: assign(u, {"a": 50.0, "b": 50.0, "c": 0.0}, "s") for u in UNITS} == two


def test_promotion_and_rollback_weights_return_every_unit_to_its_first_variant() -> None:
    start = {u: assign(u, {"green": 90.0, "blue": 10.0}, "s") for u in UNITS[:2000]}
    assert {assign(u, {"green": 0.0, "blue": 100.0}, "s") for u in UNITS[:2000]} == {"blue"}
    assert {u: assign(u, {"green": 90.0, "blue": 10.0}, "s") for u in UNITS[:2000]} == start


def test_the_seed_decorrelates_experiments() -> None:
    a = [assign(u, {"x": 1.0, "y": 1.0}, "one") for u in UNITS[:2000]]
    b = [assign(u, {"x": 1.0, "y": 1.0}, "two") for u in UNITS[:2000]]
    agreement = sum(p == q for p, q in zip(a, b, strict=True)) / 2000
    assert 0.45 < agreement < 0.55


@given(st.text(max_size=300), st.text(min_size=1, max_size=40))
def test_unit_hash_is_inside_the_open_unit_interval(unit: str, variant: str) -> None:
    h = unit_hash("seed", variant, unit)
    assert 0.0 < h < 1.0
    assert h == unit_hash("seed", variant, unit)


@given(st.dictionaries(st.sampled_from("abcd"), st.floats(0, 1e6), min_size=1), st.text(max_size=20))
def test_assign_only_picks_positive_weights(weights: dict[str, float], unit: str) -> None:
    if not any(weights.values()):
        with pytest.raises(DealerError):
            assign(unit, weights, "s")
    else:
        assert weights[assign(unit, weights, "s")] > 0


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ({"zz": 1.0}, "unknown upstream(s) zz"),
        ({"a": -1.0}, "finite number >= 0"),
        ({"a": float("nan")}, "finite number >= 0"),
        ({"a": "10"}, "must be a number"),
        ({"a": 0.0, "b": 0.0}, "at least one upstream"),
    ],
)
def test_bad_weights_are_one_line_errors(weights: dict[str, object], message: str) -> None:
    with pytest.raises(DealerError, match=message.replace("(", r"\(").replace(")", r"\)")):
        normalise_weights(weights, ("a", "b"))  # type: ignore[arg-type]


def test_missing_weights_default_to_zero_in_upstream_order() -> None:
    assert normalise_weights({"b": 3}, ("a", "b")) == {"a": 0.0, "b": 3.0}


def test_histogram_percentiles_match_exact_ones_within_its_precision() -> None:
    rng = np.random.default_rng(3)
    samples = rng.lognormal(mean=1.0, sigma=1.2, size=50_000)
    hist = LatencyHistogram()
    for value in samples:
        hist.add(float(value))
    for q in (50, 95, 99):
        exact = float(np.percentile(samples, q))
        got = hist.percentile(q)
        assert got is not None
        assert abs(got - exact) / exact < 0.015, (q, got, exact)
    assert len(hist.buckets) < 2000
    assert LatencyHistogram().percentile(50) is None


def test_histogram_is_bounded_for_extreme_values() -> None:
    hist = LatencyHistogram()
    for value in (0.0, 1e-9, 1e12, float(10**9)):
        hist.add(value)
    assert hist.count == 4 and len(hist.buckets) == 2


def test_config_round_trips_and_bad_config_names_the_file(tmp_path: Path) -> None:
    config = DealerConfig(
        upstreams={"a": "http://127.0.0.1:1"}, weights={"a": 1.0}, token="t", unit_kind="header"
    )
    assert config_from_json(config_to_json(config), "c.json") == config
    bad = tmp_path / "c.json"
    bad.write_text('{"upstreams": [{"name": "a", "url": "ftp://x"}], "token": "t"}')
    with pytest.raises(DealerError, match=r"c\.json: upstream 'a': expected an http\(s\)://host:port URL"):
        load_config(bad)
    bad.write_text("{\n  nope")
    with pytest.raises(DealerError, match=r"c\.json:2: invalid JSON"):
        load_config(bad)
    bad.write_text('{"upstreams": [{"name": "a b", "url": "http://x:1"}], "token": "t"}')
    with pytest.raises(DealerError, match="upstream name 'a b'"):
        load_config(bad)
