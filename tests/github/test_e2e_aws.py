"""End to end on AWS through the action: ``squals-action`` as a subprocess on real webhook payloads, every
step a fresh clone and a fresh process (as an ephemeral runner), the state on a bare ``origin``, GitHub's API
on 127.0.0.1, AWS = moto's server; the calls moto recorded are asserted at each step.

The islands' ``Url`` is a public host (``shop.squals-e2e.example``): the processes reach it through an HTTP
proxy on 127.0.0.1 (the stand-in app), so no loopback address is ever an island's URL. CloudWatch's clocks
of the processes are moved by ``tests/support/e2e_clock`` (its docstring says how), as the in-process AWS
tests move them, so its one-minute delay costs no waiting.
"""

from __future__ import annotations

import base64
import json
import os
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from squals_action.experiments.spec import island_names
from squals_action.state import open_store
from tests.github.test_e2e import checkout, git, pr_event, run_action
from tests.support.alb import FRONT_DOOR_IN_VPC_TEMPLATE, ISLAND_TEMPLATE, READ_PREFIXES
from tests.support.aws import REGION, Cloud, aws_client, post
from tests.support.cloudwatch import CLOUDWATCH_EXPERIMENT, put_alb_history, put_custom
from tests.support.fake_github import FakeGitHub
from tests.support.github import REPO, event

PUBLIC = "http://shop.squals-e2e.example"
CLOCK = Path(__file__).resolve().parents[1] / "support" / "e2e_clock"

SQUALS = """\
version: 1
name: shop
app: {{start: served by the stack, health: /healthz, health_timeout: 20s}}
provider:
  kind: aws
  region: us-east-1
  template: infra/island.yml
  parameters: {{AppBase: "{public}", VpcId: {vpc}}}
{front_door}rollout:
  blue_share: 10%
  bake: 1s
  check_interval: 0.5s
  kpis: [{{metric: error_rate, max: 1%}}]
"""


def aws_operations(endpoint: str) -> list[tuple[str, dict[str, list[str]]]]:
    """What moto's recorder saw since its last reset: ``service:Operation`` (query, JSON and CBOR protocols
    alike: the action, the X-Amz-Target header or the URL's operation) and a query call's parameters."""
    with urllib.request.urlopen(f"{endpoint}/moto-api/recorder/download-recording", timeout=10) as answer:
        entries = [json.loads(line) for line in answer.read().decode().splitlines() if line]
    found = []
    for entry in entries:
        headers = {k.lower(): v for k, v in entry["headers"].items()}
        service = str(headers.get("authorization", "")).split("Credential=", 1)[-1].split("/")[3:4]
        url = urllib.parse.urlsplit(entry["url"])
        body = entry.get("body") or ""
        if entry.get("body_encoded"):
            body = base64.b64decode(body).decode("utf-8", "replace")
        params = {**urllib.parse.parse_qs(body), **urllib.parse.parse_qs(url.query)}
        if "x-amz-target" in headers:
            name = str(headers["x-amz-target"]).rsplit(".", 1)[-1]
        elif "/operation/" in url.path:
            name = url.path.rsplit("/", 1)[-1]
        else:
            name = params.get("Action", ["?"])[0]
        found.append((f"{service[0] if service else '?'}:{name}", params))
    return found


def listener_weights(recorded: list[tuple[str, dict[str, list[str]]]]) -> list[list[int]]:
    """The forward weights each recorded ModifyListener sent, in the order of its target groups."""
    return [
        [int(v[0]) for k, v in sorted(params.items()) if k.endswith(".Weight")]
        for name, params in recorded
        if name == "elasticloadbalancing:ModifyListener"
    ]


def mutating(calls: list[str]) -> list[str]:
    return [c for c in calls if not c.split(":", 1)[1].startswith(READ_PREFIXES)]


