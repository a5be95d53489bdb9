"""The bake on real processes: killing BLUE returns all traffic to GREEN at the next check; promotion and
rollback under steady load lose no request."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from squals_action.lifecycle import machine
from squals_action.lifecycle.machine import Status
from squals_action.manifest import model
from tests.support.lifecycle import Load, Project, Recorder, get, lifecycle, manifest


def _wait_for(predicate, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, "condition not reached"
        time.sleep(0.05)


def test_killing_blue_during_the_bake_returns_traffic_to_green(project: Project) -> None:
    interval = 0.5
    rollout = model.Rollout(
        blue_share=50.0, bake=120.0, check_interval=interval, kpis=(model.Kpi("error_rate", max=5.0),)
    )
    progress = Recorder()
    lc = lifecycle(project, manifest(rollout=rollout), progress)
    assert lc.deploy(1, project.commits["v1"]).ok
    assert lc.promote(1).ok
    assert lc.deploy(2, project.commits["v2"]).ok
    blue_pid = int(lc.fleet()["pr-2"].handle["data"]["process"]["pid"])  # type: ignore[index]

    killed: list[float] = []

    def kill_when_baking() -> None:
        _wait_for(lambda: len(progress.ticks) >= 2)  # BLUE has been checked healthy twice
        killed.append(time.monotonic())
        os.killpg(blue_pid, signal.SIGKILL)

    killer = threading.Thread(target=kill_when_baking)
    killer.start()
    out = lc.promote(2)
    killer.join()
    switched = progress.when("all traffic back to GREEN")

    assert not out.ok
    assert "BLUE pr-2 is not healthy" in out.message and "all traffic is back on GREEN pr-1" in out.message
    # Not one check passed after the kill: the first check that came after it saw BLUE down.
    assert [t for at, t in progress.ticks if at > killed[0]] == []
    fleet = lc.fleet()
    assert machine.invariants(fleet) == []
    assert (fleet["pr-1"].share, fleet["pr-2"].status, fleet["pr-2"].share) == (100.0, Status.FAILED, 0.0)
    assert {get(out.public_url or "")[1] for _ in range(10)} == {"v1"}
    print(f"kill -> switch back to GREEN: {switched - killed[0]:.2f} s (check interval {interval} s)")
    lc.down()


@pytest.mark.slow
def test_promotion_and_rollback_under_steady_load_lose_nothing(project: Project) -> None:
    kpis = (model.Kpi("error_rate", max=1.0),)
    rollout = model.Rollout(blue_share=30.0, bake=1.0, check_interval=0.25, kpis=kpis)
    lc = lifecycle(project, manifest(rollout=rollout))
    assert lc.deploy(1, project.commits["v1"]).ok
    assert lc.promote(1).ok
    assert lc.deploy(2, project.commits["v2"]).ok
    assert lc.deploy(3, project.commits["v3"]).ok
    url = lc.traffic.url()
    with Load(lambda: url) as load:
        time.sleep(0.3)
        steps = [lc.promote(2), lc.rollback(), lc.promote(3)]  # the last one retires pr-1 under load
        time.sleep(0.3)
    assert all(s.ok for s in steps), [s.message for s in steps]
    assert len(load.results) > 100
    assert load.failures() == []
    fleet = lc.fleet()
    assert (fleet["pr-3"].status, fleet["pr-2"].status, fleet["pr-1"].status) == (
        Status.PROD,
        Status.RETIRED,
        Status.POSTPROD,
    )
    print(f"{len(load.results)} requests during promote, rollback, promote: 0 failed")
    lc.down()
