"""Blue/green on AWS through the real ``Lifecycle``: the aws provider's island stacks behind the front door's
ALB listener, on moto's server. Every command is a fresh ``Lifecycle`` (a fresh runner: new provider, new
clients, the state on the repository's ``squals/state`` branch), built by the same wiring as the CLI; the
weights are read back from the listener and every AWS call squals makes is counted with a botocore
``before-call`` hook.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from squals_action import aws_api
from squals_action.dealer.interface import DealerError
from squals_action.lifecycle.engine import Lifecycle
from squals_action.lifecycle.parts import traffic_for
from squals_action.manifest import load
from squals_action.providers.aws import AwsProvider
from squals_action.state import open_store
from tests.support.alb import ISLAND_TEMPLATE, READ_PREFIXES, aws_client
from tests.support.aws import REGION, Cloud
from tests.support.providers import Repo

#: A front door in a VPC the islands share (as a user's would be): security group, ALB, listener (503 until
#: squals forwards it).
FRONT_DOOR = """\
AWSTemplateFormatVersion: "2010-09-09"
Description: the front door of the blue/green tests
Parameters:
  VpcId:
    Type: AWS::EC2::VPC::Id
  Subnets:
    Type: List<AWS::EC2::Subnet::Id>
Resources:
  Door:
    Type: AWS::EC2::SecurityGroup
    Properties:
      GroupDescription: the front door
      VpcId: !Ref VpcId
  Balancer:
    Type: AWS::ElasticLoadBalancingV2::LoadBalancer
    Properties:
      Scheme: internet-facing
      Subnets: !Ref Subnets
      SecurityGroups: [!Ref Door]
  Listener:
    Type: AWS::ElasticLoadBalancingV2::Listener
    Properties:
      LoadBalancerArn: !Ref Balancer
      Port: 80
      Protocol: HTTP
      DefaultActions:
        - Type: fixed-response
          FixedResponseConfig:
            StatusCode: "503"
Outputs:
  ListenerArn:
    Value: !Ref Listener
  Url:
    Value: !Sub "http://${Balancer.DNSName}"
"""

SQUALS = """\
version: 1
name: tiny
provider:
  kind: aws
  region: {region}
  template: infra/island.yml
  parameters: {{AppBase: "{app}", VpcId: {vpc}}}
{front_door}app:
  start: served by the stack
  health: /healthz
  health_timeout: 10s
rollout:
  blue_share: 10%
  bake: 1s
  check_interval: 0.5s
"""


@dataclass
class Recorder:
    """Every AWS operation squals' own clients sent, as ``service:Operation``, and the listener's weights
    read back from moto after each ``ModifyListener``."""

    calls: list[str] = field(default_factory=list)
    read_back: list[dict[str, int]] = field(default_factory=list)

    def mutating(self, service: str = "") -> list[str]:
        return [
            c
            for c in self.calls
            if c.startswith(service) and not c.split(":", 1)[1].startswith(READ_PREFIXES)
        ]

    def clear(self) -> None:
        self.calls.clear()
        self.read_back.clear()


@dataclass
class World:
    cloud: Cloud
    repo: Repo
    tmp: Path
    recorder: Recorder
    squals: Path

    def lifecycle(self) -> Lifecycle:
        """A fresh runner's lifecycle, wired as ``squals`` wires it."""
        manifest = load(self.squals, self.repo.path)
        provider = AwsProvider(self.repo.path, manifest.provider)
        provider.wait_delay = 1
        return Lifecycle(
            repo=self.repo.path,
            manifest=manifest,
            store=open_store(self.repo.path, remote=None),
            provider=provider,
            traffic=traffic_for(manifest, provider, self.tmp / "dealer"),
            log_dir=self.tmp / "logs",
        )

    def weights(self) -> dict[str, int]:
        """The listener's forward weights by island, as moto stores them."""
        elbv2 = aws_client("elbv2", self.cloud.endpoint)
        stack = self.cloud.cfn.describe_stacks(StackName="squals-tiny-front-door")["Stacks"][0]
        listener_arn = next(o["OutputValue"] for o in stack["Outputs"] if o["OutputKey"] == "ListenerArn")
        (action,) = elbv2.describe_listeners(ListenerArns=[listener_arn])["Listeners"][0]["DefaultActions"]
        groups = {
            o["OutputValue"]: name.removeprefix("squals-tiny-")
            for name in ("squals-tiny-pr-1", "squals-tiny-pr-2")
            for s in _stacks(self.cloud, name)
            for o in s["Outputs"]
            if o["OutputKey"] == "TargetGroupArn"
        }
        return {groups[g["TargetGroupArn"]]: g["Weight"] for g in action["ForwardConfig"]["TargetGroups"]}


def _stacks(cloud: Cloud, name: str) -> list[dict[str, Any]]:
    try:
        return list(cloud.cfn.describe_stacks(StackName=name)["Stacks"])
    except Exception:  # gone
        return []


