"""Blue/green on AWS through the real ``Lifecycle``: the aws provider's island stacks behind the front door's
ALB listener, on moto's server. Every command is a fresh ``Lifecycle`` (a fresh runner: new provider, new
clients, the state on the repository's ``squals/state`` branch), built by the same wiring as the CLI; the
weights are read back from the listener and every AWS call squals makes is counted with a botocore
``before-call`` hook. The bake reads CloudWatch as wired for the front door; the data is written with
``put_metric_data`` for each island's target group over the two hours before now, and the windows' wall clock
starts an hour ago and moves 30 s per reading, so CloudWatch's one-minute delay is honoured without waiting.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from squals_action import aws_api
from squals_action.dealer.interface import DealerError
from squals_action.lifecycle.engine import Lifecycle
from squals_action.lifecycle.machine import Status
from squals_action.lifecycle.parts import signals_for, traffic_for
from squals_action.manifest import load
from squals_action.providers.aws import AwsProvider
from squals_action.state import open_store
from tests.support.alb import (
    FRONT_DOOR_IN_VPC_TEMPLATE,
    ISLAND_TEMPLATE,
    ISLAND_WITHOUT_GROUP_OUTPUT,
    READ_PREFIXES,
)
from tests.support.aws import REGION, Cloud, MotoCalls, aws_client, put_alarm
from tests.support.cloudwatch import put_alb_history
from tests.support.providers import Repo

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
{rollout}  bake: 1s
  check_interval: 0.2s
  kpis: [{{metric: error_rate, max: 1%}}]
"""


@dataclass
class Recorder:
    """Every AWS operation squals' own clients sent, as ``service:Operation``, and the listener's weights
    read back from moto after each ``ModifyListener``."""

    calls: list[str] = field(default_factory=list)
    read_back: list[dict[str, int]] = field(default_factory=list)
    #: The parameters of every call, as ``(service:Operation, params)``.
    params: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def asked(self, call: str) -> list[dict[str, Any]]:
        """The parameters of every ``call`` (``service:Operation``) sent."""
        return [p for c, p in self.params if c == call]

    def mutating(self, service: str = "") -> list[str]:
        return [
            c
            for c in self.calls
            if c.startswith(service) and not c.split(":", 1)[1].startswith(READ_PREFIXES)
        ]

    def clear(self) -> None:
        self.calls.clear()
        self.read_back.clear()
        self.params.clear()


@dataclass
class World:
    cloud: Cloud
    repo: Repo
    tmp: Path
    recorder: Recorder
    squals: Path
    #: The wall clock of CloudWatch's windows: an hour ago, 30 s later at every reading.
    clock: Callable[[], datetime] = field(default_factory=lambda: stepping_clock(datetime.now(UTC) - HOUR))

    def lifecycle(self) -> Lifecycle:
        """A fresh runner's lifecycle, wired as ``squals`` wires it."""
        manifest = load(self.squals, self.repo.path)
        provider = AwsProvider(self.repo.path, manifest.provider)
        provider.wait_delay = 1
        traffic = traffic_for(manifest, provider, self.tmp / "dealer")
        return Lifecycle(
            repo=self.repo.path,
            manifest=manifest,
            store=open_store(self.repo.path, remote=None),
            provider=provider,
            traffic=traffic,
            signals=signals_for(manifest, traffic, clock=self.clock),
            log_dir=self.tmp / "logs",
        )

    def listener_arn(self) -> str:
        stack = self.cloud.cfn.describe_stacks(StackName="squals-tiny-front-door")["Stacks"][0]
        return str(next(o["OutputValue"] for o in stack["Outputs"] if o["OutputKey"] == "ListenerArn"))

    def target_group(self, env: str) -> str:
        (stack,) = _stacks(self.cloud, f"squals-tiny-{env}")
        return str(next(o["OutputValue"] for o in stack["Outputs"] if o["OutputKey"] == "TargetGroupArn"))

    def served(self, env: str, requests: int, errors: int = 0) -> None:
        """``requests`` (``errors`` of them 5xx) per minute for ``env``'s target group, these two hours."""
        data = {"RequestCount": requests, **({"HTTPCode_Target_5XX_Count": errors} if errors else {})}
        put_alb_history(self.listener_arn(), self.target_group(env), data)

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
        forward = action.get("ForwardConfig", {}).get("TargetGroups", [])  # none: a fixed response
        return {groups[g["TargetGroupArn"]]: g["Weight"] for g in forward}


