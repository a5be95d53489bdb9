"""Progressive steps and honest bakes on real processes: the real Dealer, the local provider, a git state
branch. Steps 10/25/50 are three route calls then 100 %; a bake in which BLUE served nothing, or a KPI
without data, ends inconclusive with GREEN at 100 % and BLUE ready; ``on_no_data: promote`` passes and says
so."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import pytest

from squals_action.dealer import connect_dealer
from squals_action.lifecycle import machine
from squals_action.lifecycle.engine import Lifecycle
from squals_action.lifecycle.machine import Event, Status
from squals_action.lifecycle.traffic import DealerTraffic
from squals_action.manifest import model
from squals_action.report.lifecycle import markdown
from tests.support.lifecycle import Load, Project, Recorder, lifecycle, manifest


class RecordingTraffic:
    """The real Dealer, with every route call's weights and the weights the Dealer then reports."""

    def __init__(self, inner: DealerTraffic) -> None:
        self.inner = inner
        self.routes: list[dict[str, float]] = []
        self.read_back: list[dict[str, float]] = []

    def __getattr__(self, name: str) -> Any:  # url, drain, tallies, stop...: the real Dealer's own
        return getattr(self.inner, name)

    def route(self, upstreams: Mapping[str, str], weights: Mapping[str, float]) -> str:
        self.routes.append(dict(weights))
        url = self.inner.route(upstreams, weights)
        client = connect_dealer(self.inner.state_dir)
        try:
            self.read_back.append({k: float(v) for k, v in client.weights().items()})
        finally:
            client.close()
        return url


def _with_prod(project: Project, rollout: model.Rollout) -> Lifecycle:
    lc = lifecycle(project, manifest(rollout=rollout), Recorder())
    assert lc.deploy(1, project.commits["v1"]).ok
    assert lc.promote(1).ok  # the first prod: nothing to bake against
    assert lc.deploy(2, project.commits["v2"]).ok
    return lc


@pytest.mark.slow
def test_steps_are_one_route_call_each_then_100(project: Project) -> None:
    steps = (model.RolloutStep(10.0), model.RolloutStep(25.0, 0.8), model.RolloutStep(50.0))
    rollout = model.Rollout(
        bake=1.0, check_interval=0.1, steps=steps, kpis=(model.Kpi("error_rate", max=5.0),)
    )
    lc = _with_prod(project, rollout)
    recording = RecordingTraffic(lc.traffic)  # type: ignore[arg-type]
    lc.traffic = recording
    with Load(lambda: recording.url()) as load:
        out = lc.promote(2)
    assert out.ok, out.message
    expected = [
        {"pr-1": 90.0, "pr-2": 10.0},
        {"pr-1": 75.0, "pr-2": 25.0},
        {"pr-1": 50.0, "pr-2": 50.0},
        {"pr-1": 0.0, "pr-2": 100.0},
    ]
    assert recording.routes == expected
    assert recording.read_back == expected  # what the Dealer itself says after each call
    assert load.failures() == []
    events = [(h.event, h.summary) for h in lc.store.history()][::-1]
    blue_at = [s for e, s in events if e in ("promote-start", "step")]
    assert blue_at[-3:] == [
        "promote pr-2: BLUE at 10 %",
        "promote pr-2: BLUE at 25 %",
        "promote pr-2: BLUE at 50 %",
    ]
    kpis = [c for c in out.checks if c.kind == "kpi"]
    assert [c.detail.split(":")[0] for c in kpis] == ["at 10 %", "at 25 %", "at 50 %"]
    assert all(c.ok and not c.no_data for c in kpis)
    assert lc.fleet()["pr-2"].status is Status.PROD
    lc.down()


@pytest.mark.slow
def test_a_bake_without_requests_is_inconclusive_then_may_pass_where_the_file_allows(
    project: Project,
) -> None:
    rollout = model.Rollout(
        blue_share=50.0, bake=0.5, check_interval=0.1, kpis=(model.Kpi("error_rate", max=1.0),)
    )
    lc = _with_prod(project, rollout)
    out = lc.promote(2)  # nobody sends a request: BLUE proves nothing
    assert not out.ok
    assert out.message.startswith(
        "inconclusive: BLUE pr-2 served 0 requests during the bake (at least 1 expected)"
    )
    assert "error_rate: no data" in out.message and "pr-2 stays ready to promote again" in out.message
    fleet = lc.fleet()
    assert machine.weights(fleet) == {"pr-1": 100.0}
    assert (fleet["pr-2"].status, fleet["pr-2"].last_event) == (Status.READY, Event.BAKE_INCONCLUSIVE)
    assert fleet["pr-2"].reason and fleet["pr-2"].reason.startswith("inconclusive:")
    assert lc.store.read().locks() == {}
    text = markdown(out)
    assert text.startswith("### ⚪ Promotion of <code>pr-2</code>: inconclusive\n")
    assert (
        "| ⚪ no data | <code>error_rate</code> |" in text
        and "| ⚪ no data | <code>requests</code> |" in text
    )
    assert "✅ | <code>error_rate</code>" not in text

    lc.manifest = manifest(rollout=dataclasses.replace(rollout, on_no_data="promote"))
    out = lc.promote(2)  # the same BLUE, promotable again; the file now lets a bake without data pass
    assert out.ok, out.message
    assert "no data (promoted as the squals file allows)" in out.message
    waived = [c for c in out.checks if c.no_data]
    assert {c.name for c in waived} == {"error_rate", "requests"} and all(c.ok for c in waived)
    assert all(c.detail.startswith("no data (promoted as the squals file allows): ") for c in waived)
    assert "✅ | <code>error_rate</code>" not in markdown(out)
    assert lc.fleet()["pr-2"].status is Status.PROD
    lc.down()


def test_a_kpi_without_data_is_inconclusive_even_with_traffic(project: Project) -> None:
    kpis = (model.Kpi("error_rate", max=5.0), model.Kpi("event:checkout", min=0))
    rollout = model.Rollout(blue_share=50.0, bake=0.6, check_interval=0.15, kpis=kpis)
    lc = _with_prod(project, rollout)
    with Load(lambda: lc.traffic.url()):
        out = lc.promote(2)
    assert not out.ok
    assert out.message.startswith("inconclusive: event:checkout: no data"), out.message
    assert "requests" not in out.message  # BLUE did serve: only the KPI lacks data
    fleet = lc.fleet()
    assert machine.weights(fleet) == {"pr-1": 100.0} and fleet["pr-2"].status is Status.READY
    checks = {c.name: c for c in out.checks if c.kind == "kpi"}
    assert checks["error_rate"].ok and not checks["error_rate"].no_data
    assert checks["event:checkout"].no_data and not checks["event:checkout"].ok
    lc.down()
