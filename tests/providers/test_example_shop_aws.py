"""examples/shop-aws, as a user copies it: both templates pass cfn-lint (its Python API, every rule, errors
and warnings), declare the outputs squals reads and take exactly the parameters the squals files give them;
the squals files validate; the app's own gates pass; the workflow asks for an OIDC token and the image it
builds has the files it copies."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from squals_action.experiments.spec import island_names
from squals_action.manifest import load
from squals_action.providers import aws_template
from squals_action.providers.aws_template import Template
from tests.support.alb import Calls
from tests.support.aws import Cloud, aws_client

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "shop-aws"
REGION = "us-east-1"
SHA = "c0ffee" * 6 + "c0ff"


@pytest.mark.parametrize("name", ["front-door.yml", "island.yml"])
def test_templates_pass_cfn_lint_without_errors_or_warnings(name: str) -> None:
    from cfnlint.api import ManualArgs, lint

    matches = lint((EXAMPLE / "infra" / name).read_text(), config=ManualArgs(regions=[REGION]))
    found = [f"{m.linenumber}:{m.columnnumber} {m.rule.id} {m.message}" for m in matches]
    assert not [f for f in found if f.split()[1][0] in "EW"], found


def _template(name: str, outputs: tuple[str, ...]) -> Template:
    body = (EXAMPLE / "infra" / name).read_text()
    return Template(f"infra/{name}", body, aws_template.lint_template(f"infra/{name}", body, REGION, outputs))


def test_the_front_door_gets_every_parameter_from_the_squals_file() -> None:
    manifest = load(EXAMPLE / "squals.yml", ROOT)
    door = manifest.provider.front_door
    assert door is not None and door.template == "infra/front-door.yml"
    template = _template("front-door.yml", (aws_template.LISTENER_OUTPUT, aws_template.URL_OUTPUT))
    values = aws_template.complete_parameters(
        template, door.parameters, {"SqualsProject": "shop"}, where="front door", manifest=manifest
    )
    assert values["SqualsProject"] == "shop"
    assert values["Subnets"].count("subnet-") == 2
    assert template.capabilities() == ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"]  # the execution role
    # the stop signal rollout.alarms names is the front door's alarm (moto's CloudFormation cannot make one)
    alarm = template.parsed["Resources"]["TargetErrorsAlarm"]["Properties"]["AlarmName"]
    assert [alarm["Fn::Sub"].replace("${SqualsProject}", values["SqualsProject"])] == list(
        manifest.rollout.alarms
    )


ISLANDS = island_names("shop-1", ("control", "green"))


@pytest.mark.parametrize(
    ("squals", "env", "priority"),
    [
        ("squals.yml", "pr-7", 7),
        ("squals.yml", ISLANDS["control"], aws_template.first_candidate(ISLANDS["control"])),
        ("variants/green.yml", ISLANDS["green"], aws_template.first_candidate(ISLANDS["green"])),
    ],
)
def test_each_island_gets_its_parameters_and_a_rule_priority_of_its_own(
    squals: str, env: str, priority: int
) -> None:
    manifest = load(EXAMPLE / squals, ROOT)
    assert manifest.provider.template is not None
    # a variant file's template is relative to that file: both name the same island template
    assert (
        Path(manifest.path).parent / manifest.provider.template
    ).resolve() == EXAMPLE / "infra" / "island.yml"
    outputs = (aws_template.URL_OUTPUT, aws_template.TARGET_GROUP_OUTPUT)
    template = _template("island.yml", outputs)
    app_env = {**manifest.app_env_for(env), "SQUALS_VARIANT": env.split("-")[1]}
    values = aws_template.stack_parameters(
        template, manifest.provider, manifest, env=env, sha=SHA, project="shop", app_env=app_env
    )
    assert values["SqualsEnvironment"] == env and values["SqualsCommit"] == SHA
    # squals fills it in (on AWS the first free one from there: squals_action/providers/aws_priority.py)
    assert values["SqualsRulePriority"] == str(priority)
    assert priority == 7 if env == "pr-7" else 40_000 < priority <= 50_000
    assert values["PreviewDomain"] == "preview.shop.example.com"
    assert template.capabilities() == []  # the roles live in the front door
    assert '"SQUALS_VARIANT"' in values["SqualsAppEnv"]


def _imports(node: Any) -> set[str]:
    """The names ``Fn::ImportValue: !Sub "squals-${SqualsProject}-front-door-<name>"`` imports, anywhere."""
    if isinstance(node, dict):
        found = set().union(*(_imports(v) for v in node.values())) if node else set()
        if "Fn::ImportValue" in node:
            found.add(str(node["Fn::ImportValue"]["Fn::Sub"]).split("-front-door-", 1)[1])
        return found
    if isinstance(node, list):
        return set().union(*(_imports(v) for v in node)) if node else set()
    return set()


def test_the_island_imports_only_what_the_front_door_exports() -> None:
    door = _template("front-door.yml", (aws_template.LISTENER_OUTPUT,)).parsed
    exported = {name for name, out in door["Outputs"].items() if "Export" in out}
    imported = _imports(_template("island.yml", (aws_template.URL_OUTPUT,)).parsed["Resources"])
    assert imported == {"VpcId", "ListenerArn", "ExecutionRoleArn", "Cluster", "Subnets", "TaskSecurityGroup"}
    assert imported <= exported, imported - exported


def test_squals_validate_passes_on_the_squals_files() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "squals_action.cli", "validate", "squals.yml", "variants/green.yml"],
        cwd=EXAMPLE,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 squals files valid" in done.stdout + done.stderr


def test_the_examples_own_gates_pass() -> None:
    manifest = load(EXAMPLE / "squals.yml", ROOT)
    for gate in (*manifest.gates.compile, *manifest.gates.test):
        done = subprocess.run(
            gate.run, shell=True, cwd=EXAMPLE, capture_output=True, text=True, timeout=180, check=False
        )
        assert done.returncode == 0, f"{gate.name}: {done.stdout}{done.stderr}"


def test_the_workflow_is_the_linted_example_plus_oidc_and_the_image() -> None:
    """(actionlint and zizmor run on it in tests/github/test_workflows.py)"""
    workflow: Any = yaml.safe_load((EXAMPLE / ".github" / "workflows" / "squals.yml").read_text())
    base: Any = yaml.safe_load((ROOT / "examples" / "workflows" / "squals.yml").read_text())
    job, base_job = workflow["jobs"]["squals"], base["jobs"]["squals"]
    assert workflow[True] == base[True]  # the events (YAML reads the key `on` as True)
    assert (job["if"], job["concurrency"]) == (base_job["if"], base_job["concurrency"])
    assert job["permissions"] == {**base_job["permissions"], "id-token": "write"}
    steps = job["steps"]
    assert steps[0] == base_job["steps"][0]  # the checkout
    uses = [str(step.get("uses", "")).split("@")[0] for step in steps]
    creds = steps[uses.index("aws-actions/configure-aws-credentials")]
    assert set(creds["with"]) == {"role-to-assume", "role-session-name", "aws-region"}  # no stored key
    assert uses.index("aws-actions/configure-aws-credentials") < uses.index("squals/action")
    squals = steps[uses.index("squals/action")]
    assert squals["uses"] == base_job["steps"][-2]["uses"]
    assert (ROOT / squals["with"]["squals-files"]).is_file()
    build = "\n".join(str(s.get("run", "")) for s in steps)
    assert "docker build -f examples/shop-aws/Dockerfile" in build
    for line in (EXAMPLE / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY "):
            source = line.split()[1]
            assert (ROOT / "examples" / source).is_file(), line


@pytest.mark.filterwarnings("ignore:Tried to parse AWS.{2}CloudWatch.{2}Alarm")  # moto skips it
def test_the_templates_build_on_moto_and_the_alb_dealer_routes_between_islands(
    aws_cloud: Cloud, tmp_path: Path
) -> None:
    """The front door made by squals' own FrontDoorStack from the example's squals file (the network swapped
    for moto's), then two islands from the island template with the parameters squals computes; the
    listener's preview rules, the target groups' delay, the ECS services, and one weighted route."""
    from squals_action.dealer.alb import AlbTraffic
    from squals_action.providers.aws import AwsProvider
    from squals_action.providers.aws_front_door import FrontDoorStack

    ec2, elbv2 = aws_client("ec2", aws_cloud.endpoint), aws_client("elbv2", aws_cloud.endpoint)
    vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.9.{i}.0/24", AvailabilityZone=f"{REGION}{z}")["Subnet"][
            "SubnetId"
        ]
        for i, z in enumerate("ab")
    ]
    repo = tmp_path / "repo"
    shutil.copytree(EXAMPLE, repo, ignore=shutil.ignore_patterns("__pycache__"))
    squals = (repo / "squals.yml").read_text()
    squals = squals.replace("vpc-0123456789abcdef0", vpc)
    squals = squals.replace("subnet-0123456789abcdef0,subnet-0fedcba9876543210", ",".join(subnets))
    squals = squals.replace("      HostedZoneId: Z0123456789ABCDEFGHIJ\n", "")  # no Route 53 zone on moto
    (repo / "squals.yml").write_text(squals)
    for args in (
        ["init", "-q"],
        ["add", "-A"],
        ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x"],
    ):
        subprocess.run(["git", "-C", str(repo), *args], check=True, timeout=30, capture_output=True)
    sha = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "HEAD"], check=True, timeout=30, capture_output=True, text=True
    ).stdout.strip()
    manifest = load(repo / "squals.yml", repo)
    provider = AwsProvider(repo, manifest.provider)
    provider.wait_delay = 1
    door = FrontDoorStack(provider).ensure(manifest, sha)
    assert door.url.startswith("http://") and door.stack_name == "squals-shop-front-door"

    template = _template("island.yml", (aws_template.URL_OUTPUT, aws_template.TARGET_GROUP_OUTPUT))
    groups: dict[str, str] = {}
    for file, env in (("squals.yml", "pr-7"), ("variants/green.yml", ISLANDS["green"])):
        island = load(repo / file, repo)
        values = aws_template.stack_parameters(
            template, island.provider, island, env=env, sha=sha, project="shop", app_env={}
        )
        name = aws_template.stack_name("shop", env)
        aws_cloud.cfn.create_stack(
            StackName=name,
            TemplateBody=template.body,
            Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in values.items()],
        )
        stack = aws_cloud.cfn.describe_stacks(StackName=name)["Stacks"][0]
        assert stack["StackStatus"] == "CREATE_COMPLETE", stack.get("StackStatusReason")
        outputs = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}
        assert outputs["Url"] == f"http://{env}.preview.shop.example.com"
        groups[env] = outputs["TargetGroupArn"]

    rules = elbv2.describe_rules(ListenerArn=door.listener_arn)["Rules"]
    previews = {
        r["Conditions"][0]["HostHeaderConfig"]["Values"][0]: (
            r["Priority"],
            r["Actions"][0]["TargetGroupArn"],
        )
        for r in rules
        if not r["IsDefault"]
    }
    assert previews == {
        "pr-7.preview.shop.example.com": ("7", groups["pr-7"]),
        f"{ISLANDS['green']}.preview.shop.example.com": (
            str(aws_template.first_candidate(ISLANDS["green"])),
            groups[ISLANDS["green"]],
        ),
    }
    # moto's CloudFormation leaves TargetGroupAttributes out (reads back 300): the declaration is checked
    (declared,) = template.parsed["Resources"]["TargetGroup"]["Properties"]["TargetGroupAttributes"]
    assert declared["Key"] == "deregistration_delay.timeout_seconds"
    assert template.parameters["DeregistrationDelay"]["Default"] == 10
    ecs = aws_client("ecs", aws_cloud.endpoint)
    (cluster,) = ecs.list_clusters()["clusterArns"]
    assert len(ecs.list_services(cluster=cluster)["serviceArns"]) == 2

    calls = Calls()
    traffic = AlbTraffic(door.listener_arn)
    calls.attach(traffic.elbv2)
    traffic.route(groups, {"pr-7": 90, ISLANDS["green"]: 10})
    assert calls.mutating.count("ModifyListener") == 1
    assert traffic.routing() == {"pr-7": 90.0, ISLANDS["green"]: 10.0}
