"""experiment.layer, share and assignment: parsed, placed as Dealer slots, refused in one line where they
cannot run (aws; no prod's Dealer to place them on)."""

from __future__ import annotations

import subprocess
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from squals_action.dealer import DealerConfig, start_dealer, stop_dealer
from squals_action.dealer.layers import Slot
from squals_action.experiments.interface import ExperimentError
from squals_action.experiments.layered import check_prod_dealer
from squals_action.experiments.layering import refuse_on_aws, slot_for
from squals_action.experiments.records import StartRequest, claim
from squals_action.experiments.spec import spec_digest
from squals_action.manifest import load, validate_file
from squals_action.manifest.model import Experiment
from squals_action.providers import LocalProvider
from squals_action.state import Documents, open_store
from tests.support.experiments import experiment_engine, git, make_shop


def _with(shop_path: Path, text: str) -> None:
    squals = shop_path / "squals.yml"
    squals.write_text(squals.read_text().replace("experiment:\n", "experiment:\n" + text, 1))


def test_the_squals_file_places_an_experiment_in_a_layer_and_keeps_old_digests(tmp_path: Path) -> None:
    shop = make_shop(tmp_path)
    before = load(shop.path / "squals.yml", shop.path).experiment
    assert before is not None
    assert (before.layer, before.share, before.assignment) == ("default", 100.0, "islands")
    _with(shop.path, "  layer: checkout\n  share: 30%\n  assignment: app\n")
    spec = load(shop.path / "squals.yml", shop.path).experiment
    assert spec is not None
    assert (spec.layer, spec.share, spec.assignment) == ("checkout", 30.0, "app")
    # an experiment started before layers keeps its digest; placing it elsewhere changes it
    assert spec_digest(replace(spec, layer="default", share=100.0, assignment="islands")) == spec_digest(
        before
    )
    assert spec_digest(spec) != spec_digest(before)


def test_a_share_of_nothing_is_refused_with_its_line(tmp_path: Path) -> None:
    shop = make_shop(tmp_path)
    _with(shop.path, "  share: 0%\n")
    problems = validate_file(shop.path / "squals.yml", shop.path).problems
    rendered = [p.render() for p in problems]
    assert any(
        "experiment.share" in r and "expected a share above 0% and at most 100%, got 0%" in r
        for r in rendered
    )


def _spec(layer: str = "default", share: float = 100.0, assignment: str = "islands") -> Experiment:
    from squals_action.manifest import model

    return model.Experiment(
        variants={v: model.Variant(v, "squals.yml") for v in ("control", "b")},
        control="control",
        split={"control": 50.0, "b": 50.0},
        objective=model.Objective("conversion", "maximize", "event:buy"),
        layer=layer,
        share=share,
        assignment=assignment,  # type: ignore[arg-type]
    )


def test_slots_take_the_lowest_free_range_and_one_layer_of_islands() -> None:
    first = slot_for("exp-a", _spec("main", 30.0), [])
    assert first == Slot("exp-a", "main", 0.0, 0.3, {"control": 50.0, "b": 50.0}, True)
    second = slot_for("exp-b", _spec("main", 50.0), [first])
    assert (second.low, second.high) == pytest.approx((0.3, 0.8))
    app = slot_for("exp-c", _spec("ui", 100.0, "app"), [first, second])
    assert (app.layer, app.low, app.high, app.islands) == ("ui", 0.0, 1.0, False)
    with pytest.raises(ExperimentError, match="layer 'main' has no free 30% for another experiment"):
        slot_for("exp-d", _spec("main", 30.0), [first, second])
    with pytest.raises(ExperimentError) as caught:
        slot_for("exp-e", _spec("ui", 10.0), [first, second, app])
    assert "layer 'main' already does and a request reaches one upstream: use `assignment: app`" in str(
        caught.value
    )


def test_aws_refuses_a_layered_experiment_in_one_line() -> None:
    refuse_on_aws(_spec(), "aws")  # the whole front door, as before: fine
    with pytest.raises(ExperimentError) as caught:
        refuse_on_aws(_spec("main", 30.0), "aws")
    assert "on aws an experiment takes the whole front door" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_layered_start_without_prod_is_refused_before_anything_is_claimed_or_provisioned(
    tmp_path: Path,
) -> None:
    shop = make_shop(tmp_path)
    _with(shop.path, "  layer: checkout\n  share: 30%\n")
    git(
        shop.path, "commit", "-q", "-am", "the experiment takes 30 % of layer checkout"
    )  # a start reads its commit
    eng = experiment_engine(shop, open_store(shop.path))
    with pytest.raises(ExperimentError) as caught:
        eng.start()
    assert "squals.yml" in str(caught.value)
    assert "a layered experiment runs on prod's Dealer" in str(caught.value)
    assert "\n" not in str(caught.value) and str(caught.value).endswith("nothing was started")
    assert LocalProvider(shop.path).list() == ()
    nothing = subprocess.run(
        ["git", "rev-parse", "--verify", "-q", "squals/state"],
        cwd=shop.origin,
        capture_output=True,
        timeout=30,
    )
    assert nothing.returncode != 0  # nothing was claimed: the state branch was never written
    eng.store.close()


