"""Costs on aws against moto's server: Cost Explorer grouped by the squals tags, the shared cost split by each
island's RequestCount on the front door (CloudWatch), the parts adding up to the total."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest

from squals_action.costs import measure_costs
from squals_action.manifest import model
from squals_action.providers.aws import AwsProvider
from squals_action.providers.aws_front_door import FrontDoorStack
from tests.support.alb import FRONT_DOOR_TEMPLATE, ISLAND_TEMPLATE
from tests.support.aws import Cloud, cost_explorer_answers, cost_group
from tests.support.cloudwatch import put_alb
from tests.support.providers import Repo


@pytest.mark.slow
def test_cost_explorer_groups_and_cloudwatch_traffic_allocate_the_shared_cost(
    aws_cloud: Cloud, repo: Repo, moto_calls: Callable[[], list[str]]
) -> None:
    (repo.path / "infra").mkdir()
    (repo.path / "infra" / "front-door.yml").write_text(FRONT_DOOR_TEMPLATE)
    (repo.path / "infra" / "island.yml").write_text(ISLAND_TEMPLATE)
    aws_cloud.app.repo = repo.path
    commit = repo.commit("templates")
    declared = model.FrontDoor(template="infra/front-door.yml")
    first = AwsProvider(
        repo.path, model.Provider(kind="aws", template="infra/island.yml", front_door=declared)
    )
    first.wait_delay = 1
    door = FrontDoorStack(first).ensure(repo.manifest(), commit)
    vpc = {o["OutputKey"]: o["OutputValue"] for o in aws_cloud.cfn.describe_stacks()["Stacks"][0]["Outputs"]}
    config = model.Provider(
        kind="aws",
        template="infra/island.yml",
        parameters={"AppBase": aws_cloud.app.url, "VpcId": vpc["VpcId"]},
        front_door=declared,
    )
    provider = AwsProvider(repo.path, config)
    provider.wait_delay = 1
    islands = {env: provider.provision(env, commit, repo.manifest()) for env in ("pr-1", "pr-2")}
    for env, requests in (("pr-1", 300), ("pr-2", 100)):
        put_alb(
            str(islands[env].data["target_group_arn"]),
            "RequestCount",
            requests,
            minutes_ago=5,
            listener_arn=door.listener_arn,
        )
    cost_explorer_answers(
        aws_cloud.endpoint,
        [
            cost_group("pr-1", "", "3.00"),
            cost_group("pr-2", "", "1.00"),
            cost_group("", "cache", "8.00"),
            cost_group("", "", "0.50"),
        ],
    )

    (report,) = measure_costs(provider, dealer_dir=repo.path / ".squals" / "dealer", days=2)

    assert "GetCostAndUsage" in moto_calls()
    assert report.measure == "USD"
    assert dict(report.environments) == {"pr-1": 3.0, "pr-2": 1.0}
    assert (dict(report.shared), report.untagged) == ({"cache": 8.0}, 0.5)
    assert dict(report.traffic) == {"pr-1": 300, "pr-2": 100}
    assert report.allocation.shares == {"pr-1": {"cache": 6.0}, "pr-2": {"cache": 2.0}}
    assert (report.with_shares("pr-1"), report.with_shares("pr-2"), report.total()) == (9.0, 3.0, 12.5)
    assert math.isclose(9.0 + 3.0 + report.untagged, report.total())
    provider.down()
    FrontDoorStack(provider).delete()