class Shop:
    """The repository, its AWS (VPC made by the team beforehand) and the runs of the action."""

    def __init__(self, cloud: Cloud, tmp: Path, fake: FakeGitHub) -> None:
        self.cloud, self.tmp, self.fake = cloud, tmp, fake
        self.origin, self.repo = tmp / "origin.git", tmp / "shop"
        self.runs = 0
        self.recorded: list[tuple[str, dict[str, list[str]]]] = []
        ec2 = aws_client("ec2", cloud.endpoint)
        self.vpc = ec2.create_vpc(CidrBlock="10.60.0.0/16")["Vpc"]["VpcId"]
        self.subnets = [
            ec2.create_subnet(VpcId=self.vpc, CidrBlock=f"10.60.{i}.0/24", AvailabilityZone=f"{REGION}{z}")[
                "Subnet"
            ]["SubnetId"]
            for i, z in enumerate("ab")
        ]
        self.elbv2 = aws_client("elbv2", cloud.endpoint)
        self.cloudwatch = aws_client("cloudwatch", cloud.endpoint)

    def squals(self, *, front_door: bool = True) -> str:
        """The project's squals file; a variant file's shares the front door of the file listing it."""
        door = (
            "  front_door:\n    template: infra/front-door.yml\n"
            f'    parameters: {{VpcId: {self.vpc}, Subnets: "{",".join(self.subnets)}"}}\n'
        )
        return SQUALS.format(public=PUBLIC, vpc=self.vpc, front_door=door if front_door else "")

    def run(self, name: str, payload: dict[str, Any], ref: str, **clock: str) -> tuple[list[str], str]:
        """One run on a fresh clone at ``ref``: the AWS calls it made and its log (the recording of its
        calls stays in :attr:`recorded`)."""
        self.runs += 1
        workspace = checkout(self.origin, self.tmp, f"run-{self.runs}", ref)
        post(f"{self.cloud.endpoint}/moto-api/recorder/reset-recording")
        env = {
            "SQUALS_ACTION_CONTAINER": "1",  # as the Docker action: nothing of the runner outlives the job
            "PYTHONPATH": os.pathsep.join([str(CLOCK), os.environ.get("PYTHONPATH", "")]),
            "SQUALS_E2E_BAKE_CLOCK": "1",
            "http_proxy": self.cloud.app.url,  # the public host of the islands is the stand-in app
            "no_proxy": "127.0.0.1,localhost",
            **clock,
        }
        code, log = run_action(workspace, self.tmp, self.fake, name, payload, str(100 + self.runs), env)
        assert code == 0, f"{name}: {log}"
        self.recorded = aws_operations(self.cloud.endpoint)
        return [name for name, _ in self.recorded], log

    def stacks(self) -> set[str]:
        return {line.split()[0] for line in self.cloud.stacks()}

    def output(self, stack: str, key: str) -> str:
        outputs = self.cloud.cfn.describe_stacks(StackName=stack)["Stacks"][0]["Outputs"]
        return str(next(o["OutputValue"] for o in outputs if o["OutputKey"] == key))

    def weights(self) -> dict[str, int]:
        """The listener's forward weights by stack (island), read back from moto."""
        listener = self.output("squals-shop-front-door", "ListenerArn")
        (action,) = self.elbv2.describe_listeners(ListenerArns=[listener])["Listeners"][0]["DefaultActions"]
        groups = {self.output(s, "TargetGroupArn"): s.removeprefix("squals-shop-") for s in self.islands()}
        return {groups[g["TargetGroupArn"]]: g["Weight"] for g in action["ForwardConfig"]["TargetGroups"]}

    def islands(self) -> list[str]:
        return sorted(s for s in self.stacks() if s != "squals-shop-front-door")

    def served(self, env: str, requests: int) -> None:
        """What the load balancer publishes for ``env``'s target group: ``requests`` a minute, no 5xx, these
        two hours (the bakes' moved windows fall in them)."""
        listener, group = (
            self.output("squals-shop-front-door", "ListenerArn"),
            self.output(f"squals-shop-{env}", "TargetGroupArn"),
        )
        put_alb_history(listener, group, {"RequestCount": requests})

    def public_get(self, url: str) -> bytes:
        """GET a public URL of the test through the stand-in app as proxy (no DNS, no network)."""
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": self.cloud.app.url}))
        with opener.open(url, timeout=10) as answer:
            body: bytes = answer.read()
            return body


