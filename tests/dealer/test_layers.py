"""Layers of the unit space (pure): exclusive ranges within a layer, independent layers, one-line refusals."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from typing import Any

import pytest
from scipy.stats import chi2, chi2_contingency

from squals_action.dealer.bucketing import assign
from squals_action.dealer.interface import DealerError, EventSums, VariantTally
from squals_action.dealer.layers import (
    Slot,
    SlotConflict,
    allocate,
    check_slots,
    experiment_tallies,
    layer_point,
    outside,
    parse_header,
    place,
    with_slot,
)

UPSTREAMS = ("prod", "exp-a.a1", "exp-a.a2", "exp-b.b1", "exp-b.b2")
PROD = {"prod": 1.0}


def slot(experiment: str, layer: str, low: float, high: float, islands: bool = False, **w: float) -> Any:
    return {
        "experiment": experiment,
        "layer": layer,
        "range": [low, high],
        "weights": w or {"x1": 1, "x2": 1},
        "islands": islands,
    }


def test_a_layer_splits_units_exclusively_and_two_layers_are_independent() -> None:
    slots = check_slots(
        [
            slot("exp-a", "main", 0.0, 0.3, True, a1=1, a2=1),
            slot("exp-b", "main", 0.3, 0.7, True, b1=1, b2=1),
            slot("exp-c", "ui", 0.0, 0.5, c1=1, c2=1),
            slot("exp-d", "ui", 0.5, 1.0, d1=1, d2=1),
        ],
        UPSTREAMS,
    )
    table: Counter[tuple[str, str]] = Counter()
    for i in range(20_000):
        placement = place(f"u{i}", slots, PROD, "squals")
        told = parse_header(placement.header or "")
        assert len(told) == 1 and set(told) <= {"exp-c", "exp-d"}  # ui covers [0, 1): one of them, never both
        main = [t for t in placement.tallies if t.startswith(("exp-a.", "exp-b."))]
        assert len(main) <= 1 and placement.tallies[0] == placement.upstream
        table[placement.upstream, "/".join(f"{k}={v}" for k, v in told.items())] += 1
    rows = sorted({r for r, _ in table})
    cols = sorted({c for _, c in table})
    observed = [[table[r, c] for c in cols] for r in rows]
    assert chi2_contingency(observed).pvalue > 0.001, observed
    shares = Counter(r.split(".")[0] for r, _ in table.elements())
    expected = {"exp-a": 6000, "exp-b": 8000, "prod": 6000}
    statistic = sum((shares[k] - e) ** 2 / e for k, e in expected.items())
    assert statistic < chi2.ppf(0.999, df=2), shares


def test_layer_points_differ_by_layer_and_are_stable() -> None:
    assert layer_point("u1", "main") == layer_point("u1", "main")
    assert layer_point("u1", "main") != layer_point("u1", "ui")
    assert 0.0 < layer_point("u1", "main") < 1.0


def test_units_outside_every_island_range_are_routed_by_the_weights_as_without_layers() -> None:
    upstreams = ("green", "blue", "exp-a.a1", "exp-a.a2")
    slots = check_slots([slot("exp-a", "main", 0.0, 0.2, True, a1=1, a2=1)], upstreams)
    rollout = outside({"green": 90, "blue": 10, "exp-a.a1": 0, "exp-a.a2": 0}, slots)
    assert rollout == {"green": 90, "blue": 10}
    for i in range(2_000):
        placement = place(f"u{i}", slots, rollout, "squals")
        if layer_point(f"u{i}", "main") >= 0.2:  # prod's blue/green split goes on untouched
            assert placement == place(f"u{i}", (), rollout, "squals")
            assert placement.upstream == assign(f"u{i}", rollout, "squals")
            assert placement.tallies == (placement.upstream,) and placement.header is None
        else:
            assert placement.upstream in ("exp-a.a1", "exp-a.a2")
    with pytest.raises(DealerError, match="need an upstream with a weight above 0 that is no experiment's"):
        outside({"exp-a.a1": 1, "green": 0}, slots)


@pytest.mark.parametrize(
    ("slots", "message"),
    [
        (
            [slot("exp-a", "main", 0.0, 0.5), slot("exp-b", "main", 0.4, 1.0)],
            "layer 'main': exp-a [0, 0.5) and exp-b [0.4, 1) overlap: a unit would be in both",
        ),
        (
            [slot("exp-a", "main", 0.0, 0.5, True, a1=1, a2=1), slot("exp-b", "ui", 0, 1, True, b1=1, b2=1)],
            "island-based experiments in layers main, ui: a request reaches one upstream",
        ),
        ([slot("exp-a", "main", 0.5, 1.5)], "range [0.5, 1.5) must lie in [0, 1] with low < high"),
        ([slot("exp-z", "main", 0, 1, True, z1=1)], "island-based variants need upstreams exp-z.z1"),
        ([slot("exp-a", "m", 0, 0.5), slot("exp-a", "n", 0, 1)], "experiment exp-a is placed twice"),
        ([slot("exp.a", "main", 0, 1)], "experiment name 'exp.a' must be 1-64 letters"),
        ([slot("exp-a", "main", 0, 1, x1=0)], "at least one upstream needs a weight above 0"),
        ([{"experiment": "exp-a"}], "layers[0]: expected {experiment, layer, range: [low, high], weights}"),
        ({"experiment": "exp-a"}, "layers must be a list"),
    ],
)
def test_bad_plans_are_refused_in_one_line(slots: Any, message: str) -> None:
    with pytest.raises(DealerError) as caught:
        check_slots(slots, UPSTREAMS)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_one_slot_is_added_last_or_replaced_in_its_place_and_a_conflict_is_told_apart() -> None:
    """A replaced slot keeps its place (the slots' order is the order of a cell's names); what cannot sit
    beside the others is a SlotConflict (the admin route's 409), a malformed slot a plain DealerError."""
    plan = check_slots([slot("exp-a", "main", 0, 0.5), slot("exp-b", "ui", 0, 1)], UPSTREAMS)
    added = with_slot(plan, "exp-c", slot("exp-c", "main", 0.5, 1), UPSTREAMS)
    assert [s.experiment for s in added] == ["exp-a", "exp-b", "exp-c"]
    replaced = with_slot(
        added,
        "exp-a",
        {k: v for k, v in slot("x", "main", 0, 0.5, x1=1, x2=0).items() if k != "experiment"},
        UPSTREAMS,
    )
    assert [s.experiment for s in replaced] == ["exp-a", "exp-b", "exp-c"]
    assert replaced[0].weights == {"x1": 1.0, "x2": 0.0} and replaced[1:] == added[1:]
    with pytest.raises(SlotConflict, match=r"layer 'main': exp-c \[0.5, 1\) and exp-d \[0.6, 1\) overlap"):
        with_slot(added, "exp-d", slot("exp-d", "main", 0.6, 1), UPSTREAMS)
    with pytest.raises(DealerError, match=r"slot 'exp-d': range \[0.5, 1.5\) must lie in") as malformed:
        with_slot(added, "exp-d", slot("exp-d", "main", 0.5, 1.5), UPSTREAMS)
    assert not isinstance(malformed.value, SlotConflict)


def test_allocate_gives_the_lowest_free_range_and_refuses_a_full_layer() -> None:
    assert allocate([], 0.3) == (0.0, 0.3)
    assert allocate([(0.0, 0.3)], 0.5) == (0.3, 0.8)
    assert allocate([(0.2, 0.6)], 0.2) == (0.0, 0.2)
    assert allocate([(0.2, 0.6)], 0.3) == pytest.approx((0.6, 0.9))
    with pytest.raises(DealerError) as caught:
        allocate([(0.0, 0.3), (0.5, 0.9)], 0.3, "main")
    assert str(caught.value) == (
        "layer 'main' has no free 30% for another experiment (largest free range 20%): "
        "stop one, use a smaller share or another layer"
    )
    with pytest.raises(DealerError, match="must be in"):
        allocate([], 0.0)


def test_each_experiment_reads_its_own_tallies_summed_over_its_cells() -> None:
    tallies = {
        "prod": VariantTally("prod", units=5),
        "exp-a.a1+exp-c.c1": VariantTally(
            "exp-a.a1+exp-c.c1",
            units=2,
            activations=3,
            events={"buy": 1},
            event_units={"buy": 1},
            latency_p99_ms=40.0,
            event_sums={"buy": EventSums(1, 1, 1, 2, 4, 2, 1, 2)},
        ),
        "prod+exp-c.c1": VariantTally(
            "prod+exp-c.c1",
            units=4,
            activations=4,
            events={"buy": 2},
            event_units={"buy": 2},
            latency_p99_ms=10.0,
            event_sums={"buy": EventSums(2, 2, 2, 0, 0, 0, 2, 0)},
        ),
        "exp-a.a2": VariantTally("exp-a.a2", units=3, latency_p99_ms=12.0),
        "exp-ab.x": VariantTally("exp-ab.x", units=7),
    }
    a = experiment_tallies(tallies, "exp-a")
    assert a == {
        "a1": replace(tallies["exp-a.a1+exp-c.c1"], name="a1"),
        "a2": VariantTally("a2", units=3, latency_p99_ms=12.0),
    }
    c = experiment_tallies(tallies, "exp-c")["c1"]
    assert (c.units, c.activations, c.events, c.event_units) == (6, 7, {"buy": 3}, {"buy": 3})
    assert c.event_sums == {"buy": EventSums(3, 3, 3, 2, 4, 2, 3, 2)}
    assert c.latency_p99_ms is None  # percentiles of two cells do not add up: not measured, not made up


def test_a_unit_is_tallied_in_one_cell_and_too_many_cells_are_refused() -> None:
    slots = check_slots(
        [slot("exp-a", "main", 0.0, 1.0, True, a1=1, a2=1), slot("exp-c", "ui", 0.0, 1.0, c1=1, c2=1)],
        UPSTREAMS,
    )
    placement = place("u1", slots, PROD, "squals")
    assert placement.cell == "+".join(placement.tallies)
    assert placement.cell.startswith(placement.upstream + "+exp-c.c")
    assert place("u1", (), PROD, "squals").cell == "prod"
    many = [slot(f"exp-{i}", f"layer{i}", 0.0, 1.0, **{f"v{j}": 1 for j in range(4)}) for i in range(3)]
    with pytest.raises(DealerError, match="the Dealer keeps at most 255: fewer app-side experiments"):
        check_slots(many, UPSTREAMS)


def test_slots_round_trip_through_json() -> None:
    slots = check_slots([slot("exp-a", "main", 0.1, 0.4, True, a1=30, a2=70)], UPSTREAMS)
    assert check_slots([s.to_json() for s in slots], UPSTREAMS) == slots
    assert slots[0] == Slot("exp-a", "main", 0.1, 0.4, {"a1": 30.0, "a2": 70.0}, True)
