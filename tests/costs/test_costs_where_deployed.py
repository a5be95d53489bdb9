"""``squals costs`` measures each environment where it was deployed: with the provider section of the commit
its state document records, not of the working squals file (edited since); groups of environments that
measure alike are measured once, and a local provider is keyed by its state directory."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest

from squals_action.cli import main
from squals_action.cli.costs_commands import prod_first
from squals_action.costs import CostReport, cost_scope
from squals_action.costs import local as costs_local
from squals_action.costs.placed import Opener, measure_placed
from squals_action.github.events import Intent, IntentKind
from squals_action.github.interface import Request
from squals_action.github.pipeline import Pipeline
from squals_action.github.runner import Settings
from squals_action.lifecycle.machine import Env, Status
from squals_action.manifest import load
from squals_action.manifest.problems import ManifestError
from squals_action.providers import Provider, daemon
from squals_action.providers.aws import AwsProvider
from squals_action.providers.local import LocalProvider
from tests.experiments.test_aws import _shop
from tests.support.aws import REGION, Cloud, MotoCalls, cost_explorer_answers, cost_group
from tests.support.cloudwatch import put_alb
from tests.support.lifecycle import git
from tests.support.providers import Repo


@pytest.mark.slow
def test_squals_costs_measures_an_island_in_the_region_of_its_deployed_commit(
    aws_cloud: Cloud,
    tmp_path: Path,
    moto_calls: MotoCalls,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """pr-5 is deployed from a commit saying us-east-1; the working file (never committed) says eu-west-1:
    `squals costs` finds pr-5's stack, its target group and its requests in us-east-1, every call there, and
    shows its figure and traffic (before: every call went to eu-west-1, where nothing is, and pr-5 had no
    traffic)."""
    _, work, listener = _shop(aws_cloud, tmp_path)
    sha = git(work, "rev-parse", "HEAD")
    monkeypatch.chdir(work)
    intent = Intent(IntentKind.PREVIEW, "pull_request", reason="opened", pr_number=5, head_sha=sha)
    preview = Pipeline(Settings(workspace=work), {}).preview(
        Request(intent=intent, workspace=work, head_sha=sha)
    )
    assert preview.status == "success", preview.headline
    (island,) = [
        h for h in AwsProvider(work, load(work / "squals.yml", work).provider).list() if h.env == "pr-5"
    ]
    put_alb(str(island.data["target_group_arn"]), "RequestCount", 40, minutes_ago=5, listener_arn=listener)
    squals = work / "squals.yml"
    squals.write_text(squals.read_text().replace(f"region: {REGION}", "region: eu-west-1"))
    cost_explorer_answers(
        aws_cloud.endpoint, [cost_group("pr-5", "", "2.50"), cost_group("", "door", "1.00")]
    )
    recorded = len(moto_calls.located())
    capsys.readouterr()

    assert main(["costs", "--format", "json"]) == 0
    (report,) = json.loads(capsys.readouterr().out)

    sent = moto_calls.located()[recorded:]
    assert ("GetCostAndUsage", REGION) in sent and ("GetMetricData", REGION) in sent, sent
    assert {region for _, region in sent} == {REGION}, [c for c in sent if c[1] != REGION]
    assert report["environments"] == {"pr-5": 2.5} and report["traffic"] == {"pr-5": 40}
    assert report["allocation"] == {"pr-5": {"door": 1.0}} and report["total"] == 3.5


def test_a_local_providers_cost_scope_is_its_state_directory(tmp_path: Path) -> None:
    """Two local providers of one state directory measure the same islands (one measurement serves both),
    two of different ones do not, whatever Python's ids of released providers."""
    git(tmp_path, "init", "-q")
    same = [LocalProvider(tmp_path, state_dir=tmp_path / "state") for _ in range(2)]
    other = LocalProvider(tmp_path, state_dir=tmp_path / "elsewhere")
    assert cost_scope(same[0]) == cost_scope(same[1]) != cost_scope(other)


def test_islands_are_measured_by_their_own_group_once_and_a_failing_one_is_no_data(
    repo: Repo, spawned: list[daemon.ProcessRecord], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pr-1 runs under state directory `a` (twice placed there: one measurement), pr-2 under `b`: each is
    found where it runs (the working file's provider, state directory `c`, holds nothing and is not asked);
    an island whose provider cannot be opened is "no data" naming why."""
    a, b = (LocalProvider(repo.path, state_dir=tmp_path / n) for n in "ab")
    working = LocalProvider(repo.path, state_dir=tmp_path / "c")
    a.provision("pr-1", repo.shas["one"], repo.manifest())
    b.provision("pr-2", repo.shas["one"], repo.manifest())
    asked: list[Path] = []
    real = costs_local.local_costs

    def counted(provider: LocalProvider, dealer_dir: Path) -> tuple[CostReport, CostReport]:
        asked.append(provider.root)
        return real(provider, dealer_dir)

    monkeypatch.setattr(costs_local, "local_costs", counted)

    def opens(state: str) -> Opener:
        return lambda: contextlib.nullcontext(LocalProvider(repo.path, state_dir=tmp_path / state))

    def broken() -> contextlib.AbstractContextManager[Provider]:
        raise ManifestError("squals.yml", 3, 5, "provider", "expected a mapping", commit="1a2b3c4d5e6f")

    try:
        reports = measure_placed(
            lambda: contextlib.nullcontext(working),
            {"pr-1": opens("a"), "pr-1b": opens("a"), "pr-2": opens("b"), "pr-3": broken},
            dealer_dir=tmp_path / "dealer",
            days=1,
        )
    finally:
        a.down()
        b.down()
    assert asked == [tmp_path / "a", tmp_path / "b"]
    for report in reports:
        assert set(report.environments) == {"pr-1", "pr-2", "pr-3"}
        assert report.environments["pr-1"] and report.environments["pr-2"]
        assert report.environments["pr-3"] is None
        assert (
            "pr-3: no data: squals.yml:3:5 in commit 1a2b3c4d5e6f: provider: expected a mapping"
            in report.notes
        )


def test_prod_comes_first_so_its_provider_measures_the_shared_resources() -> None:
    """The home of the shared resources is the first placed island's provider: prod's, whatever the names of
    the others (pr-3 sorts before pr-5 by name, and a postprod may have been deployed elsewhere)."""
    fleet = [
        Env(name="pr-3", status=Status.POSTPROD),
        Env(name="pr-7", status=Status.READY),
        Env(name="pr-5", status=Status.PROD),
    ]
    assert [e.name for e in prod_first(fleet)] == ["pr-5", "pr-3", "pr-7"]
