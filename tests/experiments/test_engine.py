"""The experiment engine end to end: real local provider, real Dealer daemons, a real git state branch in a
bare repository, bounded synthetic traffic on 127.0.0.1; the variant that converts more becomes prod."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from squals_action.dealer import dealer_status
from squals_action.experiments.interface import ExperimentError
from squals_action.experiments.spec import legacy_island_name
from squals_action.lifecycle.engine import Lifecycle
from squals_action.lifecycle.traffic import DealerTraffic
from squals_action.manifest.model import Manifest
from squals_action.providers import LocalProvider
from tests.support.experiments import (
    Shop,
    experiment_engine,
    git,
    make_shop,
    state_log,
    sticky_visits,
    stop_everything,
    visit,
)


def test_the_variant_that_converts_more_is_promoted_to_prod(shop: Shop) -> None:
    eng = experiment_engine(shop)
    started = eng.start(pr=7)
    assert started.started and started.url
    eid = started.experiment.id
    assert started.experiment.status == "running"
    assert set(started.experiment.extra["islands"]) == {"control", "green"}

    first = eng.tick()
    assert [t.status for t in first] == ["running"]
    assert first[0].decision is not None and "minimum duration" in first[0].decision.reasons[0]

    seen = visit(started.url, 300)
    assert set(seen) == {"grey", "green"}, seen  # both variants served, nothing failed
    for _ in range(3):  # a returning visitor stays on its variant
        assert len(sticky_visits(started.url, 4)) == 1

    outcomes = eng.tick()
    assert len(outcomes) == 1
    result = outcomes[0]
    assert result.ok, result.message
    assert result.promoted == "green" and result.status == "decided"
    assert result.decision is not None and result.decision.winner == "green"
    assert result.decision.p_values["green"] < 0.05

    doc = eng.store.read().experiment(eid)
    assert doc is not None and doc.status == "decided"
    assert doc.decision is not None and doc.decision["outcome"] == "promoted"
    assert doc.decision["environment"] == "pr-7"
    assert doc.observations["green"]["conversions"] > doc.observations["control"]["conversions"]
    assert len(doc.extra["ticks"]) == 2

    # the loser's island and the experiment's Dealer are gone; prod is the winner's own island (adopted as
    # pr-7, not provisioned again), behind the project's Dealer
    green = started.experiment.extra["island_names"]["green"]
    assert green.startswith("exp-green-")  # the experiment's own island, its tag in the name
    shop.kept.add(green)
    handles = {h.env for h in LocalProvider(shop.path).list()}
    assert handles == {green}, handles
    assert dealer_status(eng.dealer_dir(eid)).state == "stopped"
    env = eng.store.read().environment("pr-7")
    assert env is not None and env.status == "prod" and env.traffic_share == 100.0
    assert env.handle is not None and env.handle["env"] == green
    public = DealerTraffic(shop.path / ".squals" / "dealer").url()
    assert public is not None
    assert visit(public, 3) == {"green": 3}

    events = state_log(shop.origin)
    assert events[:4] == ["experiment-start", "experiment-routing", "experiment-running", "experiment-tick"]
    assert events[4] == "experiment-tick"
    assert "deploy" in events and "complete" in events  # the lifecycle's own promotion path
    assert events[-1] == "experiment-promoted"
    eng.store.close()


def test_start_twice_is_idempotent_and_a_second_experiment_is_refused(shop: Shop) -> None:
    eng = experiment_engine(shop)
    first = eng.start()
    again = eng.start()
    assert not again.started and again.experiment.id == first.experiment.id
    with pytest.raises(ExperimentError, match="one experiment at a time"):
        eng.start(experiment_id="another")
    stopped = eng.stop(first.experiment.id)
    assert stopped.status == "stopped" and stopped.decision is not None
    assert LocalProvider(shop.path).list() == ()
    assert dealer_status(eng.dealer_dir(first.experiment.id)).state == "stopped"
    assert state_log(shop.origin)[-1] == "experiment-stop"
    assert [t.status for t in eng.tick()] == []  # nothing running: nothing to advance
    eng.store.close()


def test_a_variant_breaking_the_error_guardrail_stops_the_experiment(tmp_path: Path) -> None:
    shop = make_shop(tmp_path, green_fail=3, activations=100_000)
    try:
        eng = experiment_engine(shop)
        started = eng.start()
        assert started.url
        seen = visit(started.url, 240)
        assert "500" in seen
        (result,) = eng.tick()
        assert result.decision is not None and result.decision.status == "guardrail-stop", result.message
        assert result.status == "decided" and result.promoted is None
        doc = eng.store.read().experiment(started.experiment.id)
        assert doc is not None and doc.decision is not None and doc.decision["outcome"] == "guardrail-stop"
        assert doc.extra["excluded"] == ["green"]
        assert LocalProvider(shop.path).list() == ()
        assert eng.store.read().environment("pr-7") is None  # prod untouched
        assert state_log(shop.origin)[-1] == "experiment-guardrail-stop"
        eng.store.close()
    finally:
        leftovers, dealers = stop_everything(shop.path)
    assert leftovers == [] and dealers == []


def test_the_spec_judged_is_the_spec_started(shop: Shop) -> None:
    eng = experiment_engine(shop)
    started = eng.start()
    text = (shop.path / "squals.yml").read_text().replace("alpha: 0.05", "alpha: 0.01")
    (shop.path / "squals.yml").write_text(text)
    git(shop.path, "commit", "-qam", "a stricter alpha, committed after the start")
    changed = experiment_engine(shop, eng.store)
    assert changed.manifest.experiment is not None and changed.manifest.experiment.significance.alpha == 0.01
    (result,) = changed.tick()  # judged with the files at the start commit, not the working tree
    assert result.ok and result.status == "running", result.message
    assert result.decision is not None and result.decision.alpha == 0.05
    green = started.experiment.extra["island_names"]["green"]
    assert green in {h.env for h in LocalProvider(shop.path).list()}
    changed.stop(started.experiment.id)
    doc = eng.store.read().experiment(started.experiment.id)
    assert doc is not None and doc.status == "stopped"
    assert json.dumps(doc.to_json())  # the document stays plain JSON
    assert git(shop.origin, "rev-parse", "--verify", "squals/state")
    eng.store.close()


def test_a_failed_promotion_is_recorded_and_the_next_tick_retries_it(shop: Shop) -> None:
    from squals_action.lifecycle.engine import LifecycleError

    eng = experiment_engine(shop)
    real = eng.promoter

    @contextlib.contextmanager
    def broken(m: Manifest) -> Iterator[Lifecycle]:
        raise LifecycleError("prod is being rolled back by someone else")
        yield  # pragma: no cover

    started = eng.start(pr=8)
    assert started.url
    visit(started.url, 160)
    eng.promoter = broken
    (failed,) = eng.tick()
    assert not failed.ok and failed.status == "promotion-failed"
    assert "rolled back by someone else" in failed.message
    islands = started.experiment.extra["island_names"]
    assert set(islands.values()) <= {h.env for h in LocalProvider(shop.path).list()}
    eng.promoter = real
    (retried,) = eng.tick()
    assert retried.ok and retried.promoted == "green", retried.message
    shop.kept.add(islands["green"])  # the winner's own island is prod now
    assert {h.env for h in LocalProvider(shop.path).list()} == {islands["green"]}
    doc = eng.store.read().experiment(started.experiment.id)
    assert doc is not None and doc.status == "decided" and doc.decision is not None
    assert doc.decision["outcome"] == "promoted"
    events = state_log(shop.origin)
    assert events.count("experiment-tick") == 1  # the retry did not decide again
    assert "experiment-promotion-failed" in events and events[-1] == "experiment-promoted"
    eng.store.close()


def test_a_start_in_progress_elsewhere_is_refused_and_an_orphan_is_stopped_by_name(shop: Shop) -> None:
    from squals_action.state import ExperimentState, Transition, utc_now

    eng = experiment_engine(shop)
    now = utc_now()
    orphan = ExperimentState(
        id="orphan",
        spec_digest="sha256:x",
        variants=("control", "green"),
        status="starting",
        started_at=now,
        updated_at=now,
        extra={"claimed_by": "run 99/1 (abcd)"},
    )
    eng.store.put_experiment(orphan, Transition("experiment-start", "a start that died"))
    with pytest.raises(ExperimentError, match="being started by run 99/1"):
        eng.start(experiment_id="orphan")
    provider = LocalProvider(shop.path)
    # a document claimed before island_names were recorded: its islands are found as exp-<variant>
    provider.provision(legacy_island_name("control"), shop.commit, eng.manifest)
    stopped = eng.stop("orphan")
    assert stopped.status == "stopped"
    assert provider.list() == ()
    eng.store.close()


def test_an_end_left_unfinished_by_a_dead_run_is_finished_by_the_next_tick(shop: Shop) -> None:
    from dataclasses import replace

    from squals_action.state import Transition

    eng = experiment_engine(shop)
    started = eng.start()
    doc = started.experiment
    dying = replace(
        doc, status="ending", decision={"status": "guardrail-stop", "reasons": ["green breached"]}
    )
    eng.store.put_experiment(dying, Transition("experiment-tick", "a tick that died before cleaning up"))
    (finished,) = eng.tick()
    assert finished.ok and finished.status == "decided", finished.message
    after = eng.store.read().experiment(doc.id)
    assert after is not None and after.decision is not None
    assert after.decision["outcome"] == "guardrail-stop" and after.decision["reasons"] == ["green breached"]
    assert LocalProvider(shop.path).list() == ()
    assert dealer_status(eng.dealer_dir(doc.id)).state == "stopped"
    eng.store.close()


def test_a_sample_ratio_mismatch_halts_the_experiment_with_the_counts(tmp_path: Path) -> None:
    """The Dealer's weights drift from the declared 50/50 (as a broken redirect would): the tick halts."""
    from squals_action.dealer import connect_dealer

    shop = make_shop(tmp_path, activations=100_000)
    try:
        eng = experiment_engine(shop)
        started = eng.start()
        assert started.url
        client = connect_dealer(shop.path / ".squals" / "experiments" / started.experiment.id / "dealer")
        client.set_weights({"control": 85, "green": 15})
        client.close()
        visit(started.url, 300)
        (result,) = eng.tick()
        assert result.decision is not None and result.decision.status == "halted-srm", result.message
        assert "sample-ratio mismatch: units control " in result.message
        assert "against the declared split 50/50" in result.message
        assert result.status == "decided" and result.promoted is None
        doc = eng.store.read().experiment(started.experiment.id)
        assert doc is not None and doc.decision is not None and doc.decision["outcome"] == "halted-srm"
        assert LocalProvider(shop.path).list() == ()  # islands stopped, nothing promoted
        assert state_log(shop.origin)[-2:] == ["experiment-tick", "experiment-halted-srm"]
        eng.store.close()
    finally:
        leftovers, dealers = stop_everything(shop.path)
    assert leftovers == [] and dealers == []


