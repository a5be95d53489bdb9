"""An experiment on AWS against moto's server: the variants' stacks behind the front door's listener with the
split's weights and stickiness on the unit's cookie, per-variant custom metrics written with
``put_metric_data`` between ticks, and each tick a fresh process on a fresh clone of a bare ``origin`` (all it
has is the state branch and AWS): "no data" continues and decides nothing; with data the winner's own stack
is promoted, the loser's deleted, the listener forwards to the winner."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from squals_action import aws_api
from squals_action.dealer import dealer_status
from squals_action.experiments.engine import from_lifecycle
from squals_action.experiments.interface import ExperimentError
from squals_action.experiments.spec import island_names
from squals_action.experiments.splitters import AlbSplit, new_split
from squals_action.github.events import Intent, IntentKind
from squals_action.github.interface import Request
from squals_action.github.pipeline import Pipeline
from squals_action.github.runner import Settings
from squals_action.lifecycle.project import ProjectOptions, open_project
from squals_action.manifest import load
from squals_action.providers.aws import AwsProvider
from squals_action.providers.aws_front_door import FrontDoorStack
from squals_action.providers.aws_template import stack_name
from squals_action.state import open_store, utc_now
from tests.support.alb import FRONT_DOOR_TEMPLATE, ISLAND_TEMPLATE, ISLAND_WITHOUT_GROUP_OUTPUT, Calls
from tests.support.aws import REGION, Cloud, MotoCalls, aws_client, cost_explorer_answers, cost_group
from tests.support.cloudwatch import CLOUDWATCH_EXPERIMENT, publish_green_wins, put_alb
from tests.support.experiments import state_log
from tests.support.lifecycle import git

SQUALS = """\
version: 1
name: shop
app: {{start: "true", health: /healthz, env: {{COLOR: {color}}}}}
provider:
  kind: aws
  region: us-east-1
  template: infra/island.yml
  parameters: {{AppBase: "{app}", VpcId: {vpc}}}
"""
#: Declared once, in the file that lists the variants (a variant file may not declare one).
FRONT_DOOR = "  front_door: {template: infra/front-door.yml}\n"


def _repository(tmp_path: Path) -> tuple[Path, Path]:
    """A repository with the front door's and the islands' templates (nothing committed), and a bare
    ``origin``."""
    origin, work = tmp_path / "origin.git", tmp_path / "shop"
    git(tmp_path, "init", "-q", "--bare", str(origin))
    work.mkdir()
    git(work, "init", "-q", "-b", "main")
    git(work, "remote", "add", "origin", str(origin))
    (work / "infra").mkdir()
    (work / "infra" / "front-door.yml").write_text(FRONT_DOOR_TEMPLATE)
    (work / "infra" / "island.yml").write_text(ISLAND_TEMPLATE)
    (work / "VERSION").write_text("one\n")
    return origin, work


def _shop(cloud: Cloud, tmp_path: Path, *, guardrail: bool = False) -> tuple[Path, Path, str]:
    """A repository whose front door exists (its VPC is the islands' parameter), pushed to a bare origin."""
    origin, work = _repository(tmp_path)
    (work / "squals.yml").write_text(
        SQUALS.format(color="grey", app=cloud.app.url, vpc="vpc-none") + FRONT_DOOR
    )
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "templates")
    manifest = load(work / "squals.yml", work)
    door = FrontDoorStack(AwsProvider(work, manifest.provider)).ensure(manifest, "HEAD")
    outputs = cloud.cfn.describe_stacks(StackName=door.stack_name)["Stacks"][0]["Outputs"]
    vpc = next(o["OutputValue"] for o in outputs if o["OutputKey"] == "VpcId")
    main = SQUALS.format(color="grey", app=cloud.app.url, vpc=vpc) + FRONT_DOOR + CLOUDWATCH_EXPERIMENT
    if guardrail:
        main += "  guardrails: [{metric: error_rate, max_increase: 1%}]\n"
    (work / "squals.yml").write_text(main)
    (work / "green.yml").write_text(SQUALS.format(color="green", app=cloud.app.url, vpc=vpc))
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "Checkout in green (#5)")
    git(work, "push", "-q", "origin", "main")
    cloud.app.repo = work
    return origin, work, door.listener_arn


