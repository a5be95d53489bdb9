"""For each hook stage (and the exit tests), a failing command leaves prod serving, the state consistent and
a clear message; passing hooks get the environment's names and URLs as ``SQUALS_*`` variables."""

from __future__ import annotations

from dataclasses import replace

import psutil
import pytest

from squals_action.lifecycle import machine
from squals_action.lifecycle.engine import PROD_LOCK, Lifecycle
from squals_action.lifecycle.machine import Event, Status
from squals_action.manifest import model
from tests.support.lifecycle import Project, cmd, get, lifecycle, manifest

RECORD = 'mkdir -p .squals/vars && env | grep ^SQUALS_ | sort > ".squals/vars/$SQUALS_STAGE-$SQUALS_ENV"'
FAIL = 'echo "cannot reach the database" >&2; exit 3'


def _manifest(failing: str) -> model.Manifest:
    def hooks_for(stage: str) -> tuple[model.Command, ...]:
        ok = cmd(f"record-{stage}", RECORD)
        return (ok, cmd("migrate", FAIL)) if stage == failing else (ok,)

    hooks = model.Hooks(**{s: hooks_for(s) for s in model.HOOK_STAGES})
    exit_tests = (cmd("e2e", FAIL),) if failing == "exit" else (cmd("e2e", 'curl -fsS "$SQUALS_URL/"'),)
    # These tests are about the hooks, not the bake: a bake without traffic may pass, as the file says.
    rollout = model.Rollout(blue_share=50.0, bake=0.6, check_interval=0.2, on_no_data="promote")
    return manifest(hooks=hooks, exit_tests=exit_tests, rollout=rollout)


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


def _first_prod(project: Project) -> tuple[Lifecycle, str]:
    lc = lifecycle(project, _manifest(failing="none"))
    assert lc.deploy(1, project.commits["v1"]).ok
    first = lc.promote(1)
    assert first.ok, first.message
    assert first.public_url
    return lc, first.public_url


@pytest.mark.slow
def test_failing_deploy_stages_keep_prod_serving(project: Project) -> None:
    lc, public = _first_prod(project)

    lc.manifest = _manifest("before_preprod")
    out = lc.deploy(2, project.commits["v2"])
    assert not out.ok
    assert out.message.startswith("before_preprod hook migrate failed: exit 3")
    assert "nothing was provisioned" in out.message
    (failed,) = [c for c in out.checks if not c.ok]  # its last lines go with the check, line by line
    assert "cannot reach the database" in failed.output.splitlines() and failed.output not in out.message
    fleet = _sound(lc)
    assert fleet["pr-2"].status is Status.ABORTED and lc.provider.get("pr-2") is None
    assert _serving(public) == {"v1"}

    cases = ((3, "after_preprod", "after_preprod hook migrate"), (4, "exit", "exit test e2e"))
    for pr, failing, what in cases:
        lc.manifest = _manifest(failing)
        out = lc.deploy(pr, project.commits["v2"])
        assert not out.ok
        assert out.message.startswith(f"{what} failed: exit 3") and "kept for inspection" in out.message
        fleet = _sound(lc)
        island = fleet[f"pr-{pr}"]
        assert island.status is Status.FAILED and island.reason and island.reason.startswith(what)
        assert get(island.url or "") == (200, "v2")  # kept, still answering
        assert (fleet["pr-1"].status, fleet["pr-1"].share) == (Status.PROD, 100.0)
        assert _serving(public) == {"v1"}
    for pr in (2, 3, 4):
        assert lc.teardown(pr).ok
    lc.down()