def test_revenue_per_visitor_through_the_real_dealer_is_decided_on_welchs_test(tmp_path: Path) -> None:
    """A mean objective: the app reports revenue with a value; the Dealer sums it per unit (n, sum, sum of
    squares over units) and the fixed design's Welch test on those statistics promotes the richer variant."""
    from scipy.stats import ttest_ind_from_stats

    shop = make_shop(tmp_path, control_every=4, green_every=2, activations=300, method="fixed")
    squals, green = shop.path / "squals.yml", shop.path / "variants" / "green.yml"
    squals.write_text(
        squals.read_text()
        .replace(
            'objective: {maximize: conversion, numerator: "event:checkout", denominator: visitors}',
            'objective: {maximize: revenue_per_visitor, kind: mean, numerator: "event:revenue"}\n'
            "  events: {revenue: {count: all, cap: 3}}",
        )
        .replace('CONVERT_EVERY: "4"}', 'CONVERT_EVERY: "4", EVENT: "revenue=20"}')
    )
    green.write_text(
        green.read_text().replace('CONVERT_EVERY: "2"', 'CONVERT_EVERY: "2", EVENT: "revenue=30"')
    )
    git(shop.path, "commit", "-qam", "revenue per visitor")
    git(shop.path, "push", "-q", "origin", "main")
    try:
        eng = experiment_engine(shop)
        started = eng.start()
        assert started.url
        config = json.loads((eng.dealer_dir(started.experiment.id) / "config.json").read_text())
        assert config["events"] == {"revenue": {"count": "all", "cap": 3}}  # the squals file's caps
        visit(started.url, 400)
        (result,) = eng.tick()
        decision = result.decision
        assert decision is not None and decision.kind == "mean", result.message
        doc = eng.store.read().experiment(started.experiment.id)
        assert doc is not None
        stats = {v: doc.extra["stats"][v]["revenue_per_visitor"] for v in ("control", "green")}
        for variant, value in (("control", 20.0), ("green", 30.0)):
            s = stats[variant]  # each paying unit paid once: its value, squared
            assert s["kind"] == "mean" and s["sum_squares"] == value * s["total"]
            assert 0 < s["total"] < value * s["n"]
        moments = {
            v: (
                s["total"] / s["n"],
                ((s["sum_squares"] - s["total"] ** 2 / s["n"]) / (s["n"] - 1)) ** 0.5,
                s["n"],
            )
            for v, s in stats.items()
        }
        welch = ttest_ind_from_stats(*moments["green"], *moments["control"], equal_var=False)
        assert decision.p_values["green"] == pytest.approx(welch.pvalue, rel=1e-9)
        assert decision.status == "winner" and decision.winner == "green" and result.promoted == "green"
        shop.kept.add(started.experiment.extra["island_names"]["green"])
        eng.store.close()
    finally:
        stop_everything(shop.path)