def _tick_on_a_fresh_runner(origin: Path, tmp_path: Path, n: int) -> subprocess.CompletedProcess[str]:
    """``squals experiment tick`` in a new process on a new clone: nothing but the state branch and AWS."""
    clone = tmp_path / f"runner-{n}"
    git(tmp_path, "clone", "-q", "-b", "main", str(origin), str(clone))
    return subprocess.run(
        [sys.executable, "-m", "squals_action.cli", "experiment", "tick", "--format", "json"],
        cwd=clone,
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ),
        check=False,
    )


@pytest.fixture
def elbv2_calls(monkeypatch: pytest.MonkeyPatch) -> Calls:
    """Every ELBv2 operation squals' own clients send in this process (a botocore ``before-call`` hook)."""
    calls = Calls()
    real = aws_api.client

    def counted(service: str, region: str, **kwargs: Any) -> Any:
        made = real(service, region, **kwargs)
        return calls.attach(made) if service == "elbv2" else made

    monkeypatch.setattr(aws_api, "client", counted)
    return calls


def _listener(elbv2: Any, arn: str) -> dict[str, Any]:
    listener: dict[str, Any] = elbv2.describe_listeners(ListenerArns=[arn])["Listeners"][0]
    return listener


def _stacks(cloud: Cloud) -> set[str]:
    return {line.split()[0] for line in cloud.stacks()}


def _island_stacks(eid: str) -> dict[str, str]:
    """Each variant's stack, named after the experiment's own island (``squals-shop-exp-green-<tag>``)."""
    return {v: stack_name("shop", env) for v, env in island_names(eid, ("control", "green")).items()}


@pytest.mark.slow
def test_an_experiment_on_aws_needs_only_the_state_branch_and_aws(
    aws_cloud: Cloud, tmp_path: Path, elbv2_calls: Calls
) -> None:
    origin, work, listener_arn = _shop(aws_cloud, tmp_path)
    elbv2 = aws_client("elbv2", aws_cloud.endpoint)
    elbv2_calls.clear()

    # start: started 10 minutes ago, so CloudWatch has whole minutes since the start to read now
    engine = from_lifecycle(open_project(ProjectOptions(repo=work, gates=False)))
    engine.clock = lambda: utc_now() - timedelta(minutes=10)
    started = engine.start(pr=5)
    eid = started.experiment.id
    assert started.started and started.experiment.status == "running"
    stacks = _island_stacks(eid)
    assert _stacks(aws_cloud) == {"squals-shop-front-door", *stacks.values()}
    islands = started.experiment.extra["islands"]
    groups = {v: islands[v]["data"]["target_group_arn"] for v in ("control", "green")}
    # the app gets its variant (and the experiment) through the stack's SqualsAppEnv parameter
    for variant in ("control", "green"):
        stack = aws_cloud.cfn.describe_stacks(StackName=stacks[variant])["Stacks"][0]
        params = {p["ParameterKey"]: p["ParameterValue"] for p in stack["Parameters"]}
        app_env = json.loads(params["SqualsAppEnv"])
        assert (app_env["SQUALS_VARIANT"], app_env["SQUALS_EXPERIMENT"]) == (variant, eid)

    # one modify_listener: the split's weights, sticky on the unit's cookie (each group's attributes once)
    assert elbv2_calls.mutating == [
        "ModifyTargetGroupAttributes",
        "ModifyTargetGroupAttributes",
        "ModifyListener",
    ]
    forward = _listener(elbv2, listener_arn)["DefaultActions"][0]["ForwardConfig"]
    weights = {g["TargetGroupArn"]: g["Weight"] for g in forward["TargetGroups"]}
    assert weights == {groups["control"]: 600, groups["green"]: 400}
    assert forward["TargetGroupStickinessConfig"]["Enabled"] is True
    for arn in groups.values():
        found = elbv2.describe_target_group_attributes(TargetGroupArn=arn)["Attributes"]
        attributes = {a["Key"]: a["Value"] for a in found}
        assert attributes["stickiness.type"] == "app_cookie"
        assert attributes["stickiness.app_cookie.cookie_name"] == "shop_visitor"
    assert started.url == _listener_url(elbv2, listener_arn)
    engine.store.close()

    # a tick before any datum: no data, it continues and decides nothing
    first = _tick_on_a_fresh_runner(origin, tmp_path, 1)
    assert first.returncode == 0, first.stderr
    (outcome,) = json.loads(first.stdout)
    assert outcome["status"] == "running" and "no data" in outcome["message"], outcome
    with open_store(work) as store:
        doc = store.read().experiment(eid)
    assert doc is not None and doc.status == "running"
    assert doc.decision is not None and doc.decision["status"] == "continue"
    assert doc.observations["green"]["units"] == 0.0

    # the app publishes per variant: green converts 20 %, control 10 %
    publish_green_wins({variant: island["env"] for variant, island in islands.items()})

    second = _tick_on_a_fresh_runner(origin, tmp_path, 2)
    assert second.returncode == 0, second.stdout + second.stderr
    (outcome,) = json.loads(second.stdout)
    assert outcome["status"] == "decided" and outcome["promoted"] == "green", outcome

    with open_store(work) as store:
        state = store.read()
    doc = state.experiment(eid)
    assert doc is not None and doc.decision is not None and doc.decision["outcome"] == "promoted"
    assert doc.observations["green"]["units"] == 2000.0 and doc.observations["green"]["conversions"] == 400.0
    prod = state.environment("pr-5")
    assert prod is not None and prod.status == "prod"
    assert prod.handle is not None and prod.handle["data"]["stack_name"] == stacks["green"]
    # the winner's own stack is prod, the loser's is gone, the listener forwards to the winner only
    assert _stacks(aws_cloud) == {"squals-shop-front-door", stacks["green"]}
    forward = _listener(elbv2, listener_arn)["DefaultActions"][0]["ForwardConfig"]
    assert [(g["TargetGroupArn"], g["Weight"]) for g in forward["TargetGroups"]] == [(groups["green"], 999)]
    assert state_log(origin)[-1] == "experiment-promoted"
    for n in (1, 2):  # nothing of squals runs between ticks on AWS: no Dealer was started on a runner
        assert dealer_status(tmp_path / f"runner-{n}" / ".squals" / "dealer").state == "stopped"