@pytest.mark.slow
def test_failing_promotion_stages_keep_prod_serving(project: Project) -> None:
    lc, public = _first_prod(project)
    assert lc.deploy(2, project.commits["v2"]).ok

    lc.manifest = _manifest("promote")
    out = lc.promote(2)
    assert not out.ok
    assert out.message.startswith("promote hook migrate failed: exit 3")
    assert "GREEN has its full share back" in out.message
    fleet = _sound(lc)
    assert (fleet["pr-1"].status, fleet["pr-1"].share) == (Status.PROD, 100.0)
    assert (fleet["pr-2"].status, fleet["pr-2"].share) == (Status.READY, 0.0)
    assert _serving(public) == {"v1"}

    lc.manifest = _manifest("after_postprod")
    out = lc.promote(2)  # the island stayed ready: it may be promoted again
    assert not out.ok
    assert out.message.startswith("after_postprod hook migrate failed: exit 3")
    assert "stays prod" in out.message
    fleet = _sound(lc)
    assert (fleet["pr-2"].status, fleet["pr-2"].share) == (Status.PROD, 100.0)
    assert fleet["pr-1"].status is Status.POSTPROD
    assert _serving(public) == {"v2"}
    variables = (project.path / ".squals/vars/after_postprod-pr-2").read_text()
    assert "SQUALS_POSTPROD_ENV=pr-1" in variables and "SQUALS_PROD_ENV=pr-2" in variables
    assert f"SQUALS_PUBLIC_URL={public}" in variables
    lc.down()


def test_a_promotion_left_by_a_dead_process_is_undone_by_rollback(project: Project) -> None:
    lc, public = _first_prod(project)
    assert lc.deploy(2, project.commits["v2"]).ok
    # What a promote killed with SIGKILL mid-bake leaves: the lock, BLUE at its share, the Dealer split.
    lc.store.acquire_lock(PROD_LOCK, pr=2, ttl=3600)
    lc._lock_pr[PROD_LOCK] = 2
    fleet = lc._record(Event.PROMOTE_START, "pr-2", "promote pr-2", blue_share=50.0)
    lc._route(fleet)
    assert _serving(public) <= {"v1", "v2"}

    later = lifecycle(project, _manifest(failing="none"))  # a new process
    out = later.rollback()
    assert out.ok and "the promotion of pr-2 was aborted" in out.message
    fleet = _sound(later)
    assert (fleet["pr-1"].share, fleet["pr-2"].status, fleet["pr-2"].share) == (100.0, Status.READY, 0.0)
    assert _serving(public) == {"v1"}
    later.down()


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


SECRETS = {
    "INPUT_GITHUB-TOKEN": "ghs_input",
    "GITHUB_TOKEN": "ghs_env",
    "ACTIONS_RUNTIME_TOKEN": "runtime",
    "ACTIONS_ID_TOKEN_REQUEST_TOKEN": "oidc",
    "AWS_SECRET_ACCESS_KEY": "aws-secret",
    "AWS_SESSION_TOKEN": "aws-session",
}


def test_squals_own_secrets_never_reach_the_commands_of_the_file(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Hooks, exit tests and the island run the PR's code: the action's token and AWS keys stay out of their
    environment, unless the squals file names one in ``env_passthrough``."""
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    dump = 'env > ".squals/vars/all-$SQUALS_STAGE"'
    hooks = model.Hooks(before_preprod=(cmd("dump", dump),))
    file = manifest(hooks=hooks, exit_tests=(cmd("e2e", dump),))
    file = replace(file, env_passthrough=("AWS_SESSION_TOKEN",))
    (project.path / ".squals/vars").mkdir(parents=True, exist_ok=True)
    lc = lifecycle(project, file)
    try:
        assert lc.deploy(5, project.commits["v1"]).ok
        pid = int(lc.fleet()["pr-5"].handle["data"]["process"]["pid"])  # type: ignore[index]
        seen = {
            "before_preprod": (project.path / ".squals/vars/all-before_preprod").read_text(),
            "exit": (project.path / ".squals/vars/all-exit").read_text(),
            "island": "\n".join(f"{k}={v}" for k, v in psutil.Process(pid).environ().items()),
        }
    finally:
        lc.down()
    for where, text in seen.items():
        for name, value in SECRETS.items():
            shown = f"{name}={value}" in text
            assert shown == (name == "AWS_SESSION_TOKEN"), (where, name)
        assert "SQUALS_ENV=pr-5" in text, where