def test_an_end_that_could_not_stop_an_island_is_not_recorded_and_the_next_tick_finishes_it(
    shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tick that decides no winner but cannot destroy an island says so and keeps the experiment
    ``ending`` (not "islands stopped", not ``decided``): the next tick tries again and records the end."""
    from dataclasses import replace

    from squals_action.providers.interface import ProviderError
    from squals_action.state import Transition

    eng = experiment_engine(shop)
    doc = eng.start().experiment
    ending = replace(doc, status="ending", decision={"status": "no-difference", "reasons": ["no effect"]})
    eng.store.put_experiment(ending, Transition("experiment-tick", "a tick that decided no winner"))
    destroy = LocalProvider.destroy
    green = doc.extra["island_names"]["green"]

    def refuse_green(self: LocalProvider, handle: object) -> object:
        if getattr(handle, "env", None) == green:
            raise ProviderError(f"{green}: the process did not stop")
        return destroy(self, handle)  # type: ignore[arg-type]

    monkeypatch.setattr(LocalProvider, "destroy", refuse_green)
    (kept,) = eng.tick()
    assert not kept.ok and kept.status == "ending", kept.message
    assert f"{green} ({green}: the process did not stop)" in kept.message
    assert "islands stopped" not in kept.message
    after = eng.store.read().experiment(doc.id)
    assert after is not None and after.status == "ending"
    assert [h.env for h in LocalProvider(shop.path).list()] == [green]

    monkeypatch.setattr(LocalProvider, "destroy", destroy)
    (finished,) = eng.tick()
    assert finished.ok and finished.status == "decided", finished.message
    assert LocalProvider(shop.path).list() == ()
    eng.store.close()