def _listener_url(elbv2: Any, arn: str) -> str:
    balancer = _listener(elbv2, arn)["LoadBalancerArn"]
    dns = elbv2.describe_load_balancers(LoadBalancerArns=[balancer])["LoadBalancers"][0]["DNSName"]
    return f"http://{dns}"


def test_an_experiment_on_aws_without_a_front_door_is_refused_before_anything_starts(
    aws_cloud: Cloud, tmp_path: Path
) -> None:
    _, work, _ = _shop(aws_cloud, tmp_path)
    (work / "squals.yml").write_text((work / "squals.yml").read_text().replace(FRONT_DOOR, ""))
    git(work, "commit", "-qam", "no front door")
    engine = from_lifecycle(open_project(ProjectOptions(repo=work, gates=False)))
    with pytest.raises(ExperimentError) as refused:
        engine.start()
    line = refused.value.one_line()
    sha = git(work, "rev-parse", "HEAD")[:12]
    assert f"squals.yml:5:3 in commit {sha}: an experiment on aws needs provider.front_door" in line, line
    assert "\n" not in line
    assert _stacks(aws_cloud) == {"squals-shop-front-door"}  # no island was provisioned
    assert engine.store.read().experiments() == {}  # nothing claimed either
    engine.store.close()


def test_an_experiment_starts_on_the_front_door_its_start_commit_declares(
    aws_cloud: Cloud, tmp_path: Path
) -> None:
    """The front door an experiment's start creates is built from the front_door section of the start
    commit's squals file, not of the file the command was opened with (edited since, never committed)."""
    _, work = _repository(tmp_path)
    squals = work / "squals.yml"
    declared = "  front_door: {{template: infra/front-door.yml, parameters: {{CidrPrefix: '{}'}}}}\n"
    committed = SQUALS.format(color="grey", app=aws_cloud.app.url, vpc="vpc-none") + declared.format("10.40")
    squals.write_text(committed + CLOUDWATCH_EXPERIMENT)
    (work / "green.yml").write_text(SQUALS.format(color="green", app=aws_cloud.app.url, vpc="vpc-none"))
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "an experiment")
    started, sha = load(squals, work), git(work, "rev-parse", "HEAD")
    squals.write_text(committed.replace("10.40", "10.60") + CLOUDWATCH_EXPERIMENT)
    opened = load(squals, work)
    split = new_split(AwsProvider(work, opened.provider), started, sha, tmp_path / "dealer", lambda _: None)
    (stack,) = aws_cloud.cfn.describe_stacks(StackName="squals-shop-front-door")["Stacks"]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}
    assert {p["ParameterKey"]: p["ParameterValue"] for p in stack["Parameters"]} == {
        "SqualsProject": "shop",
        "CidrPrefix": "10.40",
    }
    assert isinstance(split, AlbSplit) and split.traffic.listener_arn == outputs["ListenerArn"]


