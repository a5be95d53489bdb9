"""The action's core: a push that merged PR #12 starts the experiment; a scheduled run promotes the winner."""

from __future__ import annotations

from pathlib import Path

import pytest

from squals_action.github.events import Intent, IntentKind
from squals_action.github.interface import Request
from squals_action.github.pipeline import Pipeline, _merged_pr
from squals_action.github.runner import Settings
from tests.support.experiments import Shop, git, make_shop, stop_everything, visit
from tests.support.lifecycle import Load


def request(shop: Shop, kind: IntentKind, event: str, sha: str | None) -> Request:
    intent = Intent(kind, event, reason=event, sha=sha, actor="octocat", default_branch="main")
    return Request(intent=intent, workspace=shop.path, head_sha=sha)


@pytest.mark.slow
def test_push_starts_and_schedule_promotes(shop: Shop) -> None:
    """With a prod already live, the winner goes through the bake and the old prod becomes postprod."""
    from squals_action.manifest import load

    with Pipeline(Settings(workspace=shop.path), {})._lifecycle(  # an earlier release is prod
        request(shop, IntentKind.PROMOTE, "pull_request", shop.commit), load(shop.path / "squals.yml")
    ) as lifecycle:
        assert lifecycle.deploy(3, shop.commit).ok
        first = lifecycle.promote(3)
        assert first.ok and first.public_url
    git(shop.path, "commit", "-q", "--allow-empty", "-m", "Merge pull request #12 from octo/green-button")
    sha = git(shop.path, "rev-parse", "HEAD")
    environ = {"GITHUB_RUN_ID": "4242", "GITHUB_RUN_ATTEMPT": "1"}
    core = Pipeline(Settings(workspace=shop.path), environ)

    started = core.experiment_start(request(shop, IntentKind.EXPERIMENT_START, "push", sha))
    assert started.status == "success", started.headline
    assert started.url and started.experiment and "running" in started.experiment
    again = core.experiment_start(request(shop, IntentKind.EXPERIMENT_START, "push", sha))
    assert again.status == "success" and "already running" in again.headline

    visit(started.url, 200)
    tick_env = {"GITHUB_RUN_ID": "4243", "GITHUB_RUN_ATTEMPT": "1"}
    with Load(lambda: first.public_url):  # the winner's bake needs visitors: no data is not a pass
        ticked = Pipeline(Settings(workspace=shop.path), tick_env).experiment_tick(
            request(shop, IntentKind.EXPERIMENT_TICK, "schedule", None)
        )
    assert ticked.status == "success", ticked.headline
    assert "green won and is prod (pr-12)" in ticked.headline
    assert ticked.environment == "prod" and ticked.outputs["winner"] == "green"
    titles = [title for title, _ in ticked.sections]
    assert titles[0].startswith("Experiment shop-") and titles[1].startswith("Promotion of the winner")
    assert "🏆 winner" in ticked.sections[0][1]
    assert "is postprod" in ticked.sections[1][1]

    from squals_action.state import open_store

    with open_store(shop.path) as store:
        envs = store.read().environments()
    shop.kept.add(envs["pr-12"].handle["env"])  # the winner's own island is prod now
    assert envs["pr-12"].status == "prod" and envs["pr-3"].status == "postprod"
    assert visit(ticked.url or "", 4) == {"green": 4}

    idle = Pipeline(Settings(workspace=shop.path), {"GITHUB_RUN_ID": "4244"}).experiment_tick(
        request(shop, IntentKind.EXPERIMENT_TICK, "schedule", None)
    )
    assert idle.status == "skipped" and idle.headline == "no running experiment"


def test_merged_pr_from_the_commit_subject(shop: Shop) -> None:
    assert _merged_pr(shop.path, shop.commit) is None
    git(shop.path, "commit", "-q", "--allow-empty", "-m", "Green button (#31)")
    assert _merged_pr(shop.path, "HEAD") == 31
    assert _merged_pr(shop.path, "no-such-ref") is None


def test_a_push_whose_variant_is_not_ready_fails_in_one_line_with_nothing_running(tmp_path: Path) -> None:
    """The action starts through the same step as the CLI: green's after_preprod hook fails on its island."""
    from squals_action.providers import LocalProvider
    from squals_action.state import open_store

    shop = make_shop(
        tmp_path,
        green_extra="hooks:\n  after_preprod: [{name: migrate, run: ../scripts/migrate.sh}]\n",
        scripts={"migrate.sh": "#!/bin/sh\necho 'no database' >&2\nexit 5\n"},
    )
    try:
        core = Pipeline(Settings(workspace=shop.path), {"GITHUB_RUN_ID": "4301", "GITHUB_RUN_ATTEMPT": "1"})
        report = core.experiment_start(request(shop, IntentKind.EXPERIMENT_START, "push", shop.commit))
        assert report.status == "failure"
        assert "\n" not in report.headline
        assert report.headline.startswith(
            f"experiment-start: experiment shop-{shop.commit[:12]}: start failed: variant green: "
            f"variants/green.yml:10:19 in commit {shop.commit[:12]}: after_preprod hook migrate failed: "
            "exit 5; log "
        ), report.headline
        assert report.headline.endswith("no traffic was routed and its islands were stopped")
        assert LocalProvider(shop.path).list() == ()
        with open_store(shop.path) as store:
            assert [e.status for e in store.read().experiments().values()] == ["failed"]
    finally:
        leftovers, dealers = stop_everything(shop.path)
    assert leftovers == [] and dealers == []
