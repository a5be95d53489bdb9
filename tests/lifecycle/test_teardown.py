"""Closing a PR with nothing deployed writes nothing: no lock, no commit (a fork's token could not push)."""

from __future__ import annotations

from squals_action.lifecycle.machine import Status
from tests.support.lifecycle import Project, lifecycle, manifest


def test_closing_a_pr_with_nothing_deployed_writes_nothing(project: Project) -> None:
    lc = lifecycle(project, manifest())
    out = lc.teardown(9)
    assert out.ok and out.message == "pr-9: nothing to tear down"
    assert lc.store.history() == [] and lc.store.read().commit is None  # not even the pr-9 lock

    assert lc.deploy(3, project.commits["v2"]).ok
    assert lc.teardown(3).fleet["pr-3"].status is Status.RETIRED
    tip = lc.store.read().commit
    out = lc.teardown(3)  # closed again (a re-run): the island is already gone
    assert out.message == "pr-3: nothing to tear down"
    assert lc.store.read().commit == tip