def test_a_variant_is_held_to_the_front_door_of_the_start_commit_not_the_working_files(
    aws_cloud: Cloud, tmp_path: Path, moto_calls: MotoCalls
) -> None:
    """The start commit declares a front door and its island template has no ``TargetGroupArn``; the
    working squals file (never committed) declares none: the start is refused in one line naming the
    template, the missing output and the commit, before any stack is created or anything claimed."""
    _, work, _ = _shop(aws_cloud, tmp_path)
    (work / "infra" / "island.yml").write_text(ISLAND_WITHOUT_GROUP_OUTPUT)
    git(work, "commit", "-qam", "the island forgets its target group")
    sha = git(work, "rev-parse", "HEAD")
    squals = work / "squals.yml"
    squals.write_text(squals.read_text().replace(FRONT_DOOR, ""))
    assert "front_door" not in squals.read_text()
    engine = from_lifecycle(open_project(ProjectOptions(repo=work, gates=False)))
    before = len(moto_calls())

    with pytest.raises(ExperimentError) as refused:
        engine.start()
    line = ISLAND_WITHOUT_GROUP_OUTPUT.splitlines().index("Outputs:") + 2
    assert refused.value.one_line() == (
        f"experiment start refused: variant control: infra/island.yml:{line}:3 in commit {sha[:12]}: "
        "expected an output named 'TargetGroupArn': the front door forwards to it; nothing was started"
    )
    calls = moto_calls()[before:]
    assert all(c.startswith("Describe") for c in calls), calls
    assert _stacks(aws_cloud) == {"squals-shop-front-door"}
    assert engine.store.read().experiments() == {}
    engine.store.close()


def test_an_experiment_starts_in_the_region_and_on_the_front_door_of_its_start_commit(
    aws_cloud: Cloud, tmp_path: Path, moto_calls: MotoCalls
) -> None:
    """The reverse: the working squals file (never committed) says another region than the start commit,
    whose front door and island template are fine: the experiment starts, every island and every call in
    the start commit's region (before, its islands were refused: "expected the project's region")."""
    _, work, listener_arn = _shop(aws_cloud, tmp_path)
    squals = work / "squals.yml"
    squals.write_text(squals.read_text().replace(f"region: {REGION}", "region: eu-west-1"))
    assert "eu-west-1" in squals.read_text()
    engine = from_lifecycle(open_project(ProjectOptions(repo=work, gates=False)))
    before = len(moto_calls.located())

    started = engine.start()
    assert started.started and started.experiment.status == "running", started.message
    sent = moto_calls.located()[before:]
    assert ("CreateStack", REGION) in sent and ("ModifyListener", REGION) in sent
    assert {region for _, region in sent} == {REGION}, [c for c in sent if c[1] != REGION]
    assert _stacks(aws_cloud) == {"squals-shop-front-door", *_island_stacks(started.experiment.id).values()}
    elbv2 = aws_client("elbv2", aws_cloud.endpoint)
    forward = _listener(elbv2, listener_arn)["DefaultActions"][0]["ForwardConfig"]
    islands = started.experiment.extra["islands"]
    groups = {islands[v]["data"]["target_group_arn"]: v for v in ("control", "green")}
    assert {groups[g["TargetGroupArn"]]: g["Weight"] for g in forward["TargetGroups"]} == {
        "control": 600,
        "green": 400,
    }
    engine.store.close()


