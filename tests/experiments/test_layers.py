"""Competing experiments at once through the real Dealer on 127.0.0.1 (issue 13, item 1).

Four experiments: ``exp-a`` and ``exp-b`` share layer ``main`` (island-based: each variant its own upstream,
units outside both ranges stay on prod), ``exp-c`` and ``exp-d`` share layer ``ui`` (app-side: the Dealer
tells the app in ``X-Squals-Assignments``). 10,000 units go through the Dealer; then each experiment's tick
(its own tallies -> observe -> decide) judges its own units only.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

from scipy.stats import chi2, chi2_contingency

from squals_action.dealer import connect_dealer
from squals_action.dealer.layers import check_slots, experiment_tallies, parse_header, place
from squals_action.experiments.dealer_metrics import DealerMetrics
from squals_action.experiments.decide import decide
from squals_action.experiments.layered import LayeredSplit
from squals_action.experiments.observe import observe
from squals_action.lifecycle.machine import Env
from squals_action.lifecycle.signals import DealerSignals
from squals_action.lifecycle.traffic import DealerTraffic
from squals_action.manifest import model
from squals_action.providers.interface import EnvironmentHandle
from tests.support.dealer import DealerFactory, drive

T0 = datetime(2026, 1, 1, tzinfo=UTC)
UNITS = [f"u{i}" for i in range(10_000)]
PLAN = [
    {
        "experiment": "exp-a",
        "layer": "main",
        "range": [0.0, 0.3],
        "weights": {"a1": 1, "a2": 1},
        "islands": True,
    },
    {
        "experiment": "exp-b",
        "layer": "main",
        "range": [0.3, 0.7],
        "weights": {"b1": 1, "b2": 1},
        "islands": True,
    },
    {"experiment": "exp-c", "layer": "ui", "range": [0.0, 0.5], "weights": {"c1": 1, "c2": 1}},
    {"experiment": "exp-d", "layer": "ui", "range": [0.5, 1.0], "weights": {"d1": 1, "d2": 1}},
]
#: a unit converts when its own uniform number (independent of every Dealer hash) is below its rate
RATES = {"exp-a.a2": 0.30}
BASE_RATE = 0.10


def _uniform(unit: str) -> float:
    return int.from_bytes(hashlib.sha256(unit.encode()).digest()[:8], "big") / 2**64


def _spec(variants: tuple[str, str]) -> model.Experiment:
    return model.Experiment(
        variants={v: model.Variant(v, "squals.yml") for v in variants},
        control=variants[0],
        split={v: 50.0 for v in variants},
        objective=model.Objective("conversion", "maximize", "event:buy", "visitors"),
        significance=model.Significance(0.05, "fixed"),
    )


def test_competing_experiments_share_no_unit_in_a_layer_are_independent_across_layers_and_decide_alone(
    pair: dict[str, str], dealer_factory: DealerFactory
) -> None:
    islands = {name: pair["b"] for name in ("exp-a.a1", "exp-a.a2", "exp-b.b1", "exp-b.b2")}
    islands["prod"] = pair["a"]
    dealer = dealer_factory(islands, {"prod": 100})
    slots = check_slots(PLAN, islands)
    dealer.set_layers(slots)

    first = asyncio.run(drive(dealer.url, [(u, "/hello") for u in UNITS]))
    assert all(status == 200 for _, _, _, status in first.results)
    upstream = {unit: variant for unit, variant, _, _ in first.results}
    told = {unit: parse_header(kept) for (unit, _, _, _), kept in zip(first.results, first.kept, strict=True)}

    # the real Dealer does what the pure placement says, for every unit
    for unit in UNITS:
        expected = place(unit, slots, {"prod": 1.0}, "squals")
        assert upstream[unit] == expected.upstream
        assert told[unit] == parse_header(expected.header or "")

    # one layer: exclusive. main sends each unit to one upstream; ui tells each unit exactly one of c, d
    assert all(len(t) == 1 and set(t) <= {"exp-c", "exp-d"} for t in told.values())
    main = Counter(name.split(".")[0] for name in upstream.values())
    expected_main = {"exp-a": 3000, "exp-b": 4000, "prod": 3000}
    statistic = sum((main[k] - e) ** 2 / e for k, e in expected_main.items())
    assert statistic < chi2.ppf(0.999, df=2), main

    # two layers: independent. main's upstream x ui's assignment, chi-square test of independence
    table = Counter((upstream[u], ",".join(f"{k}={v}" for k, v in told[u].items())) for u in UNITS)
    rows, cols = sorted({r for r, _ in table}), sorted({c for _, c in table})
    assert len(rows) == 5 and len(cols) == 4
    independence = chi2_contingency([[table[r, c] for c in cols] for r in rows])
    assert independence.pvalue > 0.001, table

    # conversions: exp-a's a2 converts at 30 %, everything else at 10 %; units keep their places
    buyers = [u for u in UNITS if _uniform(u) < RATES.get(upstream[u], BASE_RATE)]
    second = asyncio.run(drive(dealer.url, [(u, "/event/buy") for u in buyers]))
    assert all(upstream[unit] == variant for unit, variant, _, _ in second.results)

    # the Dealer tallies each unit in one cell (its upstream, then its app-side variant): 5 x 4 of them
    tallies = dealer.tallies()
    assert set(tallies) == {f"{r}+{c.replace('=', '.')}" for r in rows for c in cols}
    assert (
        sum(t.units for name, t in tallies.items() if name.startswith("prod+"))
        == Counter(upstream.values())["prod"]
    )
    members = {u: {upstream[u]} | {f"{e}.{v}" for e, v in told[u].items()} for u in UNITS}
    for experiment, variants in (("exp-a", "a12"), ("exp-b", "b12"), ("exp-c", "c12"), ("exp-d", "d12")):
        own = experiment_tallies(tallies, experiment)
        for variant in (variants[:2], variants[0] + variants[2]):
            name = f"{experiment}.{variant}"
            units = sum(1 for u in UNITS if name in members[u])
            converted = sum(1 for u in buyers if name in members[u])
            assert own[variant].units == units
            assert own[variant].activations == units + converted
            assert own[variant].event_units["buy"] == converted

    # each experiment's tick reads its own tallies only: its units and converters are exactly its own
    truth: dict[str, set[str]] = {}
    for u in UNITS:
        for name in place(u, slots, {"prod": 1.0}, "squals").tallies:
            truth.setdefault(name, set()).add(u)
    now = T0 + timedelta(days=1)
    decisions = {}
    for experiment, variants in (("exp-a", ("a1", "a2")), ("exp-b", ("b1", "b2")), ("exp-c", ("c1", "c2"))):
        own = experiment_tallies(tallies, experiment)
        assert set(own) == set(variants)
        spec = _spec(variants)
        observations = observe(spec, [DealerMetrics(partial(dict, own))], list(variants), now)
        for variant in variants:
            mine = truth[f"{experiment}.{variant}"]
            assert observations[variant].units == len(mine)
            assert observations[variant].conversions == len(mine & set(buyers))
        decisions[experiment] = decide(observations, spec, T0, now)
    assert decisions["exp-a"].status == "winner" and decisions["exp-a"].winner == "a2"
    assert decisions["exp-a"].p_values["a2"] < 1e-20
    # exp-c holds exp-a's better a2 units on both of its sides alike (orthogonal layers): no effect leaks
    # into it. exp-b's units convert at 10 % on both sides (its p-value is chance, about 0.04 here).
    assert decisions["exp-c"].p_values["c2"] > 0.05, decisions["exp-c"].reasons
    assert decisions["exp-b"].p_values["b2"] > 0.001, decisions["exp-b"].reasons


def test_a_prod_switch_keeps_the_islands_a_slot_uses_and_the_bake_sums_an_upstreams_cells(
    pair: dict[str, str], tmp_path: Path
) -> None:
    """The lifecycle's blue/green on prod's Dealer while experiments are placed on it: ``route`` names prod's
    environments alone, the Dealer keeps the islands (``PUT /upstreams``), and BLUE's figures are its cells
    summed."""
    traffic = DealerTraffic(tmp_path / "prod-dealer")
    traffic.route({"pr-1": pair["a"]}, {"pr-1": 100})
    client = connect_dealer(tmp_path / "prod-dealer")
    try:
        client.set_upstreams({"pr-1": pair["a"], "exp-a.a1": pair["b"], "exp-a.a2": pair["b"]})
        slots = check_slots([PLAN[0], PLAN[2]], ("exp-a.a1", "exp-a.a2"))
        client.set_layers(slots)

        traffic.route({"pr-1": pair["a"], "pr-2": pair["b"]}, {"pr-1": 50, "pr-2": 50})  # BLUE's share
        upstreams, _, plan = client.plan()
        assert set(upstreams) == {"pr-1", "pr-2", "exp-a.a1", "exp-a.a2"} and plan == slots
        assert traffic.routing() == {"pr-1": 50.0, "pr-2": 50.0}  # the islands have no share of their own

        signals = DealerSignals(traffic.tallies)
        signals.begin(Env(name="pr-2"))
        truth = asyncio.run(drive(traffic.url() or "", [(u, "/hello") for u in UNITS[:600]]))
        served = Counter(variant for _, variant, _, _ in truth.results)
        cells = {name for name in traffic.tallies() if name.startswith("pr-2")}
        assert cells == {"pr-2", "pr-2+exp-c.c1", "pr-2+exp-c.c2"}  # exp-c (half of ui) splits BLUE's units
        reading = signals.read()
        assert reading.requests == served["pr-2"] > 100 and not reading.missing
        assert served.keys() == {"pr-1", "pr-2", "exp-a.a1", "exp-a.a2"}
    finally:
        client.close()
        traffic.stop()


def test_a_layered_split_excludes_a_variant_inside_its_slot_notices_a_lost_slot_and_leaves_others_be(
    pair: dict[str, str], tmp_path: Path
) -> None:
    """The experiment's side of prod's Dealer (experiments/layered.py) against a real Dealer: a guardrail's
    exclusion touches its own slot only, and never puts back a slot ended meanwhile; a plan without its slot
    is said in one line; its end keeps the other experiments' slots and drops its own islands."""
    state = tmp_path / "prod-dealer"
    traffic = DealerTraffic(state)
    url = traffic.route({"pr-1": pair["a"]}, {"pr-1": 100})
    other = check_slots([PLAN[2]], ())[0]
    client = connect_dealer(state)
    try:
        client.set_layers([other])
        slot = check_slots([PLAN[0]], ("exp-a.a1", "exp-a.a2"))[0]
        split = LayeredSplit(state, slot)
        islands = {v: EnvironmentHandle(f"exp-{v}", "c" * 40, pair["b"], "local") for v in ("a1", "a2")}
        assert split.open("exp-a", _spec(("a1", "a2")), islands, lambda _: None) == url
        assert client.plan()[2] == (other, slot) and split.unavailable() is None

        split.set_weights({"a1": 50.0, "a2": 0.0}, lambda _: None)  # a2 breached a guardrail
        assert client.plan()[2] == (other, replace(slot, weights={"a1": 50.0, "a2": 0.0}))
        served = asyncio.run(drive(url, [(u, "/hello") for u in UNITS[:300]])).results
        assert {name for _, name, _, _ in served} == {"pr-1", "exp-a.a1"}

        client.set_layers([other])  # a Dealer that lost the plan (restarted from scratch)
        assert split.unavailable() == (
            f"its slot (layer main 0-30 %, islands) is not in the plan of prod's Dealer ({state})"
        )
        split.release(restore=True, log=lambda _: None)
        upstreams, _, plan = client.plan()
        assert plan == (other,) and set(upstreams) == {"pr-1"}
        said: list[str] = []
        split.set_weights({"a1": 0.0, "a2": 50.0}, said.append)  # a tick that decided before the end
        assert client.plan()[2] == (other,)
        assert said == ["exp-a has no slot on prod's Dealer any more: no traffic left to exclude"]
    finally:
        client.close()
        traffic.stop()