@pytest.fixture
def shop(aws_cloud: Cloud, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Shop]:
    from moto.moto_api import recorder

    monkeypatch.setattr(recorder, "_location", str(tmp_path / "moto-recording"))
    with FakeGitHub(REPO, permissions={"Codertocat": "maintain"}) as fake:
        world = Shop(aws_cloud, tmp_path, fake)
        repo = world.repo
        git(tmp_path, "init", "-q", "--bare", "-b", "master", str(world.origin))
        repo.mkdir()
        git(repo, "init", "-q", "-b", "master")
        git(repo, "remote", "add", "origin", str(world.origin))
        (repo / "infra").mkdir()
        (repo / "infra" / "island.yml").write_text(ISLAND_TEMPLATE)
        (repo / "infra" / "front-door.yml").write_text(FRONT_DOOR_IN_VPC_TEMPLATE)
        (repo / "squals.yml").write_text(world.squals())
        (repo / "VERSION").write_text("v1\n")
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", "v1")
        git(repo, "push", "-q", "origin", "master")
        for branch, version in (("changes", "v2"), ("more", "v3")):
            git(repo, "checkout", "-q", "-b", branch, "master")
            (repo / "VERSION").write_text(f"{version}\n")
            git(repo, "commit", "-q", "-am", version)
            git(repo, "push", "-q", "origin", branch)
        git(repo, "checkout", "-q", "master")
        aws_cloud.app.repo = repo
        post(f"{aws_cloud.endpoint}/moto-api/recorder/start-recording")
        try:
            yield world
        finally:
            post(f"{aws_cloud.endpoint}/moto-api/recorder/stop-recording")


def _comment(shop: Shop, number: int) -> str:
    [body] = shop.fake.comment_bodies(number)
    return body