def _elsewhere(work: Path) -> None:
    """The working squals file (never committed) in another region than the start commit, without a front
    door: what every step after the start must not read."""
    squals = work / "squals.yml"
    squals.write_text(
        squals.read_text().replace(f"region: {REGION}", "region: eu-west-1").replace(FRONT_DOOR, "")
    )
    assert "eu-west-1" in squals.read_text() and "front_door" not in squals.read_text()


def test_a_start_that_died_is_stopped_in_the_region_of_its_start_commit(
    aws_cloud: Cloud, tmp_path: Path, moto_calls: MotoCalls
) -> None:
    """``squals experiment start`` is killed after both islands were made, before it recorded them; the
    working squals file says eu-west-1 (the commit us-east-1). A stop from a new engine finds the islands by
    name where the start commit's provider section made them (before: it looked in eu-west-1, found
    nothing, deleted nothing and said "stopped")."""
    _, work, _ = _shop(aws_cloud, tmp_path)
    (work / "scripts").mkdir()
    (work / "scripts" / "die.sh").write_text('#!/bin/sh\nkill -KILL "$SQUALS_TEST_PID"\n')
    (work / "scripts" / "die.sh").chmod(0o755)
    green = work / "green.yml"
    green.write_text(green.read_text() + "hooks:\n  after_preprod: [{name: die, run: ./scripts/die.sh}]\n")
    git(work, "add", "-A")
    git(work, "commit", "-qm", "green's hook kills the start")
    _elsewhere(work)
    scratch = tmp_path / "scratch"  # what the killed process leaves behind (its worktree of the commit)
    scratch.mkdir()
    died = subprocess.run(
        ["sh", "-c", 'SQUALS_TEST_PID=$$ exec "$0" -m squals_action.cli experiment start', sys.executable],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "SQUALS_TEST_PID": "", "TMPDIR": str(scratch)},
        check=False,
    )
    assert died.returncode == -9, died.stdout + died.stderr
    with open_store(work) as store:
        (doc,) = store.read().experiments().values()
    assert doc.status == "starting" and "islands" not in doc.extra
    assert _stacks(aws_cloud) == {"squals-shop-front-door", *_island_stacks(doc.id).values()}

    engine = from_lifecycle(open_project(ProjectOptions(repo=work, gates=False)))
    before = len(moto_calls.located())
    assert engine.stop(doc.id).status == "stopped"
    sent = moto_calls.located()[before:]
    assert ("DeleteStack", REGION) in sent
    assert {region for _, region in sent} == {REGION}, [c for c in sent if c[1] != REGION]
    assert _stacks(aws_cloud) == {"squals-shop-front-door"}
    engine.store.close()


def test_the_winner_is_promoted_on_the_front_door_of_its_start_commit(
    aws_cloud: Cloud, tmp_path: Path, moto_calls: MotoCalls
) -> None:
    """The working squals file says eu-west-1 and declares no front door, the start commit us-east-1 and
    its front door: a tick from a new engine promotes the winner there, every call in us-east-1 (before: the
    promotion was refused, "provider kind aws has no front door", and recorded promotion-failed)."""
    _, work, listener_arn = _shop(aws_cloud, tmp_path)
    _elsewhere(work)
    starter = from_lifecycle(open_project(ProjectOptions(repo=work, gates=False)))
    starter.clock = lambda: utc_now() - timedelta(minutes=10)  # CloudWatch has whole minutes to read
    started = starter.start(pr=5)
    assert started.started, started.message
    starter.store.close()
    islands = started.experiment.extra["island_names"]
    publish_green_wins(islands)

    engine = from_lifecycle(open_project(ProjectOptions(repo=work, gates=False)))
    before = len(moto_calls.located())
    (outcome,) = engine.tick()
    assert outcome.ok and outcome.promoted == "green", outcome.message
    sent = moto_calls.located()[before:]
    assert ("ModifyListener", REGION) in sent and ("DeleteStack", REGION) in sent
    assert {region for _, region in sent} == {REGION}, [c for c in sent if c[1] != REGION]
    assert _stacks(aws_cloud) == {"squals-shop-front-door", _island_stacks(started.experiment.id)["green"]}
    green = started.experiment.extra["islands"]["green"]["data"]["target_group_arn"]
    forward = _listener(aws_client("elbv2", aws_cloud.endpoint), listener_arn)["DefaultActions"][0]
    assert [(g["TargetGroupArn"], g["Weight"]) for g in forward["ForwardConfig"]["TargetGroups"]] == [
        (green, 999)
    ]
    prod = engine.store.read().environment("pr-5")
    assert prod is not None and prod.status == "prod"
    engine.store.close()


