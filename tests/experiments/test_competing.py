"""Competing experiments at once through the engine, the CLI and the real project Dealer (issue 13, item 1).

Prod (``pr-1``) runs behind the project's Dealer. ``exp-main`` (island-based, layer ``main``, 50 %: control
converts every 10th request, green every 2nd) and ``exp-ui`` (app-side, layer ``ui``, 100 %: the app does
nothing different for its variants) are started on that same Dealer. Each tick decides on its own units:
exp-ui finds no difference so far, exp-main finds green and promotes green's own island through the
lifecycle's blue/green on prod's Dealer under steady load (the bake reads BLUE over its cells, the switch
keeps the islands, the end drops the slot), and exp-ui's units never move. Then b's units buy: a tick in a
new process finds b and ends exp-ui (app-side: nothing to promote).
"""

from __future__ import annotations

import asyncio
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from squals_action.cli import main as main_cli
from squals_action.dealer import connect_dealer
from squals_action.dealer.layers import Slot, parse_header, place
from squals_action.experiments.layering import slot_of
from squals_action.providers import LocalProvider
from tests.support.dealer import drive, steady_load
from tests.support.experiments import (
    Shop,
    experiment_engine,
    git,
    project_lifecycle,
    squals_experiment,
    state_log,
)

UNITS = [f"u{i}" for i in range(1200)]
UI = """\
version: 1
name: shop-ui
app: {{start: {python} app.py, health: /healthz}}
experiment:
  layer: ui
  assignment: app
  variants: {{a: {{}}, b: {{}}}}  # app-side: branches of prod's code, no squals file of their own
  control: a
  split: {{a: 50, b: 50}}
  objective: {{maximize: conversion, numerator: "event:checkout", denominator: visitors}}
  min_duration: {{time: 0s, activations: 100}}
  significance: {{alpha: 0.001}}
"""


def _layered(shop: Shop) -> None:
    """exp-main takes half of layer main; ui.yml declares exp-ui (alpha 0.001: an A/A does not win by chance
    here)."""
    squals = shop.path / "squals.yml"
    layered = squals.read_text().replace("experiment:\n", "experiment:\n  layer: main\n  share: 50%\n", 1)
    squals.write_text(layered)
    (shop.path / "ui.yml").write_text(UI.format(python=sys.executable))
    git(shop.path, "add", "-A")
    git(shop.path, "commit", "-qm", "two experiments in two layers")
    git(shop.path, "push", "-q", "origin", "main")


def _plan(shop: Shop) -> tuple[dict[str, str], tuple[Slot, ...]]:
    client = connect_dealer(shop.path / ".squals" / "dealer")
    try:
        upstreams, _, slots = client.plan()
    finally:
        client.close()
    return upstreams, slots


def _buy(repo: Path, units: list[str]) -> None:
    """A server-side ``checkout`` event for each unit (the app posting it to prod's Dealer)."""
    client = connect_dealer(repo / ".squals" / "dealer")
    try:
        for unit in units:
            client.record_event("checkout", unit=unit)
    finally:
        client.close()


def _pass(url: str, units: list[str] = UNITS) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    """Each unit once through the Dealer: where it was served and the app-side variants it was told."""
    truth = asyncio.run(drive(url, [(u, "/") for u in units], concurrency=16))
    assert all(status == 200 for *_, status in truth.results)
    upstream = {unit: served for unit, served, _, _ in truth.results}
    told = {unit: parse_header(seen) for (unit, *_), seen in zip(truth.results, truth.kept, strict=True)}
    return upstream, told


