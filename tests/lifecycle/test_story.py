"""The whole story on real processes: deploy, first prod, blue/green, rollback, teardown, down."""

from __future__ import annotations

import pytest

from squals_action.lifecycle import machine
from squals_action.lifecycle.machine import Status
from tests.support.lifecycle import Load, Project, Recorder, cmd, get, lifecycle, manifest


@pytest.mark.slow
def test_deploy_promote_rollback_teardown_down(project: Project) -> None:
    m = manifest(exit_tests=(cmd("smoke", 'curl -fsS "$SQUALS_URL/" | grep -q "^v"'),))
    lc = lifecycle(project, m)
    out = lc.deploy(1, project.commits["v1"])
    assert out.ok, out.message
    assert out.fleet["pr-1"].status is Status.READY
    assert get(out.fleet["pr-1"].url or "")[1] == "v1"

    out = lc.promote(1)
    assert out.ok, out.message
    assert out.fleet["pr-1"].status is Status.PROD and out.public_url
    assert get(out.public_url) == (200, "v1")

    assert lc.deploy(2, project.commits["v2"]).ok
    with Load(lambda: out.public_url):  # BLUE must serve during its bake: no data is not a pass
        out = lc.promote(2)
    assert out.ok, out.message
    assert (out.fleet["pr-1"].status, out.fleet["pr-2"].status) == (Status.POSTPROD, Status.PROD)
    assert machine.weights(out.fleet) == {"pr-1": 0.0, "pr-2": 100.0}
    assert {get(out.public_url or "")[1] for _ in range(10)} == {"v2"}

    out = lc.rollback()
    assert out.ok, out.message
    assert (out.fleet["pr-1"].status, out.fleet["pr-2"].status) == (Status.PROD, Status.POSTPROD)
    assert {get(out.public_url or "")[1] for _ in range(10)} == {"v1"}

    # The PR of prod closes: its environment is kept; the island of a plain PR goes.
    assert "kept" in lc.teardown(1).message
    assert lc.deploy(3, project.commits["v3"]).ok
    out = lc.teardown(3)
    assert out.fleet["pr-3"].status is Status.RETIRED

    history = [h.event for h in lc.store.history()]
    assert history.count("rollback") == 1 and history.count("complete") == 2

    out = lc.down()
    assert all(e.status is Status.RETIRED for e in out.fleet.values())
    assert isinstance(lc.progress, Recorder)


def test_a_deploy_that_died_half_way_is_started_over(project: Project) -> None:
    lc = lifecycle(project, manifest())
    # What a deploy killed while the provider was starting the app leaves behind.
    lc._record(machine.Event.DEPLOY, "pr-6", "deploy", pr=6, commit=project.commits["v1"])
    lc._record(machine.Event.HOOKS_OK, "pr-6", "hooks ok", step="before_preprod")
    assert lc.fleet()["pr-6"].status is Status.PROVISIONING
    out = lc.deploy(6, project.commits["v2"])
    assert out.ok, out.message
    assert get(out.fleet["pr-6"].url or "") == (200, "v2")
    lc.down()