@pytest.mark.slow
def test_a_tick_of_the_action_measures_the_costs_where_the_start_commit_made_the_islands(
    aws_cloud: Cloud, tmp_path: Path, moto_calls: MotoCalls
) -> None:
    """The working squals file (never committed) says eu-west-1 and declares no front door, the start commit
    us-east-1 and its front door: the action's tick measures the running experiment's island costs with the
    start commit's provider section, every call in us-east-1, and each variant gets its figure (before:
    its stacks were listed in eu-west-1 and the front door's traffic was not read)."""
    _, work, _ = _shop(aws_cloud, tmp_path)
    _elsewhere(work)
    starter = from_lifecycle(open_project(ProjectOptions(repo=work, gates=False)))
    started = starter.start(pr=5)
    assert started.started
    starter.store.close()
    islands = started.experiment.extra["island_names"]
    groups = [cost_group(islands["control"], "", "3.00"), cost_group(islands["green"], "", "1.25")]
    cost_explorer_answers(aws_cloud.endpoint, groups)
    intent = Intent(IntentKind.EXPERIMENT_TICK, "schedule", reason="schedule", default_branch="main")
    before = len(moto_calls.located())

    report = Pipeline(Settings(workspace=work), {}).experiment_tick(Request(intent=intent, workspace=work))
    assert report.status == "success", report.headline
    sent = moto_calls.located()[before:]
    assert ("GetCostAndUsage", REGION) in sent and ("GetMetricData", REGION) in sent, sent
    assert {region for _, region in sent} == {REGION}, [c for c in sent if c[1] != REGION]
    ((_, table),) = report.sections  # its last column: each variant's island cost so far
    rows = [row.split(" | ") for row in table.splitlines() if row.startswith("| <code>")]
    assert {r[0].removeprefix("| <code>").removesuffix("</code>"): r[-1] for r in rows} == {
        "control": "3\\.00 USD |",
        "green": "1\\.25 USD |",
    }


def test_an_experiment_stopped_on_aws_gives_the_listener_back_and_deletes_its_stacks(
    aws_cloud: Cloud, tmp_path: Path, elbv2_calls: Calls
) -> None:
    _, work, listener_arn = _shop(aws_cloud, tmp_path)
    elbv2 = aws_client("elbv2", aws_cloud.endpoint)
    before = _listener(elbv2, listener_arn)["DefaultActions"]
    assert before[0]["Type"] == "fixed-response"  # what the front door answers before any island
    engine = from_lifecycle(open_project(ProjectOptions(repo=work, gates=False)))
    started = engine.start()
    assert _listener(elbv2, listener_arn)["DefaultActions"][0]["Type"] == "forward"

    elbv2_calls.clear()
    stopped = engine.stop(started.experiment.id, reason="wrong colour")
    assert stopped.status == "stopped"
    # the listener's routing from before the start, in one call, before the stacks went
    assert elbv2_calls.mutating == ["ModifyListener"]
    assert _listener(elbv2, listener_arn)["DefaultActions"] == before
    assert _stacks(aws_cloud) == {"squals-shop-front-door"}
    engine.store.close()