@pytest.mark.slow
def test_blue_green_rollback_and_an_experiment_on_aws_through_the_action(shop: Shop) -> None:
    repo = shop.repo
    v2, v3 = git(repo, "rev-parse", "changes"), git(repo, "rev-parse", "more")
    for number in (2, 3):
        shop.fake.pr_labels[number] = {"promote", "rollback"}

    # PR 2 opened: its own stack, its public URL in the comment
    calls, _ = shop.run("pull_request.opened", pr_event("pull_request.opened", 2, v2, "changes"), v2)
    assert mutating(calls) == ["cloudformation:CreateStack"]
    assert shop.stacks() == {"squals-shop-pr-2"}  # the front door comes with the first switch
    island = f"{PUBLIC}/stacks/squals-shop-pr-2"
    body = _comment(shop, 2)
    assert island in body and "127.0.0.1" not in body and "localhost" not in body
    assert json.loads(shop.public_get(island))["version"] == "v2"

    # promote PR 2: the front door is made, the listener forwards to pr-2 only (the first prod)
    promote2 = pr_event("pull_request.labeled-promote", 2, v2, "changes")
    calls, _ = shop.run("pull_request_target.labeled-promote", promote2, "master")
    assert mutating(calls) == [
        "cloudformation:CreateStack",  # the front door, on the first switch
        "elasticloadbalancing:ModifyTargetGroupAttributes",  # pr-2's group made sticky
        "elasticloadbalancing:ModifyListener",
    ]
    assert shop.weights() == {"pr-2": 999}
    assert "127.0.0.1" not in _comment(shop, 2)

    # PR 3 opened, then promoted: 10 % in one call (900/100), the bake reads CloudWatch, BLUE gets all
    shop.run("pull_request.opened", pr_event("pull_request.opened", 3, v3, "more"), v3)
    shop.served("pr-3", 100)
    promote3 = pr_event("pull_request.labeled-promote", 3, v3, "more")
    calls, _ = shop.run("pull_request_target.labeled-promote", promote3, "master")
    assert mutating(calls) == [
        "elasticloadbalancing:ModifyTargetGroupAttributes",  # pr-3's group made sticky
        "elasticloadbalancing:ModifyListener",
        "elasticloadbalancing:ModifyListener",
    ]
    assert sorted(map(sorted, listener_weights(shop.recorded))) == [[0, 999], [100, 900]]
    assert "monitoring:GetMetricData" in calls
    assert shop.weights() == {"pr-2": 0, "pr-3": 999}
    assert shop.stacks() == {"squals-shop-front-door", "squals-shop-pr-2", "squals-shop-pr-3"}  # pr-2 hot

    # rollback: exactly one mutating call, the listener back on pr-2
    rollback = pr_event("pull_request.labeled-rollback", 3, v3, "more")
    calls, _ = shop.run("pull_request_target.labeled-rollback", rollback, "master")
    assert mutating(calls) == ["elasticloadbalancing:ModifyListener"]
    assert shop.weights()["pr-2"] == 999 and shop.weights().get("pr-3", 0) == 0
    assert "pr-2 is prod again; pr-3 is postprod at 0 %" in _comment(shop, 3)

    # a merge to master declares the experiment: its push starts it (two variant stacks behind the listener)
    (repo / "squals.yml").write_text(shop.squals() + CLOUDWATCH_EXPERIMENT)
    (repo / "green.yml").write_text(shop.squals(front_door=False))
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "Checkout in green (#5)")
    git(repo, "push", "-q", "origin", "master")
    merged = git(repo, "rev-parse", "HEAD")
    push = event("push.default-branch")
    push.update(after=merged)
    calls, _ = shop.run("push", push, merged, SQUALS_E2E_START_AGO="600")
    assert mutating(calls).count("cloudformation:CreateStack") == 2
    assert mutating(calls)[-3:] == [
        "elasticloadbalancing:ModifyTargetGroupAttributes",
        "elasticloadbalancing:ModifyTargetGroupAttributes",
        "elasticloadbalancing:ModifyListener",
    ]
    islands = island_names(f"shop-{merged[:12]}", ("control", "green"))  # the experiment's own islands
    control, green = islands["control"], islands["green"]
    assert {f"squals-shop-{control}", f"squals-shop-{green}"} <= shop.stacks()
    assert shop.weights() == {control: 600, green: 400}

    # three scheduled ticks, each on a fresh clone with nothing but the state branch and AWS
    tick = event("schedule")
    calls, log = shop.run("schedule", tick, "master")
    assert "no data" in log and mutating(calls) == [], log
    for variant, shoppers, checkouts in (("control", 100, 10), ("green", 100, 12)):
        dims = {"Environment": islands[variant], "Variant": variant}
        put_custom("Shoppers", dims, shoppers, minutes_ago=6)
        put_custom("Checkouts", dims, checkouts, minutes_ago=5)
    calls, log = shop.run("schedule", tick, "master")
    assert "continue" in log or "running" in log, log
    assert mutating(calls) == [] and shop.weights() == {control: 600, green: 400}
    for variant, shoppers, checkouts in (("control", 3000, 300), ("green", 2000, 400)):
        dims = {"Environment": islands[variant], "Variant": variant}
        put_custom("Shoppers", dims, shoppers, minutes_ago=4)
        put_custom("Checkouts", dims, checkouts, minutes_ago=3)
    shop.served(green, 100)  # the winner's bake reads its target group
    calls, log = shop.run("schedule", tick, "master")
    assert f"green won and is prod (pr-5) on its own island {green}" in log, log
    # the winner's own island promoted through the normal bake (from prod pr-2: 10 %, then all), then the
    # loser's stack and the retired postprod's (pr-3) deleted; pr-2 is kept hot as postprod
    assert mutating(calls) == [
        "elasticloadbalancing:ModifyTargetGroupAttributes",
        "elasticloadbalancing:ModifyTargetGroupAttributes",
        "elasticloadbalancing:ModifyListener",
        "elasticloadbalancing:ModifyListener",
        "cloudformation:DeleteStack",
        "cloudformation:DeleteStack",
    ]
    assert [sorted(w) for w in listener_weights(shop.recorded)] == [[0, 100, 900], [0, 999]]
    assert "monitoring:GetMetricData" in calls  # the winner's bake read its target group
    assert shop.stacks() == {"squals-shop-front-door", f"squals-shop-{green}", "squals-shop-pr-2"}
    assert shop.weights() == {green: 999, "pr-2": 0}
    with open_store(checkout(shop.origin, shop.tmp, "after-ticks", "master")) as store:
        prod = store.read().environment("pr-5")
    assert prod is not None and prod.status == "prod"
    assert prod.handle is not None and prod.handle["data"]["stack_name"] == f"squals-shop-{green}"

    # PR 3 closed: its island went with the promotion, nothing is left to delete
    calls, _ = shop.run("pull_request.closed", pr_event("pull_request.closed", 3, v3, "more"), "master")
    assert mutating(calls) == []
    assert "127.0.0.1" not in _comment(shop, 3)
    # PR 4 opened and closed: its island is deleted, the front door, prod and postprod stay
    shop.run("pull_request.opened", pr_event("pull_request.opened", 4, v3, "more"), v3)
    assert "squals-shop-pr-4" in shop.stacks()
    calls, _ = shop.run("pull_request.closed", pr_event("pull_request.closed", 4, v3, "more"), "master")
    assert mutating(calls) == ["cloudformation:DeleteStack"]
    assert shop.stacks() == {"squals-shop-front-door", f"squals-shop-{green}", "squals-shop-pr-2"}
    assert "127.0.0.1" not in _comment(shop, 4)