HOUR = timedelta(hours=1)


def stepping_clock(start: datetime, step: float = 30.0) -> Callable[[], datetime]:
    """A wall clock that moves ``step`` seconds at every reading."""
    ticks = itertools.count()
    return lambda: start + timedelta(seconds=step * next(ticks))


def _stacks(cloud: Cloud, name: str) -> list[dict[str, Any]]:
    try:
        return list(cloud.cfn.describe_stacks(StackName=name)["Stacks"])
    except Exception:  # gone
        return []


def _world(
    cloud: Cloud,
    repo: Repo,
    tmp: Path,
    monkeypatch: pytest.MonkeyPatch,
    *,
    door: bool = True,
    rollout: str = "  blue_share: 10%\n",
) -> World:
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
    (repo.path / "infra" / "front-door.yml").write_text(FRONT_DOOR_IN_VPC_TEMPLATE)
    front_door = (
        "  front_door:\n    template: infra/front-door.yml\n"
        f'    parameters: {{VpcId: {vpc}, Subnets: "{",".join(subnets)}"}}\n'
        if door
        else ""
    )
    squals = repo.path / "squals.yml"
    squals.write_text(
        SQUALS.format(region=REGION, app=cloud.app.url, vpc=vpc, front_door=front_door, rollout=rollout)
    )
    cloud.app.repo = repo.path
    recorder = Recorder()
    real_client = aws_api.client

    def counted(service: str, region: str, **kwargs: Any) -> Any:
        client = real_client(service, region, **kwargs)

        def record(model: Any, **_: Any) -> None:
            recorder.calls.append(f"{service}:{model.name}")

        def record_params(model: Any, params: dict[str, Any], **_: Any) -> None:
            recorder.params.append((f"{service}:{model.name}", dict(params)))

        def read_back(model: Any, **_: Any) -> None:
            if model.name == "ModifyListener":
                recorder.read_back.append(world.weights())

        client.meta.events.register("before-call", record)
        client.meta.events.register("before-parameter-build", record_params)
        client.meta.events.register("after-call", read_back)
        return client

    monkeypatch.setattr(aws_api, "client", counted)
    world = World(cloud, repo, tmp, recorder, squals)
    return world


