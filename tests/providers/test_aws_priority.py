"""``SqualsRulePriority`` on moto's server: what the aws provider fills in for an island template that
declares it (a preview rule on the front door's listener, as ``examples/shop-aws`` has), read from the stack
parameters moto recorded: ``pr-N`` takes ``N``; any other island the first free number of 40,001-50,000 from
a hash of its name on, free of the listener's rules (a user's own too); an update keeps the number the
island's stack was given, even once the number it would choose today is free again."""

from __future__ import annotations

import pytest

from squals_action.manifest import model
from squals_action.providers import ProviderError
from squals_action.providers.aws import AwsProvider
from squals_action.providers.aws_front_door import FrontDoorStack
from squals_action.providers.aws_priority import choose
from squals_action.providers.aws_template import POOL, first_candidate
from tests.support.alb import FRONT_DOOR_TEMPLATE, ISLAND_WITH_RULE_TEMPLATE
from tests.support.aws import Cloud, MotoCalls, aws_client
from tests.support.providers import Repo

DOOR = model.FrontDoor(template="infra/front-door.yml")


def _provider(cloud: Cloud, repo: Repo) -> tuple[AwsProvider, str, str]:
    """The provider of ``repo``'s islands (each with a preview rule), its front door made: (provider,
    listener ARN, commit)."""
    (repo.path / "infra").mkdir(exist_ok=True)
    (repo.path / "infra" / "front-door.yml").write_text(FRONT_DOOR_TEMPLATE)
    (repo.path / "infra" / "island.yml").write_text(ISLAND_WITH_RULE_TEMPLATE)
    cloud.app.repo = repo.path
    commit = repo.commit("templates")
    bare = AwsProvider(repo.path, model.Provider(kind="aws", template="infra/island.yml", front_door=DOOR))
    bare.wait_delay = 1
    door = FrontDoorStack(bare).ensure(repo.manifest(), commit)
    outputs = cloud.cfn.describe_stacks(StackName=door.stack_name)["Stacks"][0]["Outputs"]
    vpc = next(o["OutputValue"] for o in outputs if o["OutputKey"] == "VpcId")
    parameters = {"AppBase": cloud.app.url, "VpcId": vpc, "ListenerArn": door.listener_arn}
    config = model.Provider(kind="aws", template="infra/island.yml", parameters=parameters, front_door=DOOR)
    provider = AwsProvider(repo.path, config)
    provider.wait_delay = 1
    return provider, door.listener_arn, commit


def _sent(calls: MotoCalls, operation: str) -> dict[str, str]:
    """Island stack -> the ``SqualsRulePriority`` each recorded ``operation`` sent (the last one's)."""
    return {
        name: p["SqualsRulePriority"]
        for name, p in calls.parameters(operation)
        if name != "squals-tiny-front-door"
    }


def test_a_pull_request_takes_its_number_and_any_other_island_a_free_one_of_the_pool(
    aws_cloud: Cloud, repo: Repo, moto_calls: MotoCalls
) -> None:
    provider, listener, commit = _provider(aws_cloud, repo)
    elbv2 = aws_client("elbv2", aws_cloud.endpoint)
    island = "exp-green-0a1b2c3d"
    # a rule of the user's own on the number the island would take first
    elbv2.create_rule(
        ListenerArn=listener,
        Priority=first_candidate(island),
        Conditions=[{"Field": "path-pattern", "Values": ["/theirs"]}],
        Actions=[{"Type": "fixed-response", "FixedResponseConfig": {"StatusCode": "404"}}],
    )

    handles = {env: provider.provision(env, commit, repo.manifest()) for env in ("pr-7", "pr-40001", island)}
    created = _sent(moto_calls, "CreateStack")
    numbers = {env: int(created[f"squals-tiny-{env}"]) for env in handles}
    assert numbers["pr-7"] == 7
    assert numbers["pr-40001"] in POOL  # above 40,000 a pull request's number is not a priority of its own
    assert numbers[island] != first_candidate(island) and numbers[island] in POOL
    assert len(set(numbers.values())) == 3
    assert {env: h.data["rule_priority"] for env, h in handles.items()} == numbers  # the handle records it
    rules = elbv2.describe_rules(ListenerArn=listener)["Rules"]
    assert sorted(int(r["Priority"]) for r in rules if not r["IsDefault"]) == sorted(
        [*numbers.values(), first_candidate(island)]
    )


def test_an_update_keeps_the_number_the_islands_stack_was_given(
    aws_cloud: Cloud, repo: Repo, moto_calls: MotoCalls
) -> None:
    provider, listener, commit = _provider(aws_cloud, repo)
    elbv2 = aws_client("elbv2", aws_cloud.endpoint)
    island = "exp-control-0a1b2c3d"
    theirs = elbv2.create_rule(
        ListenerArn=listener,
        Priority=first_candidate(island),
        Conditions=[{"Field": "path-pattern", "Values": ["/theirs"]}],
        Actions=[{"Type": "fixed-response", "FixedResponseConfig": {"StatusCode": "404"}}],
    )["Rules"][0]["RuleArn"]
    first = provider.provision(island, commit, repo.manifest())
    number = first.data["rule_priority"]
    assert number != first_candidate(island)
    elbv2.delete_rule(RuleArn=theirs)  # what it would choose today is free again

    second = repo.commit("two")
    again = AwsProvider(repo.path, provider.config)  # another runner: nothing but AWS
    again.wait_delay = 1
    updated = again.provision(island, second, repo.manifest())
    assert _sent(moto_calls, "UpdateStack") == {f"squals-tiny-{island}": str(number)}
    assert updated.commit == second and updated.data["rule_priority"] == number
    assert again.get(island) == updated  # read back from the stack's parameters


def test_a_full_pool_is_one_line_naming_the_range() -> None:
    with pytest.raises(ProviderError) as full:
        choose("exp-green-0a1b2c3d", None, lambda: set(POOL))
    assert full.value.one_line() == (
        "exp-green-0a1b2c3d: no listener rule priority is free for SqualsRulePriority: the 10000 numbers "
        "40001-50000 are all held on the front door's listener or by the project's stacks"
    )
