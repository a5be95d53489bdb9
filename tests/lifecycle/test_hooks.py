"""For each hook stage (and the exit tests), a failing command leaves prod serving, the state consistent and
a clear message; passing hooks get the environment's names and URLs as ``SQUALS_*`` variables."""

from __future__ import annotations

import pytest
from lcfix import Project, cmd, get, lifecycle, manifest

from squals_action.lifecycle import machine
from squals_action.lifecycle.engine import Lifecycle
from squals_action.lifecycle.machine import Status
from squals_action.manifest import model

RECORD = 'mkdir -p .squals/vars && env | grep ^SQUALS_ | sort > ".squals/vars/$SQUALS_STAGE-$SQUALS_ENV"'
FAIL = 'echo "cannot reach the database" >&2; exit 3'
STAGES = ("before_preprod", "after_preprod", "exit", "promote", "after_postprod")


def _manifest(failing: str) -> model.Manifest:
    def hooks_for(stage: str) -> tuple[model.Command, ...]:
        ok = cmd(f"record-{stage}", RECORD)
        return (ok, cmd("migrate", FAIL)) if stage == failing else (ok,)

    hooks = model.Hooks(**{s: hooks_for(s) for s in model.HOOK_STAGES})
    exit_tests = (cmd("e2e", FAIL),) if failing == "exit" else (cmd("e2e", 'curl -fsS "$SQUALS_URL/"'),)
    return manifest(hooks=hooks, exit_tests=exit_tests)


def _serving(url: str | None) -> set[str]:
    assert url
    answers = [get(url) for _ in range(12)]
    assert all(status == 200 for status, _ in answers)
    return {body for _, body in answers}


def _sound(lc: Lifecycle) -> dict[str, machine.Env]:
    fleet = lc.fleet()
    assert machine.invariants(fleet) == []
    assert lc.store.read().locks() == {}, "a lock was left behind"
    return fleet


@pytest.mark.parametrize("failing", STAGES)
def test_a_failing_hook_keeps_prod_serving(project: Project, failing: str) -> None:
    lc = lifecycle(project, _manifest(failing="none"))
    assert lc.deploy(1, project.commits["v1"]).ok
    first = lc.promote(1)
    assert first.ok, first.message

    lc.manifest = _manifest(failing)
    out = lc.deploy(2, project.commits["v2"])
    if failing in ("before_preprod", "after_preprod", "exit"):
        assert not out.ok
        fleet = _sound(lc)
        assert _serving(first.public_url) == {"v1"}
        if failing == "before_preprod":
            assert out.message.startswith("before_preprod hook migrate failed: exit 3")
            assert "cannot reach the database" in out.message and "nothing was provisioned" in out.message
            assert fleet["pr-2"].status is Status.ABORTED
            assert lc.provider.get("pr-2") is None
        else:
            what = "exit test e2e" if failing == "exit" else "after_preprod hook migrate"
            assert out.message.startswith(f"{what} failed: exit 3") and "kept for inspection" in out.message
            assert fleet["pr-2"].status is Status.FAILED and fleet["pr-2"].reason
            assert get(fleet["pr-2"].url or "") == (200, "v2")  # kept, still answering
        assert fleet["pr-1"].status is Status.PROD and fleet["pr-1"].share == 100.0
        lc.teardown(2)
        lc.down()
        return

    assert out.ok, out.message
    out = lc.promote(2)
    assert not out.ok
    fleet = _sound(lc)
    if failing == "promote":
        assert out.message.startswith("promote hook migrate failed: exit 3")
        assert "GREEN has its full share back" in out.message
        assert (fleet["pr-1"].status, fleet["pr-1"].share) == (Status.PROD, 100.0)
        assert (fleet["pr-2"].status, fleet["pr-2"].share) == (Status.READY, 0.0)
        assert _serving(out.public_url) == {"v1"}
    else:
        assert out.message.startswith("after_postprod hook migrate failed: exit 3")
        assert "stays prod" in out.message
        assert (fleet["pr-2"].status, fleet["pr-2"].share) == (Status.PROD, 100.0)
        assert fleet["pr-1"].status is Status.POSTPROD
        assert _serving(out.public_url) == {"v2"}
        variables = (project.path / ".squals/vars/after_postprod-pr-2").read_text()
        assert "SQUALS_POSTPROD_ENV=pr-1" in variables and "SQUALS_PROD_ENV=pr-2" in variables
    lc.down()


def test_hooks_get_the_environment_as_variables(project: Project) -> None:
    lc = lifecycle(project, _manifest(failing="none"))
    assert lc.deploy(4, project.commits["v1"]).ok
    island = lc.fleet()["pr-4"]
    before = (project.path / ".squals/vars/before_preprod-pr-4").read_text()
    after = (project.path / ".squals/vars/after_preprod-pr-4").read_text()
    assert "SQUALS_ENV=pr-4" in before and "SQUALS_PR=4" in before and "SQUALS_PROJECT=shop" in before
    assert f"SQUALS_COMMIT={project.commits['v1']}" in before
    assert f"SQUALS_URL={island.url}" in after
    lc.down()