@pytest.fixture
def world(aws_cloud: Cloud, repo: Repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    yield _world(aws_cloud, repo, tmp_path, monkeypatch)


def first_prod_and_a_candidate(world: World) -> None:
    """pr-1 deployed and promoted as the first prod (the front door comes with it), pr-2 deployed."""
    world.repo.commit("v1")
    assert world.lifecycle().deploy(1, "HEAD").ok
    # A deploy creates the island only: the front door comes with the first promotion.
    assert [s.split()[0] for s in world.cloud.stacks()] == ["squals-tiny-pr-1"]
    world.recorder.clear()
    first = world.lifecycle().promote(1)
    assert first.ok, first.message
    assert world.recorder.mutating("cloudformation") == ["cloudformation:CreateStack"]
    # Stickiness on pr-1's group (first sight), then the one switch: pr-1 takes everything (a first prod's
    # completion routes nothing more).
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


@pytest.mark.slow
def test_promote_bakes_on_cloudwatch_then_rollback_is_one_call(world: World) -> None:
    first_prod_and_a_candidate(world)
    world.served("pr-2", 100)  # healthy: no 5xx
    second = world.lifecycle().promote(2)
    assert second.ok, second.message
    assert world.recorder.mutating("cloudformation") == []
    assert world.recorder.mutating("elbv2") == [
        "elbv2:ModifyTargetGroupAttributes",  # pr-2's group, first sight
        "elbv2:ModifyListener",  # pr-2 gets 10 %
        "elbv2:ModifyListener",  # after the bake: pr-2 takes everything
    ]
    assert world.recorder.read_back == [{"pr-1": 900, "pr-2": 100}, {"pr-1": 0, "pr-2": 999}]
    assert [(k.metric, k.value, k.ok) for k in second.kpis] == [("error_rate", 0.0, True)]
    assert "cloudwatch:GetMetricData" in world.recorder.calls

    world.recorder.clear()
    back = world.lifecycle().rollback()
    assert back.ok, back.message
    assert world.recorder.mutating() == ["elbv2:ModifyListener"]  # exactly one mutating call
    assert world.recorder.read_back == [{"pr-1": 999, "pr-2": 0}]
    fleet = world.lifecycle().fleet()
    assert (fleet["pr-1"].status, fleet["pr-2"].status) == (Status.PROD, Status.POSTPROD)

    # Teardown destroys islands, never the front door; prod and postprod are kept and say so.
    kept = world.lifecycle().teardown(1)
    assert kept.ok and kept.message.startswith("kept:")
    stacks = sorted(s.split()[0] for s in world.cloud.stacks())
    assert stacks == ["squals-tiny-front-door", "squals-tiny-pr-1", "squals-tiny-pr-2"]

    # Down: the listener stops forwarding first (AWS deletes no target group a listener forwards to), then
    # every island goes; the front door stays, answering 503.
    world.recorder.clear()
    assert world.lifecycle().down().ok
    assert world.recorder.mutating() == [
        "elbv2:ModifyListener",
        "cloudformation:DeleteStack",
        "cloudformation:DeleteStack",
    ]
    assert [s.split()[0] for s in world.cloud.stacks()] == ["squals-tiny-front-door"]
    assert world.recorder.read_back == [{}]
    elbv2 = aws_client("elbv2", world.cloud.endpoint)
    (listener,) = elbv2.describe_listeners(ListenerArns=[world.listener_arn()])["Listeners"]
    (action,) = listener["DefaultActions"]
    assert (action["Type"], action["FixedResponseConfig"]["StatusCode"]) == ("fixed-response", "503")


@pytest.mark.slow
def test_half_of_blues_requests_failing_sends_all_traffic_back_to_green(world: World) -> None:
    first_prod_and_a_candidate(world)
    world.served("pr-2", 100, errors=50)
    second = world.lifecycle().promote(2)
    assert not second.ok
    assert second.message.startswith("KPI breach: error_rate 50 > max 1")
    assert world.recorder.read_back == [{"pr-1": 900, "pr-2": 100}, {"pr-1": 999}]
    assert world.lifecycle().fleet()["pr-1"].status is Status.PROD


@pytest.mark.slow
def test_an_alarm_in_alarm_sends_all_traffic_back_to_green(
    aws_cloud: Cloud, repo: Repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = _world(
        aws_cloud, repo, tmp_path, monkeypatch, rollout="  blue_share: 10%\n  alarms: [tiny-5xx]\n"
    )
    cloudwatch = aws_client("cloudwatch", aws_cloud.endpoint)
    put_alarm(cloudwatch, "tiny-5xx", threshold=10)
    first_prod_and_a_candidate(world)
    world.served("pr-2", 100)  # the KPIs are fine; the alarm is not
    cloudwatch.set_alarm_state(AlarmName="tiny-5xx", StateValue="ALARM", StateReason="5xx on checkout")
    second = world.lifecycle().promote(2)
    assert not second.ok
    assert "tiny-5xx" in second.message and "back on GREEN pr-1" in second.message
    assert world.recorder.read_back == [{"pr-1": 900, "pr-2": 100}, {"pr-1": 999}]
    assert "cloudwatch:DescribeAlarms" in world.recorder.calls


def test_the_bake_watches_the_alarms_and_kpis_of_the_promoted_commit(
    aws_cloud: Cloud, repo: Repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The squals file changed after pr-2's commit (another alarm, in ALARM; another KPI) does not leak into
    its bake: CloudWatch is asked for the commit's alarm and the commit's KPI only, and the commit's KPI
    stops the promotion."""
    world = _world(
        aws_cloud, repo, tmp_path, monkeypatch, rollout="  blue_share: 10%\n  alarms: [tiny-5xx]\n"
    )
    cloudwatch = aws_client("cloudwatch", aws_cloud.endpoint)
    for name, state in (("tiny-5xx", "OK"), ("tiny-latency", "ALARM")):
        put_alarm(cloudwatch, name, state=state, threshold=10)
    first_prod_and_a_candidate(world)
    committed = world.squals.read_text()
    world.squals.write_text(  # after pr-2's commit, never committed: another alarm and another KPI
        committed.replace("alarms: [tiny-5xx]", "alarms: [tiny-latency]").replace(
            "kpis: [{metric: error_rate, max: 1%}]", "kpis: [{metric: p95_latency_ms, max: 400}]"
        )
    )
    assert world.squals.read_text() != committed
    world.served("pr-2", 100, errors=50)
    second = world.lifecycle().promote(2)
    assert not second.ok
    assert second.message.startswith("KPI breach: error_rate 50 > max 1"), second.message
    assert world.recorder.read_back == [{"pr-1": 900, "pr-2": 100}, {"pr-1": 999}]
    described = world.recorder.asked("cloudwatch:DescribeAlarms")
    assert described and {tuple(p["AlarmNames"]) for p in described} == {("tiny-5xx",)}
    queried = {
        q["MetricStat"]["Metric"]["MetricName"]
        for p in world.recorder.asked("cloudwatch:GetMetricData")
        for q in p["MetricDataQueries"]
    }
    # error_rate's counts, and not TargetResponseTime (p95_latency_ms is not the commit's KPI)
    assert queried == {"RequestCount", "HTTPCode_Target_5XX_Count", "HTTPCode_ELB_5XX_Count"}


@pytest.mark.slow
def test_no_blue_requests_is_inconclusive_with_green_at_100(world: World) -> None:
    first_prod_and_a_candidate(world)
    world.served("pr-1", 100)  # GREEN served; BLUE's group has no datapoint
    second = world.lifecycle().promote(2)
    assert not second.ok
    assert "no data" in second.message
    assert world.recorder.read_back == [{"pr-1": 900, "pr-2": 100}, {"pr-1": 999}]
    fleet = world.lifecycle().fleet()
    assert (fleet["pr-1"].status, fleet["pr-1"].share) == (Status.PROD, 100.0)
    assert fleet["pr-2"].status is Status.READY  # promotable again


@pytest.mark.slow
def test_steps_10_25_50_are_three_calls_then_100(
    aws_cloud: Cloud, repo: Repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = _world(aws_cloud, repo, tmp_path, monkeypatch, rollout="  steps: [10%, 25%, 50%]\n")
    first_prod_and_a_candidate(world)
    world.served("pr-2", 100)
    second = world.lifecycle().promote(2)
    assert second.ok, second.message
    assert world.recorder.mutating("elbv2") == ["elbv2:ModifyTargetGroupAttributes"] + 4 * [
        "elbv2:ModifyListener"
    ]
    assert world.recorder.read_back == [
        {"pr-1": 900, "pr-2": 100},
        {"pr-1": 750, "pr-2": 250},
        {"pr-1": 500, "pr-2": 500},
        {"pr-1": 0, "pr-2": 999},
    ]


def test_the_front_door_is_created_from_the_promoted_commits_squals_file(
    aws_cloud: Cloud, repo: Repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The working squals file's front_door edited after pr-1's commit (other parameters, never committed)
    does not leak into the front door pr-1's promotion creates: the stack has the commit's parameters."""
    world = _world(aws_cloud, repo, tmp_path, monkeypatch)
    world.repo.commit("v1")
    committed = world.squals.read_text()
    subnets = committed.split('Subnets: "')[1].split('"')[0]
    edited = ",".join(reversed(subnets.split(",")))  # parameters B: the same subnets, the other way round
    world.squals.write_text(committed.replace(subnets, edited))
    assert world.lifecycle().deploy(1, "HEAD").ok
    world.recorder.clear()
    first = world.lifecycle().promote(1)
    assert first.ok, first.message
    (sent,) = world.recorder.asked("cloudformation:CreateStack")
    stack = world.cloud.cfn.describe_stacks(StackName="squals-tiny-front-door")["Stacks"][0]
    recorded = {p["ParameterKey"]: p["ParameterValue"] for p in stack["Parameters"]}
    asked = {p["ParameterKey"]: p["ParameterValue"] for p in sent["Parameters"]}
    assert sent["StackName"] == "squals-tiny-front-door"
    assert asked["Subnets"] == subnets != edited
    assert re.findall(r"subnet-\w+", recorded["Subnets"]) == subnets.split(",")  # moto keeps the list's repr
    assert recorded["VpcId"] == asked["VpcId"]


def test_without_a_front_door_in_the_commit_promote_refuses_and_records_nothing(
    aws_cloud: Cloud, repo: Repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pr-1's commit declares no front door; the working file does (never committed): the promotion is
    refused in one line naming the commit's file, and nothing is created or recorded."""
    world = _world(aws_cloud, repo, tmp_path, monkeypatch, door=False)
    sha = world.repo.commit("v1")
    committed = world.squals.read_text()
    declared = "  front_door: {template: infra/front-door.yml}\napp:\n"
    world.squals.write_text(committed.replace("app:\n", declared))  # never committed
    assert world.lifecycle().deploy(1, "HEAD").ok
    before = world.lifecycle().fleet()
    world.recorder.clear()
    with pytest.raises(DealerError) as raised:
        world.lifecycle().promote(1)
    assert raised.value.one_line() == (
        f"squals.yml:4:3 in commit {sha[:12]}: provider kind aws has no front door, so no traffic can move: "
        "declare provider.front_door (template: infra/front-door.yml, or listener_arn: arn:...); "
        "nothing was changed"
    )
    assert world.recorder.mutating() == []
    assert [s.split()[0] for s in world.cloud.stacks()] == ["squals-tiny-pr-1"]
    assert world.lifecycle().fleet() == before


def test_a_deploy_holds_the_island_to_the_front_door_of_its_commit_not_the_working_files(
    aws_cloud: Cloud, repo: Repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The deployed commit declares a front door and its island template lacks ``TargetGroupArn``; the working
    squals file (never committed) declares no front door: the deploy is refused in one line naming the
    template, the commit and the missing output, before any stack is created."""
    world = _world(aws_cloud, repo, tmp_path, monkeypatch)
    (world.repo.path / "infra" / "island.yml").write_text(ISLAND_WITHOUT_GROUP_OUTPUT)
    sha = world.repo.commit("v1")
    committed = world.squals.read_text()
    world.squals.write_text(re.sub(r"  front_door:\n(    .*\n)+", "", committed))  # never committed
    assert "front_door" not in world.squals.read_text()
    world.recorder.clear()
    deploy = world.lifecycle().deploy(1, "HEAD")
    assert not deploy.ok
    line = ISLAND_WITHOUT_GROUP_OUTPUT.splitlines().index("Outputs:") + 1
    assert deploy.message == (
        f"provisioning failed: infra/island.yml:{line + 1}:3 in commit {sha[:12]}: expected an output named "
        "'TargetGroupArn': the front door forwards to it"
    )
    assert world.recorder.mutating() == [] and world.cloud.stacks() == []


def test_a_deploy_without_a_front_door_in_its_commit_needs_no_target_group_output(
    aws_cloud: Cloud, repo: Repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reverse: the deployed commit declares no front door, so its island template need not output
    ``TargetGroupArn``, whatever the working squals file (never committed) declares."""
    world = _world(aws_cloud, repo, tmp_path, monkeypatch, door=False)
    (world.repo.path / "infra" / "island.yml").write_text(ISLAND_WITHOUT_GROUP_OUTPUT)
    world.repo.commit("v1")
    committed = world.squals.read_text()
    declared = "  front_door: {template: infra/front-door.yml}\napp:\n"
    world.squals.write_text(committed.replace("app:\n", declared))  # never committed
    world.recorder.clear()
    deploy = world.lifecycle().deploy(1, "HEAD")
    assert deploy.ok, deploy.message
    assert world.recorder.mutating("cloudformation") == ["cloudformation:CreateStack"]
    assert [s.split()[0] for s in world.cloud.stacks()] == ["squals-tiny-pr-1"]


def test_the_front_door_is_in_the_region_of_the_promoted_commit_not_the_working_files(
    aws_cloud: Cloud, repo: Repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, moto_calls: MotoCalls
) -> None:
    """pr-1's commit says ``region: us-east-1``; the working squals file (never committed) says eu-west-1:
    pr-1's island and the front door its promotion creates, and every call about them, go to the commit's
    region (moto's recorder names the region each request was signed for)."""
    world = _world(aws_cloud, repo, tmp_path, monkeypatch)
    world.repo.commit("v1")
    committed = world.squals.read_text()
    world.squals.write_text(committed.replace(f"region: {REGION}", "region: eu-west-1"))
    assert "eu-west-1" in world.squals.read_text()
    assert world.lifecycle().deploy(1, "HEAD").ok
    first = world.lifecycle().promote(1)
    assert first.ok, first.message
    sent = moto_calls.located()
    assert ("CreateStack", REGION) in sent and ("ModifyListener", REGION) in sent
    assert {region for _, region in sent} == {REGION}, [c for c in sent if c[1] != REGION]
    stacks = sorted(s.split()[0] for s in world.cloud.stacks())
    assert stacks == ["squals-tiny-front-door", "squals-tiny-pr-1"]
    assert world.recorder.read_back == [{"pr-1": 999}]


def _blue_with_a_target(world: World) -> str:
    """pr-1 is prod, pr-2 deployed with one target registered in its group; the group's ARN."""
    first_prod_and_a_candidate(world)
    group = world.target_group("pr-2")
    elbv2 = aws_client("elbv2", world.cloud.endpoint)
    elbv2.register_targets(TargetGroupArn=group, Targets=[{"Id": "10.50.0.10", "Port": 80}])
    world.recorder.clear()
    return group


def _targets(world: World, group: str) -> list[str]:
    elbv2 = aws_client("elbv2", world.cloud.endpoint)
    found = elbv2.describe_target_health(TargetGroupArn=group)["TargetHealthDescriptions"]
    return [d["Target"]["Id"] for d in found]


@pytest.mark.slow
def test_kill_deregisters_blues_targets_for_the_drill_and_registers_them_again(
    aws_cloud: Cloud, repo: Repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chaos = "  blue_share: 10%\n  chaos: [{kind: kill, duration: 1s, expect: survive}]\n"
    world = _world(aws_cloud, repo, tmp_path, monkeypatch, rollout=chaos)
    group = _blue_with_a_target(world)
    world.served("pr-2", 100)  # what CloudWatch shows for BLUE: no 5xx, so the drill is survived
    out = world.lifecycle().promote(2)
    assert out.ok, out.message
    assert out.message.endswith("chaos tests passed: kill")
    (drill,) = [c for c in out.checks if c.kind == "chaos"]
    assert drill.ok and "deregistered 1 target(s) (10.50.0.10) from pr-2's target group" in drill.detail
    assert world.recorder.mutating("elbv2") == [
        "elbv2:ModifyTargetGroupAttributes",  # pr-2's group, first sight
        "elbv2:ModifyListener",  # pr-2 gets 10 %
        "elbv2:DeregisterTargets",  # the drill's kill
        "elbv2:RegisterTargets",  # the fault removed
        "elbv2:ModifyListener",  # after the bake: pr-2 takes everything
    ]
    assert "elbv2:DescribeTargetHealth" in world.recorder.calls
    assert world.recorder.read_back == [{"pr-1": 900, "pr-2": 100}, {"pr-1": 0, "pr-2": 999}]
    assert _targets(world, group) == ["10.50.0.10"]
    assert [h.event for h in world.lifecycle().store.history("pr-2")][:4] == [
        "hooks-ok",
        "complete",
        "bake-ok",
        "chaos",
    ]


@pytest.mark.slow
def test_kill_expected_back_to_green_but_survived_fails_the_promotion(
    aws_cloud: Cloud, repo: Repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chaos = "  blue_share: 10%\n  chaos: [{name: az-down, kind: kill, duration: 1s, expect: back-to-green}]\n"
    world = _world(aws_cloud, repo, tmp_path, monkeypatch, rollout=chaos)
    group = _blue_with_a_target(world)
    world.served("pr-2", 100)  # nothing in CloudWatch shows the kill: no watcher sees it
    out = world.lifecycle().promote(2)
    assert not out.ok
    assert out.message.startswith("chaos test az-down failed: kill -> survive, expected back-to-green")
    assert out.message.endswith("all traffic is back on GREEN pr-1")
    assert world.recorder.mutating("elbv2") == [
        "elbv2:ModifyTargetGroupAttributes",
        "elbv2:ModifyListener",
        "elbv2:DeregisterTargets",
        "elbv2:RegisterTargets",
        "elbv2:ModifyListener",
    ]
    assert world.recorder.read_back == [{"pr-1": 900, "pr-2": 100}, {"pr-1": 999}]
    assert _targets(world, group) == ["10.50.0.10"]  # registered again: kept for inspection as it was
    fleet = world.lifecycle().fleet()
    assert (fleet["pr-1"].share, fleet["pr-2"].status) == (100.0, Status.FAILED)
