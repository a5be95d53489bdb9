"""Closing a PR with nothing deployed writes nothing: no lock, no commit (a fork's token could not push)."""

from __future__ import annotations

from squals_action.lifecycle.machine import Status
from squals_action.manifest import model
from tests.support.lifecycle import Project, Recorder, lifecycle, manifest


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


def test_prod_and_postprod_are_kept_without_a_commit_and_every_teardown_says_what_it_did(
    project: Project,
) -> None:
    """Issue 14, finding 4: their teardown took and released the PR's lock (two commits) and said nothing
    to the terminal; nor did the teardown of a PR with nothing deployed."""
    shown = Recorder()
    rollout = model.Rollout(blue_share=50.0, bake=0.3, check_interval=0.1, on_no_data="promote")
    lc = lifecycle(project, manifest(rollout=rollout), shown)
    try:
        assert lc.deploy(1, project.commits["v1"]).ok and lc.promote(1).ok
        assert lc.deploy(2, project.commits["v2"]).ok and lc.promote(2).ok  # pr-1 postprod, pr-2 prod
        tip = lc.store.read().commit
        lines = len(shown.lines)

        outcomes = [lc.teardown(pr) for pr in (2, 1, 9)]

        said = [line for _, line in shown.lines[lines:]]
        assert said == [f"ok {o.message}" for o in outcomes]
        assert said[0].startswith("ok kept: pr-2 is prod: cannot teardown (it is serving prod"), said
        assert said[1].startswith("ok kept: pr-1 is postprod: cannot teardown"), said
        assert said[2] == "ok pr-9: nothing to tear down"
        assert lc.store.read().commit == tip  # no lock, no release: nothing written
        assert (outcomes[0].fleet["pr-2"].status, outcomes[1].fleet["pr-1"].status) == (
            Status.PROD,
            Status.POSTPROD,
        )
    finally:
        lc.down()