def test_a_guardrail_read_from_the_load_balancer_stops_the_experiment_on_aws(
    aws_cloud: Cloud, tmp_path: Path, elbv2_calls: Calls
) -> None:
    _, work, listener_arn = _shop(aws_cloud, tmp_path, guardrail=True)
    elbv2 = aws_client("elbv2", aws_cloud.endpoint)
    before = _listener(elbv2, listener_arn)["DefaultActions"]
    engine = from_lifecycle(open_project(ProjectOptions(repo=work, gates=False)))
    engine.clock = lambda: utc_now() - timedelta(minutes=10)
    started = engine.start()
    groups = {v: h["data"]["target_group_arn"] for v, h in started.experiment.extra["islands"].items()}
    # what the load balancer published: green answers 5xx to 10 % of its requests, control to none
    for variant, requests, errors in (("control", 1000, 0), ("green", 1000, 100)):
        put_alb(groups[variant], "RequestCount", requests, minutes_ago=5, listener_arn=listener_arn)
        put_alb(
            groups[variant], "HTTPCode_Target_5XX_Count", errors, minutes_ago=5, listener_arn=listener_arn
        )

    elbv2_calls.clear()
    engine.clock = utc_now
    (outcome,) = engine.tick()
    assert outcome.ok and outcome.status == "decided", outcome.message
    assert outcome.decision is not None and outcome.decision.status == "guardrail-stop"
    doc = engine.store.read().experiment(started.experiment.id)
    assert doc is not None and doc.decision is not None and doc.decision["outcome"] == "guardrail-stop"
    assert doc.observations["green"]["errors"] == 100.0 and doc.observations["green"]["activations"] == 1000.0
    # green got no more traffic at once (one call), then the listener got its routing back (one more)
    assert elbv2_calls.mutating == ["ModifyListener", "ModifyListener"]
    assert _listener(elbv2, listener_arn)["DefaultActions"] == before
    assert _stacks(aws_cloud) == {"squals-shop-front-door"}
    engine.store.close()


def test_a_variant_not_ready_on_aws_stops_the_start_before_the_listener_moves(
    aws_cloud: Cloud, tmp_path: Path, elbv2_calls: Calls
) -> None:
    """The variants' hooks run on their stacks as on the local provider (one start path); green's failing
    after_preprod hook stops the start: both stacks deleted, the listener never modified."""
    _, work, listener_arn = _shop(aws_cloud, tmp_path)
    marks = tmp_path / "marks"
    marks.mkdir()
    (work / "scripts").mkdir()
    for name, text in (
        ("mark.sh", '#!/bin/sh\necho "$SQUALS_URL" > "$MARKS/$SQUALS_ENV-$SQUALS_STAGE"\n'),
        ("fail.sh", "#!/bin/sh\nexit 4\n"),
    ):
        (work / "scripts" / name).write_text(text)
        (work / "scripts" / name).chmod(0o755)
    for file, script in (("squals.yml", "mark.sh"), ("green.yml", "fail.sh")):
        hook = f"{{name: check, run: ./scripts/{script}, env: {{MARKS: '{marks}'}}}}"
        (work / file).write_text((work / file).read_text() + f"hooks:\n  after_preprod: [{hook}]\n")
    git(work, "add", "-A")
    git(work, "commit", "-qm", "hooks")
    elbv2 = aws_client("elbv2", aws_cloud.endpoint)
    before = _listener(elbv2, listener_arn)["DefaultActions"]
    engine = from_lifecycle(open_project(ProjectOptions(repo=work, gates=False)))
    elbv2_calls.clear()

    with pytest.raises(ExperimentError) as refused:
        engine.start()
    line = refused.value.one_line()
    expected = (
        r"start failed: variant green: green\.yml:\d+:\d+ in commit [0-9a-f]{12}: after_preprod hook check "
        "failed: exit 4"
    )
    assert re.search(expected, line), line
    assert line.endswith("no traffic was routed and its islands were stopped"), line
    (doc,) = engine.store.read().experiments().values()
    control = doc.extra["island_names"]["control"]
    assert [p.name for p in marks.iterdir()] == [f"{control}-after_preprod"]  # control's hook, on its stack
    assert (marks / f"{control}-after_preprod").read_text().startswith("http")
    assert elbv2_calls.mutating == []  # neither stickiness nor the listener was touched
    assert _listener(elbv2, listener_arn)["DefaultActions"] == before
    assert _stacks(aws_cloud) == {"squals-shop-front-door"}
    assert doc.status == "failed" and "islands" not in doc.extra
    engine.store.close()
