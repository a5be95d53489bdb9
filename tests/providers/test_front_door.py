"""The front door against moto's server: created once on first need, reused, kept by ``down``, deleted only on
the explicit call; or an existing listener named by ARN; and islands that must output their target group."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from squals_action.manifest import load, model
from squals_action.providers import ProviderError
from squals_action.providers.aws import AwsError, AwsProvider
from squals_action.providers.aws_front_door import FrontDoorStack
from tests.support.alb import FRONT_DOOR_TEMPLATE, ISLAND_TEMPLATE, Calls, build_alb
from tests.support.aws import TEMPLATE, Cloud, aws_client
from tests.support.providers import Repo

ARN_OTHER_REGION = (
    "arn:aws:elasticloadbalancing:eu-west-3:123456789012:listener/app/shop/50dc6c495c0c9188/f2f7dc8e"
)


def _provider(cloud: Cloud, repo: Repo, door: model.FrontDoor, **parameters: str) -> AwsProvider:
    config = model.Provider(
        kind="aws",
        template="infra/island.yml",
        parameters={"AppBase": cloud.app.url, **parameters},
        front_door=door,
    )
    provider = AwsProvider(repo.path, config)
    provider.wait_delay = 1
    return provider


def _commit(
    cloud: Cloud, repo: Repo, front_door: str = FRONT_DOOR_TEMPLATE, island: str = ISLAND_TEMPLATE
) -> str:
    (repo.path / "infra").mkdir(exist_ok=True)
    (repo.path / "infra" / "front-door.yml").write_text(front_door)
    (repo.path / "infra" / "island.yml").write_text(island)
    cloud.app.repo = repo.path
    return repo.commit("templates")


def test_created_once_reused_kept_by_down_and_deleted_on_request(aws_cloud: Cloud, repo: Repo) -> None:
    commit = _commit(aws_cloud, repo)
    declared = model.FrontDoor(template="infra/front-door.yml", parameters={"CidrPrefix": "10.40"})
    bare = FrontDoorStack(_provider(aws_cloud, repo, declared))
    assert bare.get() is None  # nothing is created by looking

    door = bare.ensure(repo.manifest(), commit)
    stack = aws_cloud.cfn.describe_stacks(StackName="squals-tiny-front-door")["Stacks"][0]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}
    tags = {t["Key"]: t["Value"] for t in stack["Tags"]}
    assert (tags["squals:project"], tags["squals:role"]) == ("tiny", "front-door")
    assert "squals:environment" not in tags
    params = {p["ParameterKey"]: p["ParameterValue"] for p in stack["Parameters"]}
    assert params == {"SqualsProject": "tiny", "CidrPrefix": "10.40"}
    assert (door.listener_arn, door.url, door.stack_name) == (
        outputs["ListenerArn"],
        outputs["Url"],
        "squals-tiny-front-door",
    )

    # A fresh process (another runner) finds it and creates nothing.
    provider = _provider(aws_cloud, repo, declared, VpcId=outputs["VpcId"])
    calls = Calls()
    calls.attach(provider.client(provider.region()))
    again = FrontDoorStack(provider).ensure(repo.manifest(), commit)
    assert again == door
    assert calls.mutating == []

    island = provider.provision("pr-1", commit, repo.manifest())
    group = island.data["target_group_arn"]
    elbv2 = aws_client("elbv2", aws_cloud.endpoint)
    assert (
        elbv2.describe_target_groups(TargetGroupArns=[group])["TargetGroups"][0]["VpcId"] == outputs["VpcId"]
    )
    door.traffic(upstreams={"pr-1": group}).route({"pr-1": group}, {"pr-1": 100})
    listener = elbv2.describe_listeners(ListenerArns=[door.listener_arn])["Listeners"][0]
    assert listener["DefaultActions"][0]["ForwardConfig"]["TargetGroups"] == [
        {"TargetGroupArn": group, "Weight": 999}
    ]

    # AWS refuses to delete a target group a listener forwards to (moto does not model that for stacks):
    # the lifecycle routes an island out before destroying it; here the listener answers 503 again.
    elbv2.modify_listener(
        ListenerArn=door.listener_arn,
        DefaultActions=[{"Type": "fixed-response", "FixedResponseConfig": {"StatusCode": "503"}}],
    )
    outcomes = provider.down()
    assert [(o.env, o.ok) for o in outcomes] == [("pr-1", True)]
    assert aws_cloud.stacks() == ["squals-tiny-front-door CREATE_COMPLETE"]

    deleted = FrontDoorStack(provider).delete()
    assert (deleted.ok, deleted.detail) == (True, "deleted stack squals-tiny-front-door")
    assert aws_cloud.stacks() == []
    assert FrontDoorStack(provider).delete().detail == "stack squals-tiny-front-door is already gone"


def test_without_a_url_output_the_load_balancer_dns_name_is_the_url(aws_cloud: Cloud, repo: Repo) -> None:
    no_url = FRONT_DOOR_TEMPLATE.split("  Url:\n")[0]
    commit = _commit(aws_cloud, repo, front_door=no_url)
    door = FrontDoorStack(
        _provider(aws_cloud, repo, model.FrontDoor(template="infra/front-door.yml"))
    ).ensure(repo.manifest(), commit)
    balancers = aws_client("elbv2", aws_cloud.endpoint).describe_load_balancers()["LoadBalancers"]
    assert door.url == f"http://{balancers[0]['DNSName']}"


def test_a_named_listener_is_described_never_created_or_deleted(aws_cloud: Cloud, repo: Repo) -> None:
    commit = _commit(aws_cloud, repo)
    alb = build_alb(aws_cloud.endpoint)
    where = model.Location("squals.yml", 7, 5)
    stacks = FrontDoorStack(
        _provider(aws_cloud, repo, model.FrontDoor(listener_arn=alb.listener_arn, location=where))
    )
    door = stacks.ensure(repo.manifest(), commit)
    assert (door.listener_arn, door.url, door.stack_name) == (
        alb.listener_arn,
        f"http://{alb.dns_name}",
        None,
    )
    assert stacks.get() == door
    assert aws_cloud.stacks() == []
    with pytest.raises(
        ProviderError, match=r"^squals.yml:7:5: provider.front_door names an existing listener"
    ):
        stacks.delete()
    assert alb.elbv2.describe_listeners(ListenerArns=[alb.listener_arn])["Listeners"]

    gone = alb.listener_arn[:-4] + "0000"
    missing = FrontDoorStack(_provider(aws_cloud, repo, model.FrontDoor(listener_arn=gone, location=where)))
    with pytest.raises(AwsError) as caught:
        missing.ensure(repo.manifest(), commit)
    assert caught.value.one_line() == str(caught.value)
    assert str(caught.value).startswith(
        f"squals.yml:7:5: provider.front_door.listener_arn: describe listener {gone}: ListenerNotFound:"
    )
    elsewhere = FrontDoorStack(_provider(aws_cloud, repo, model.FrontDoor(listener_arn=ARN_OTHER_REGION)))
    with pytest.raises(
        AwsError, match="the listener is in eu-west-3 but the islands' stacks go to us-east-1"
    ):
        elsewhere.get()


def test_missing_outputs_are_one_line_errors_naming_the_template_or_the_stack(
    aws_cloud: Cloud, repo: Repo
) -> None:
    declared = model.FrontDoor(template="infra/front-door.yml")
    no_listener = FRONT_DOOR_TEMPLATE.replace("  ListenerArn:\n    Value: !Ref Listener\n", "")
    commit = _commit(aws_cloud, repo, front_door=no_listener)
    with pytest.raises(
        ProviderError,
        match=rf"^infra/front-door\.yml:\d+:\d+ in commit {commit[:12]}: expected an output named 'Listener",
    ):
        FrontDoorStack(_provider(aws_cloud, repo, declared)).ensure(repo.manifest(), commit)

    commit = _commit(aws_cloud, repo, island=TEMPLATE)
    provider = _provider(aws_cloud, repo, declared)
    with pytest.raises(
        ProviderError,
        match=rf"^infra/island\.yml:\d+:\d+ in commit {commit[:12]}: expected an output named 'TargetGr",
    ):
        provider.provision("pr-1", commit, repo.manifest())
    assert aws_cloud.stacks() == []

    # Declared but not produced (an output under a condition that is false): named with the stack.
    conditional = ISLAND_TEMPLATE.replace(
        "Outputs:\n  TargetGroupArn:\n    Value: !Ref Group\n",
        "Conditions:\n  Never: !Equals [a, b]\n"
        "Outputs:\n  TargetGroupArn:\n    Condition: Never\n    Value: !Ref Group\n",
    )
    commit = _commit(aws_cloud, repo, island=conditional)
    vpc = aws_client("ec2", aws_cloud.endpoint).create_vpc(CidrBlock="10.50.0.0/16")["Vpc"]["VpcId"]
    with pytest.raises(AwsError) as caught:
        _provider(aws_cloud, repo, declared, VpcId=vpc).provision("pr-1", commit, repo.manifest())
    assert str(caught.value) == (
        "pr-1: stack squals-tiny-pr-1 has no output 'TargetGroupArn': the front door forwards to it; "
        "stack deleted"
    )
    assert aws_cloud.stacks() == []


def test_squals_down_keeps_the_front_door_and_down_front_door_deletes_it(
    aws_cloud: Cloud, repo: Repo
) -> None:
    (repo.path / "squals.yml").write_text(
        "version: 1\nname: tiny\napp: {start: python3 app.py}\n"
        "provider:\n  kind: aws\n  region: us-east-1\n  template: infra/island.yml\n"
        f"  parameters: {{AppBase: '{aws_cloud.app.url}'}}\n"
        "  front_door: {template: infra/front-door.yml}\n"
    )
    commit = _commit(aws_cloud, repo)
    manifest = load(repo.path / "squals.yml", repo.path)
    FrontDoorStack(AwsProvider(repo.path, manifest.provider)).ensure(manifest, commit)

    def squals(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "squals_action.cli", *args, "--report", "none"],
            cwd=repo.path,
            env=dict(os.environ),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    kept = squals("down")
    assert kept.returncode == 0, kept.stderr
    assert aws_cloud.stacks() == ["squals-tiny-front-door CREATE_COMPLETE"]
    deleted = squals("down", "--front-door")
    assert deleted.returncode == 0, deleted.stderr
    assert "front door: deleted stack squals-tiny-front-door" in deleted.stderr
    assert aws_cloud.stacks() == []

    (repo.path / "squals.yml").write_text("version: 1\nname: tiny\napp: {start: python3 app.py}\n")
    refused = squals("down", "--front-door")
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    assert (
        refused.stderr.strip()
        .splitlines()[-1]
        .endswith("--front-door: only the aws provider has a front door")
    )