@pytest.mark.slow
def test_two_layered_experiments_share_prods_dealer_decide_alone_and_end_alone(
    shop: Shop, capsys: pytest.CaptureFixture[str]
) -> None:
    _layered(shop)
    main = experiment_engine(shop)
    prod = project_lifecycle(shop, main.manifest, main.store, LocalProvider(shop.path))
    assert prod.deploy(1, "HEAD").ok and prod.promote(1).ok
    ui = experiment_engine(shop, main.store, "ui.yml")

    started_main = main.start(experiment_id="exp-main", pr=5)
    started_ui = ui.start(experiment_id="exp-ui")
    public = started_main.url
    assert public is not None and started_ui.url == public  # both on prod's Dealer, no Dealer of their own
    assert started_ui.message == (
        f"experiment exp-ui runs: 2 variants behind {public} (layer ui 0-100 %, app-side; shares its units "
        "with exp-main (layer main 0-50 %, islands))"
    )
    islands = started_main.experiment.extra["island_names"]
    assert {h.env for h in LocalProvider(shop.path).list()} == {"pr-1", *islands.values()}
    recorded = {d.id: slot_of(d) for d in (started_main.experiment, started_ui.experiment)}
    assert recorded == {
        "exp-main": Slot("exp-main", "main", 0.0, 0.5, {"control": 50.0, "green": 50.0}, True),
        "exp-ui": Slot("exp-ui", "ui", 0.0, 1.0, {"a": 50.0, "b": 50.0}, False),
    }
    upstreams, slots = _plan(shop)
    assert list(slots) == [recorded["exp-main"], recorded["exp-ui"]]
    # which experiments share traffic: in `squals experiment status` and in the report
    assert main_cli(["experiment", "status", "--repo", str(shop.path)]) == 0
    text = capsys.readouterr().out
    main_at, ui_at = "layer main 0-50 %, islands", "layer ui 0-100 %, app-side"
    assert f"  placement: {main_at}; shares its units with exp-ui ({ui_at})\n" in text
    assert f"  placement: {ui_at}; shares its units with exp-main ({main_at})\n" in text
    assert main_cli(["experiment", "status", "exp-ui", "--repo", str(shop.path), "--format", "markdown"]) == 0
    report = capsys.readouterr().out
    assert f"\nPlacement: {ui_at}; shares its units with exp-main \\({main_at}\\).\n" in report
    assert {"exp-main.control", "exp-main.green"} <= set(upstreams)

    upstream, told = _pass(public)
    for unit in UNITS:  # the real Dealer places every unit as the pure function says
        expected = place(unit, slots, {"pr-1": 1.0}, "squals")
        assert upstream[unit] == expected.upstream and told[unit] == parse_header(expected.header or "")
    served = Counter(upstream.values())
    assert served["pr-1"] > 500 and served["exp-main.control"] > 250 and served["exp-main.green"] > 250
    assert Counter(t["exp-ui"] for t in told.values()).keys() == {"a", "b"}

    (ui_tick,) = ui.tick("exp-ui")  # all the units, no effect: no winner so far
    assert ui_tick.ok and ui_tick.status == "running", ui_tick.message
    assert ui_tick.decision is not None and ui_tick.decision.winner is None
    doc = ui.store.read().experiment("exp-ui")
    assert doc is not None and sum(int(o["units"]) for o in doc.observations.values()) == len(UNITS)

    # exp-main's own units (half of them): green converts more. Its own island is promoted as pr-5 on
    # prod's Dealer under steady load: BLUE's bake reads its cells (every unit is in exp-ui too)
    with steady_load(public, workers=2, units=100, path="/") as answers:
        (main_tick,) = main.tick("exp-main")
    assert main_tick.ok and main_tick.promoted == "green", main_tick.message
    assert len(answers) > 100 and {status for status, _ in answers} == {200}
    observed = main.store.read().experiment("exp-main")
    assert observed is not None  # its own units: those of the pass, and of the load's that it holds
    loaded = [f"w{w}-{n}" for w in range(2) for n in range(100)]
    mine = sum(1 for u in [*UNITS, *loaded] if place(u, slots, {"pr-1": 1.0}, "squals").upstream != "pr-1")
    own = served["exp-main.control"] + served["exp-main.green"]
    assert own < mine < own + len(loaded)
    assert own <= sum(int(o["units"]) for o in observed.observations.values()) <= mine
    shop.kept.add(islands["green"])  # the winner's own island is prod now
    assert {h.env for h in LocalProvider(shop.path).list()} == {"pr-1", islands["green"]}
    upstreams, slots = _plan(shop)
    assert slots == (recorded["exp-ui"],) and "exp-main.green" not in upstreams

    after, told_after = _pass(public, UNITS[:400])
    assert set(after.values()) == {"pr-5"}  # every unit on the new prod
    assert told_after == {u: told[u] for u in UNITS[:400]}  # exp-ui's units never moved

    # now every b unit buys (a server-side event each): a tick in a new process finds b; app-side, there is
    # nothing to promote, so the experiment ends with its winner named and its slot removed
    buyers = [u for u in UNITS if told[u]["exp-ui"] == "b"]
    with ThreadPoolExecutor(8) as pool:  # the admin endpoint answers each in a few ms: 8 at a time
        list(pool.map(_buy, [shop.path] * 8, [buyers[i::8] for i in range(8)]))
    ticked = squals_experiment(shop, "tick", "exp-ui")
    assert ticked.returncode == 0, ticked.stderr
    assert ticked.stdout.startswith("exp-ui: winner: b (b proportion ")
    assert ticked.stdout.endswith("; app-side, nothing to promote: make b the app's default\n")
    doc = ui.store.read().experiment("exp-ui")
    assert doc is not None and doc.status == "decided" and doc.decision is not None
    assert doc.decision["outcome"] == "winner" and doc.decision["winner"] == "b"
    assert _plan(shop)[1] == ()
    assert state_log(shop.origin)[-2:] == ["experiment-tick", "experiment-winner"]
    main.store.close()