def _world(cloud: Cloud, repo: Repo, tmp: Path, monkeypatch: pytest.MonkeyPatch, *, door: bool) -> World:
    ec2 = aws_client("ec2", cloud.endpoint)
    vpc = ec2.create_vpc(CidrBlock="10.50.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.50.{i}.0/24", AvailabilityZone=f"{REGION}{zone}")[
            "Subnet"
        ]["SubnetId"]
        for i, zone in enumerate("ab")
    ]
    (repo.path / "infra").mkdir(exist_ok=True)
    (repo.path / "infra" / "island.yml").write_text(ISLAND_TEMPLATE)
    (repo.path / "infra" / "front-door.yml").write_text(FRONT_DOOR)
    front_door = (
        "  front_door:\n    template: infra/front-door.yml\n"
        f'    parameters: {{VpcId: {vpc}, Subnets: "{",".join(subnets)}"}}\n'
        if door
        else ""
    )
    squals = repo.path / "squals.yml"
    squals.write_text(SQUALS.format(region=REGION, app=cloud.app.url, vpc=vpc, front_door=front_door))
    cloud.app.repo = repo.path
    recorder = Recorder()
    real_client = aws_api.client

    def counted(service: str, region: str, **kwargs: Any) -> Any:
        client = real_client(service, region, **kwargs)

        def record(model: Any, **_: Any) -> None:
            recorder.calls.append(f"{service}:{model.name}")

        def read_back(model: Any, **_: Any) -> None:
            if model.name == "ModifyListener":
                recorder.read_back.append(world.weights())

        client.meta.events.register("before-call", record)
        client.meta.events.register("after-call", read_back)
        return client

    monkeypatch.setattr(aws_api, "client", counted)
    world = World(cloud, repo, tmp, recorder, squals)
    return world


@pytest.fixture
def world(aws_cloud: Cloud, repo: Repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    yield _world(aws_cloud, repo, tmp_path, monkeypatch, door=True)


def test_first_prod_then_a_promotion_without_data_goes_back_to_green(world: World) -> None:
    world.repo.commit("v1")
    assert world.lifecycle().deploy(1, "HEAD").ok
    # A deploy creates the island only: the front door comes with the first promotion.
    assert [s.split()[0] for s in world.cloud.stacks()] == ["squals-tiny-pr-1"]

    world.recorder.clear()
    first = world.lifecycle().promote(1)
    assert first.ok, first.message
    assert world.recorder.mutating("cloudformation") == ["cloudformation:CreateStack"]
    # Stickiness on pr-1's group (first sight), then the one switch: pr-1 takes everything.
    assert world.recorder.mutating("elbv2") == [
        "elbv2:ModifyTargetGroupAttributes",
        "elbv2:ModifyListener",
    ]
    assert world.recorder.read_back == [{"pr-1": 999}]
    door = world.cloud.cfn.describe_stacks(StackName="squals-tiny-front-door")["Stacks"][0]
    assert first.public_url == next(o["OutputValue"] for o in door["Outputs"] if o["OutputKey"] == "Url")

    world.repo.commit("v2")
    assert world.lifecycle().deploy(2, "HEAD").ok
    world.recorder.clear()
    second = world.lifecycle().promote(2)
    # Without a metric source the ALB has no figures: "no data" is not a pass, traffic goes back to GREEN.
    assert not second.ok
    assert "no data" in second.message and "back on GREEN pr-1" in second.message
    assert world.recorder.mutating("cloudformation") == []
    assert world.recorder.mutating("elbv2") == [
        "elbv2:ModifyTargetGroupAttributes",  # pr-2's group, first sight
        "elbv2:ModifyListener",  # pr-2 gets 10 %
        "elbv2:ModifyListener",  # back to GREEN
    ]
    assert world.recorder.read_back == [{"pr-1": 900, "pr-2": 100}, {"pr-1": 999}]

    # Teardown destroys the island, never the front door (prod's island is kept and says so).
    assert world.lifecycle().teardown(2).ok
    kept = world.lifecycle().teardown(1)
    assert kept.ok and kept.message.startswith("kept:")
    stacks = sorted(s.split()[0] for s in world.cloud.stacks())
    assert stacks == ["squals-tiny-front-door", "squals-tiny-pr-1"]


def test_without_a_front_door_promote_refuses_and_records_nothing(
    aws_cloud: Cloud, repo: Repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = _world(aws_cloud, repo, tmp_path, monkeypatch, door=False)
    world.repo.commit("v1")
    assert world.lifecycle().deploy(1, "HEAD").ok
    before = world.lifecycle().fleet()
    world.recorder.clear()
    with pytest.raises(DealerError) as raised:
        world.lifecycle().promote(1)
    assert raised.value.one_line() == (
        f"{world.squals}:4:3: provider kind aws has no front door, so no traffic can move: declare "
        "provider.front_door (template: infra/front-door.yml, or listener_arn: arn:...); nothing was changed"
    )
    assert world.recorder.mutating() == []
    assert world.lifecycle().fleet() == before