def test_a_layered_experiment_counting_events_otherwise_than_prods_dealer_is_refused(tmp_path: Path) -> None:
    """Its tallies are prod's Dealer's, counted under prod's caps: `count: all` would read one per unit."""
    state = tmp_path / "dealer"
    start_dealer(DealerConfig(upstreams={"prod": "http://127.0.0.1:9"}, weights={"prod": 1}), state)
    try:
        check_prod_dealer(state, replace(_spec("main", 30.0), events={"buy": 1}))  # once, as prod counts
        with pytest.raises(ExperimentError) as caught:
            check_prod_dealer(state, replace(_spec("main", 30.0), events={"buy": 1, "purchase": 5}))
    finally:
        stop_dealer(state)
    why = str(caught.value)
    assert "experiment.events.purchase counts up to 5 per unit" in why and "up to 1 per unit" in why
    assert "\n" not in why and why.endswith("nothing was started")


def _request(eid: str, spec: Experiment, dealer: str | None) -> StartRequest:
    return StartRequest(
        eid=eid,
        spec=spec,
        digest=spec_digest(spec),
        commit="c" * 40,
        pr=None,
        now=datetime(2026, 1, 1, tzinfo=UTC),
        token=f"run {eid}",
        squals_file="squals.yml",
        dealer=dealer,
    )


def test_the_claim_places_layered_experiments_side_by_side_and_refuses_a_plain_one_beside_them() -> None:
    docs = Documents()
    first = claim(docs, _request("exp-a", _spec("main", 30.0), "/d")).state
    second = claim(docs, _request("exp-b", _spec("main", 50.0), "/d")).state
    assert first is not None and second is not None
    assert second.extra["traffic"] == {
        "kind": "layers",
        "dealer_dir": "/d",
        "slot": {
            "experiment": "exp-b",
            "layer": "main",
            "range": [0.3, 0.8],
            "weights": {"control": 50.0, "b": 50.0},
            "islands": True,
        },
    }
    with pytest.raises(ExperimentError, match="layer 'main' has no free 30%"):
        claim(docs, _request("exp-c", _spec("main", 30.0), "/d"))  # refused in the claim: nothing written
    assert set(docs.experiments()) == {"exp-a", "exp-b"}
    with pytest.raises(ExperimentError) as caught:
        claim(docs, _request("plain", _spec(), None))
    assert str(caught.value) == (
        "experiment exp-a is starting: one experiment at a time without experiment.layer/share/assignment "
        "(it runs in layer main 0-30 %, islands; this one would take every unit: give it a layer or a "
        "share); stop it first (`squals experiment stop exp-a`)"
    )
    alone = Documents()
    claim(alone, _request("plain", _spec(), None))
    with pytest.raises(ExperimentError, match=r"beside one without experiment\.layer/share/assignment"):
        claim(alone, _request("exp-a", _spec("main", 30.0), "/d"))


def test_app_side_variants_need_no_squals_file_island_variants_do(tmp_path: Path) -> None:
    shop = make_shop(tmp_path)
    squals = shop.path / "squals.yml"
    squals.write_text(
        squals.read_text()
        .replace("    control: {squals: squals.yml}\n", "    control: {}\n")
        .replace("experiment:\n", "experiment:\n  layer: ui\n  assignment: app\n", 1)
    )
    spec = load(squals, shop.path).experiment
    assert spec is not None and spec.variants["control"].squals == "" and spec.assignment == "app"
    squals.write_text(squals.read_text().replace("  assignment: app\n", ""))
    rendered = [p.render() for p in validate_file(squals, shop.path).problems]
    assert len(rendered) == 1
    assert "$.experiment.variants.control: missing required key 'squals'" in rendered[0]
    assert "with `assignment: app` a variant is a branch of prod's code and needs none" in rendered[0]


def test_the_cli_places_layered_experiments_on_the_dealer_its_lifecycle_switches(tmp_path: Path) -> None:
    from squals_action.experiments.engine import from_lifecycle
    from tests.support.experiments import project_lifecycle

    shop = make_shop(tmp_path)
    eng = experiment_engine(shop, open_store(shop.path))
    lifecycle = project_lifecycle(shop, eng.manifest, eng.store, LocalProvider(shop.path))
    assert from_lifecycle(lifecycle).project_dealer == shop.path / ".squals" / "dealer"
    eng.store.close()
