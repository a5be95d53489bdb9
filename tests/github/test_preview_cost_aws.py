"""The action's preview on AWS measures the island's cost where the island was deployed: with the provider
section of the deployed commit's squals file, not of the working file the action loaded (edited since)."""

from __future__ import annotations

from pathlib import Path

import pytest

from squals_action.github.events import Intent, IntentKind
from squals_action.github.interface import Request
from squals_action.github.pipeline import Pipeline
from squals_action.github.runner import Settings
from tests.experiments.test_aws import _shop, _stacks
from tests.support.aws import REGION, Cloud, MotoCalls, cost_explorer_answers, cost_group
from tests.support.lifecycle import git


def test_a_previews_island_cost_is_measured_in_the_region_of_its_deployed_commit(
    aws_cloud: Cloud, tmp_path: Path, moto_calls: MotoCalls, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The deployed commit says us-east-1, the working squals file (never committed) eu-west-1: the island
    is made in us-east-1 and its cost is read there too, every call in us-east-1, and the figure shown
    (before: the cost was measured with the working file's provider, in eu-west-1)."""
    _, work, _ = _shop(aws_cloud, tmp_path)
    sha = git(work, "rev-parse", "HEAD")
    squals = work / "squals.yml"
    squals.write_text(squals.read_text().replace(f"region: {REGION}", "region: eu-west-1"))
    assert "eu-west-1" in squals.read_text()
    cost_explorer_answers(aws_cloud.endpoint, [cost_group("pr-5", "", "2.50")])
    monkeypatch.chdir(work)  # the action runs in its workspace
    intent = Intent(IntentKind.PREVIEW, "pull_request", reason="opened", pr_number=5, head_sha=sha)
    recorded = len(moto_calls.located())

    report = Pipeline(Settings(workspace=work), {}).preview(
        Request(intent=intent, workspace=work, head_sha=sha)
    )
    sent = moto_calls.located()[recorded:]
    assert report.status == "success", (report.headline, sent)
    assert ("CreateStack", REGION) in sent and ("GetCostAndUsage", REGION) in sent, sent
    assert {region for _, region in sent} == {REGION}, [c for c in sent if c[1] != REGION]
    assert "squals-shop-pr-5" in _stacks(aws_cloud)
    (cost,) = [text for title, text in report.sections if title == "Cost of the island so far"]
    assert "2\\.50 USD" in cost, cost
