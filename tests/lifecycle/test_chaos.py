"""Chaos tests of a promotion on the local provider: real islands, the real Dealer, steady load through it.

Each kind gives its declared outcome: latency and abort on all of BLUE's requests breach the KPIs and send
all traffic back to GREEN (then BLUE gets its share back and the promotion goes on), a small abort share is
survived, a SIGKILLed BLUE goes back to GREEN without one failed request (the Dealer retries on GREEN) and is
started again; an outcome other than the declared one fails the promotion like a breach.
"""

from __future__ import annotations

import re
import time

import pytest

from squals_action.lifecycle import machine
from squals_action.lifecycle.engine import Lifecycle
from squals_action.lifecycle.machine import Status
from squals_action.manifest import model
from tests.support.lifecycle import Load, Project, Recorder, get, lifecycle, manifest


def _chaos(*tests: model.Chaos, kpis: tuple[model.Kpi, ...]) -> model.Manifest:
    rollout = model.Rollout(blue_share=50.0, bake=1.0, check_interval=0.2, kpis=kpis, chaos=tests)
    return manifest(rollout=rollout)


def _ready(project: Project, m: model.Manifest) -> Lifecycle:
    """pr-1 is prod, pr-2 is deployed and ready."""
    lc = lifecycle(project, m, Recorder())
    assert lc.deploy(1, project.commits["v1"]).ok
    assert lc.promote(1).ok
    assert lc.deploy(2, project.commits["v2"]).ok
    return lc


def _events(lc: Lifecycle) -> list[tuple[str, str]]:
    """pr-2's transitions on the state branch, oldest first, as (event, summary)."""
    return [(h.event, h.summary) for h in reversed(lc.store.history("pr-2"))]


@pytest.mark.slow
def test_latency_and_abort_go_back_to_green_a_small_abort_share_survives(project: Project) -> None:
    tests = (
        model.Chaos(name="slow", kind="latency", expect="back-to-green", delay=1.0, duration=4.0),
        model.Chaos(name="503s", kind="abort", expect="back-to-green", duration=4.0),
        model.Chaos(name="few-503s", kind="abort", expect="survive", share=2.0, duration=1.5),
    )
    # p95 bound well above what a busy shared machine adds, well below the injected second
    kpis = (model.Kpi("error_rate", max=50.0), model.Kpi("p95_latency_ms", max=450.0))
    lc = _ready(project, _chaos(*tests, kpis=kpis))
    with Load(lambda: lc.traffic.url(), threads=3) as load:
        out = lc.promote(2)
    assert out.ok, out.message
    assert out.message.startswith(
        "pr-2 is prod; pr-1 is postprod at 0 %; chaos tests passed: slow, 503s, few-503s"
    )
    drills = {c.name: c for c in out.checks if c.kind == "chaos"}
    assert all(c.ok for c in drills.values()), drills
    assert drills["slow"].detail.startswith(
        "chaos test slow passed: latency -> back-to-green as expected (KPI breach: p95_latency_ms "
    )
    assert "requests delayed by 1000 ms" in drills["slow"].detail
    # Every request the abort met was answered 503, and the watcher's window held only those answers: a
    # request BLUE still held (arrived, its abort not counted yet) or held from before the fault is not in it.
    aborted = re.fullmatch(
        r"chaos test 503s passed: abort -> back-to-green as expected "
        r"\(KPI breach: error_rate 100 > max 50; (\d+) of (\d+) requests answered 503\)",
        drills["503s"].detail,
    )
    assert aborted is not None and aborted[1] == aborted[2] != "0", drills["503s"].detail
    assert drills["few-503s"].detail.startswith("chaos test few-503s passed: abort -> survive as expected")
    # The bake after the drills judged BLUE on its own requests: the drill's delays did not weigh on it.
    p95 = next(k for k in out.kpis if k.metric == "p95_latency_ms")
    assert p95.ok and p95.value is not None and p95.value < 450
    # Only the aborts failed requests, and only while their drills ran.
    assert set(load.failures()) <= {503}
    assert len(load.results) > 100
    # One commit per passed drill, between BLUE's first share and the bake.
    events = _events(lc)
    assert [e for e, _ in events][-7:] == [
        "promote-start",
        "chaos",
        "chaos",
        "chaos",
        "bake-ok",
        "complete",
        "hooks-ok",  # after_postprod (none declared)
    ]
    chaos = [summary for e, summary in events if e == "chaos"]
    assert chaos[0].startswith("pr-2: chaos test slow passed") and chaos[0].endswith("; BLUE at 50 % again")
    assert not chaos[2].endswith("again")
    assert lc.fleet()["pr-2"].status is Status.PROD
    lc.down()


@pytest.mark.slow
def test_sigkill_of_blue_goes_back_to_green_without_a_failed_request_and_blue_is_started_again(
    project: Project,
) -> None:
    kill = model.Chaos(name="blue-dies", kind="kill", expect="back-to-green", after=0.5, duration=5.0)
    lc = _ready(project, _chaos(kill, kpis=(model.Kpi("error_rate", max=50.0),)))
    before = lc.fleet()["pr-2"]
    killed_pid = int(before.handle["data"]["process"]["pid"])  # type: ignore[index]
    with Load(lambda: lc.traffic.url(), threads=4, pause=0.002) as load:
        out = lc.promote(2)
        time.sleep(0.2)
    assert out.ok, out.message
    (drill,) = [c for c in out.checks if c.kind == "chaos"]
    assert drill.ok and drill.detail.startswith(
        "chaos test blue-dies passed: kill -> back-to-green as expected (BLUE pr-2 is not healthy: down:"
    )
    assert f"SIGKILL to process group {killed_pid} of pr-2" in drill.detail
    # Not one request failed: BLUE's refused connections went to GREEN until the switch.
    assert len(load.results) >= 200
    assert load.failures() == []
    after = lc.fleet()["pr-2"]
    assert after.status is Status.PROD and after.url == before.url  # started again on the same port
    assert int(after.handle["data"]["process"]["pid"]) != killed_pid  # type: ignore[index]
    assert {get(out.public_url or "")[1] for _ in range(5)} == {"v2"}
    lc.down()


@pytest.mark.slow
def test_an_outcome_other_than_the_declared_one_fails_the_promotion(project: Project) -> None:
    kill = model.Chaos(name="blue-dies", kind="kill", expect="survive", duration=3.0)
    lc = _ready(project, _chaos(kill, kpis=(model.Kpi("error_rate", max=50.0),)))
    lc.traffic.set_faults({"pr-2": {"abort": {"share": 1.0}}})  # as a drill cut short would leave it
    with Load(lambda: lc.traffic.url(), threads=2):
        out = lc.promote(2)
    assert lc.traffic.injected("pr-2") == {}  # cleared when the promotion began
    assert not out.ok
    assert out.message.startswith(
        "chaos test blue-dies failed: kill -> back-to-green, expected survive (BLUE pr-2 is not healthy"
    )
    assert out.message.endswith("all traffic is back on GREEN pr-1")
    fleet = lc.fleet()
    assert machine.invariants(fleet) == []
    assert (fleet["pr-1"].share, fleet["pr-2"].status, fleet["pr-2"].share) == (100.0, Status.FAILED, 0.0)
    assert lc.provider.health(lc.provider.get("pr-2")).ok  # type: ignore[arg-type]  # revived, kept for inspection
    assert _events(lc)[-1][0] == "bake-breach"
    lc.down()
