"""AWS calls and wall time of each lifecycle operation on moto's server, through squals' own code paths.

Run: ``.venv/bin/python bench/aws.py [--steps "10%, 25%, 50%"]`` (about 2.5 minutes per bake step: the bake
waits for CloudWatch). It starts moto's server on 127.0.0.1 and a stand-in for the deployed app
(``tests.support.aws.StackApp``: each stack's ``Url`` answers from what CloudFormation holds), commits a
squals file with an island template and a front door (``tests.support.alb``) into a throw-away repository,
then runs the story the way the command line does (``open_project``, the lifecycle, the
experiment engine): front door, deploy, promote (each of its steps), a second promote, rollback, experiment
start and tick, teardown, down, front door deleted. Everything it started is stopped at the end.

One line per operation: its name, its mutating calls (count, then which), its total calls and its wall time
on moto. The calls are those moto's recorder saw with squals' user agent (every client squals builds carries
``squals`` in it), so the bench's own set-up and the stand-in app's look-ups are not counted. An operation the
code of this checkout does not do on AWS prints "not available" and why, never a figure.
"""

from __future__ import annotations

import argparse
import base64
import importlib.util
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from squals_action.lifecycle.engine import Lifecycle, Progress  # noqa: E402
from tests.support.alb import FRONT_DOOR_TEMPLATE, ISLAND_TEMPLATE, READ_PREFIXES, aws_client  # noqa: E402
from tests.support.aws import REGION, StackApp, free_port  # noqa: E402

if TYPE_CHECKING:
    from squals_action.providers.aws import AwsProvider

SQUALS_FILE = """\
version: 1
name: benchshop
provider:
  kind: aws
  region: {region}
  template: infra/island.yml
  parameters: {{AppBase: "{app}"{vpc}}}
  front_door: {{template: infra/front-door.yml}}
app:
  start: "true"
  health: /healthz
  health_timeout: 30s
{rollout}experiment:
  variants:
    control: {{squals: squals.yml}}
    green: {{squals: green.yml}}
  split: {{control: 50, green: 50}}
  objective: {{maximize: conversion, numerator: checkouts, denominator: units}}
  min_duration: {{time: 0s, activations: 0}}
  metrics:
    units:
      source: cloudwatch
      query: '["Shop", "Visitors", "Environment", "$environment", "Variant", "$variant"]'
    checkouts:
      source: cloudwatch
      query: '["Shop", "Checkout", "Environment", "$environment", "Variant", "$variant"]'
"""
#: The experiment's challenger: the same island (a variant file declares no front door).
VARIANT_FILE = """\
version: 1
name: benchshop-green
app: {{start: "true", health: /healthz, env: {{COLOR: green}}}}
provider:
  kind: aws
  region: {region}
  template: infra/island.yml
  parameters: {{AppBase: "{app}"{vpc}}}
{rollout}"""
#: Both files' rollout (the winner of an experiment is promoted with its own file's).
ROLLOUT = """\
rollout:
  steps: [{steps}]
  bake: 2s
  check_interval: 1s
  on_no_data: promote   # nobody sends moto's load balancer traffic: a bake can only see "no data"
"""


def post(url: str) -> None:
    urllib.request.urlopen(urllib.request.Request(url, method="POST", data=b""), timeout=10).close()


def operation(entry: dict[str, Any]) -> str:
    """The AWS operation of one recorded request: JSON protocols name it in ``X-Amz-Target``, the query
    protocol (CloudFormation, ELBv2, EC2) in the body's ``Action``, RPC v2 CBOR in the path."""
    headers = {k.lower(): v for k, v in entry["headers"].items()}
    if "x-amz-target" in headers:
        return str(headers["x-amz-target"]).rsplit(".", 1)[-1]
    body = entry.get("body") or ""
    if entry.get("body_encoded"):
        body = base64.b64decode(body).decode("utf-8", "replace")
    action = urllib.parse.parse_qs(body).get("Action")
    if action:
        return str(action[0])
    return urllib.parse.urlparse(entry["url"]).path.rstrip("/").rsplit("/", 1)[-1] or "?"


@dataclass
class Recorder:
    """moto's request recorder, read back as the operations squals' clients sent."""

    endpoint: str

    def squals_calls(self) -> list[str]:
        with urllib.request.urlopen(f"{self.endpoint}/moto-api/recorder/download-recording", timeout=30) as r:
            lines = r.read().decode().splitlines()
        entries = [json.loads(line) for line in lines if line]
        return [
            operation(e)
            for e in entries
            if "squals" in {k.lower(): v for k, v in e["headers"].items()}.get("user-agent", "")
        ]


@dataclass
class Row:
    name: str
    calls: list[str] = field(default_factory=list)
    seconds: float = 0.0
    missing: str | None = None

    def render(self) -> str:
        if self.missing is not None:
            return f"{self.name:<52} not available: {self.missing}"
        mutating = [c for c in self.calls if not c.startswith(READ_PREFIXES)]
        which = ", ".join(f"{op} x{n}" if n > 1 else op for op, n in Counter(mutating).items()) or "-"
        return f"{self.name:<52} {len(mutating):>3} {which:<46} {len(self.calls):>5} {self.seconds:>8.2f} s"


class Segments(Progress):
    """Splits one lifecycle operation at each step it announces (BLUE's share, each bake step, the switch):
    each step's calls and time become a row of their own."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder
        self.marks: list[tuple[str, float, int]] = []

    def step(self, text: str) -> None:
        self.marks.append((text, time.perf_counter(), len(self.recorder.squals_calls())))


@dataclass
class Bench:
    recorder: Recorder
    rows: list[Row] = field(default_factory=list)

    def measure(self, name: str, fn: Callable[[], object], progress: Segments | None = None) -> object:
        """Run ``fn`` once; one row, or one row per announced step when ``progress`` is given."""
        before = self.recorder.squals_calls()
        start = time.perf_counter()
        result = fn()
        end = time.perf_counter()
        calls = self.recorder.squals_calls()[len(before) :]
        if progress is None or not progress.marks:
            self.rows.append(Row(name, calls, end - start))
            return result
        # what happens before the first announced step (locks, BLUE's health, a tick's reading) is a row too
        marks = [("before its first step", start, len(before)), *progress.marks]
        ends = [(at, count) for _, at, count in marks[1:]] + [(end, len(before) + len(calls))]
        for (text, at, count), (until, upto) in zip(marks, ends, strict=True):
            segment = calls[count - len(before) : upto - len(before)]
            if segment or text != marks[0][0]:
                self.rows.append(Row(f"{name}: {text}", segment, until - at))
        return result

    def missing(self, name: str, why: str) -> None:
        self.rows.append(Row(name, missing=why))


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True, timeout=30
    ).stdout.strip()


def commit(repo: Path, app: str, vpc: str | None, steps: str) -> str:
    (repo / "infra").mkdir(exist_ok=True)
    (repo / "infra" / "front-door.yml").write_text(FRONT_DOOR_TEMPLATE)
    (repo / "infra" / "island.yml").write_text(ISLAND_TEMPLATE)
    extra = f", VpcId: {vpc}" if vpc else ""
    for name, text in (("squals.yml", SQUALS_FILE), ("green.yml", VARIANT_FILE)):
        rollout = ROLLOUT.format(steps=steps)
        (repo / name).write_text(text.format(region=REGION, app=app, vpc=extra, rollout=rollout))
    (repo / "VERSION").write_text(f"{time.time_ns()}\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "bench")
    return git(repo, "rev-parse", "HEAD")


@contextmanager
def moto_cloud(work: Path) -> Iterator[tuple[str, StackApp]]:
    """moto's server and the stand-in app on 127.0.0.1, reached as production reaches AWS (environment)."""
    from moto.moto_api import recorder
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one log line per request otherwise
    recorder._location = str(work / "moto-recording")
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    for name in [n for n in os.environ if n.startswith("AWS_")]:
        del os.environ[name]
    (work / "aws-config").write_text("")
    os.environ.update(
        {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": REGION,
            "AWS_CONFIG_FILE": str(work / "aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(work / "aws-config"),
            "AWS_EC2_METADATA_DISABLED": "true",
        }
    )
    app = StackApp(endpoint)
    try:
        post(f"{endpoint}/moto-api/recorder/reset-recording")
        post(f"{endpoint}/moto-api/recorder/start-recording")
        yield endpoint, app
    finally:
        app.stop()
        server.stop()


def open_lifecycle(repo: Path, progress: Progress | None = None) -> Lifecycle:
    """The lifecycle exactly as ``squals`` builds it for this repository (local state: no remote)."""
    from squals_action.lifecycle.project import ProjectOptions, open_project

    return open_project(ProjectOptions(repo=repo, remote="", gates=False), progress)


def aws_provider(lifecycle: Lifecycle) -> AwsProvider:
    from squals_action.providers.aws import AwsProvider

    assert isinstance(lifecycle.provider, AwsProvider), lifecycle.provider
    return lifecycle.provider


def routes_the_listener(lifecycle: Lifecycle) -> str | None:
    """None when this checkout's lifecycle routes an aws project through the front door's listener; else why
    not (then promote and rollback would move a local Dealer on this machine, not AWS)."""
    from squals_action.lifecycle.traffic import DealerTraffic

    if isinstance(lifecycle.traffic, DealerTraffic):
        return "the lifecycle routes aws projects through the local Dealer, not the front door's listener"
    return None


def experiments_on_aws() -> str | None:
    """None when this checkout's experiment engine splits on the front door's listener; else why not (it
    would start a local Dealer on this machine)."""
    if importlib.util.find_spec("squals_action.experiments.splitters") is None:
        return "the experiment engine has no ALB splitter (squals_action.experiments.splitters)"
    return None


class Failed(Exception):
    """An operation failed: the bench stops (it would measure another path than the one it names)."""


def checked(what: str, ok: bool, message: str) -> None:
    if not ok:
        raise Failed(f"{what} failed: {message}")


@dataclass
class Story:
    """The repository, its cloud and the rows measured so far."""

    repo: Path
    endpoint: str
    app: StackApp
    bench: Bench
    steps: str
    sha: str = ""

    def lifecycle(self, progress: Progress | None = None) -> Lifecycle:
        return open_lifecycle(self.repo, progress)

    def front_door(self) -> None:
        """Created explicitly first (the code the first switch runs), so the islands get its VPC."""
        from squals_action.providers.aws_front_door import FrontDoorStack

        self.sha = commit(self.repo, self.app.url, None, self.steps)
        first = self.lifecycle()
        door = FrontDoorStack(aws_provider(first))
        self.bench.measure("front door: create", lambda: door.ensure(first.manifest, self.sha))
        cfn = aws_client("cloudformation", self.endpoint)  # the bench's own look: not squals' user agent
        stack = cfn.describe_stacks(StackName=door.stack_name)["Stacks"][0]
        vpc = next(o["OutputValue"] for o in stack["Outputs"] if o["OutputKey"] == "VpcId")
        self.sha = commit(
            self.repo, self.app.url, vpc, self.steps
        )  # the islands' target groups live in its VPC

    def deploy(self, pr: int) -> None:
        def run() -> None:
            outcome = self.lifecycle().deploy(pr, self.sha)
            checked(f"deploy pr-{pr}", outcome.ok, outcome.message)

        self.bench.measure(f"deploy pr-{pr}", run)

    def promote(self, pr: int, why_not: str | None) -> None:
        label = f"promote pr-{pr}"
        if why_not is not None:
            self.bench.missing(label, why_not)
            return
        progress = Segments(self.bench.recorder)
        lifecycle = self.lifecycle(progress)

        def run() -> None:
            outcome = lifecycle.promote(pr)
            checked(label, outcome.ok, outcome.message)

        self.bench.measure(label, run, progress)

    def rollback(self, why_not: str | None) -> None:
        if why_not is not None:
            self.bench.missing("rollback", why_not)
            return

        def run() -> None:
            outcome = self.lifecycle().rollback()
            checked("rollback", outcome.ok, outcome.message)

        self.bench.measure("rollback", run)

    def experiment(self, pr: int, why_not: str | None) -> None:
        """Start (dated 10 minutes back, so CloudWatch has whole minutes since the start to read), a tick
        before any datum, the app's per-variant metrics written, a tick that promotes the winner."""
        names = ("experiment start", "experiment tick (no data)", "experiment tick (winner)")
        if why_not is not None:
            for name in names:
                self.bench.missing(name, why_not)
            return
        from squals_action.experiments.engine import from_lifecycle
        from squals_action.state import utc_now

        def engine(progress: Progress | None = None) -> Any:
            made = from_lifecycle(self.lifecycle(progress))
            made.clock = lambda: utc_now() - timedelta(minutes=10)
            return made

        def start() -> None:
            made = engine()
            try:
                checked(names[0], made.start(self.sha, pr=pr).started, "not started")
            finally:
                made.store.close()

        def tick(status: str, progress: Progress | None = None) -> None:
            made = engine(progress)
            try:
                (outcome,) = made.tick()
                checked(f"a tick ending {status}", outcome.status == status, outcome.message)
            finally:
                made.store.close()

        self.bench.measure(names[0], start)
        self.bench.measure(names[1], lambda: tick("running"))
        when = utc_now() - timedelta(minutes=5)
        cloudwatch = aws_client("cloudwatch", self.endpoint)  # what the app would emit, written by the bench
        for variant, visitors, checkouts in (("control", 3000, 300), ("green", 2000, 400)):
            dims = [{"Name": "Environment", "Value": f"exp-{variant}"}, {"Name": "Variant", "Value": variant}]
            data = [
                {"MetricName": name, "Dimensions": dims, "Value": value, "Timestamp": when}
                for name, value in (("Visitors", visitors), ("Checkout", checkouts))
            ]
            cloudwatch.put_metric_data(Namespace="Shop", MetricData=data)
        progress = Segments(self.bench.recorder)
        self.bench.measure(names[2], lambda: tick("decided", progress), progress)

    def finish(self) -> None:
        from squals_action.providers.aws_front_door import FrontDoorStack

        self.deploy(3)
        self.bench.measure("teardown pr-3", lambda: self.lifecycle().teardown(3))
        self.bench.measure("down", lambda: self.lifecycle().down())
        door = FrontDoorStack(aws_provider(self.lifecycle()))
        self.bench.measure("front door: delete", door.delete)


def run(work: Path, steps: str) -> tuple[list[Row], str | None]:
    """The rows measured, and why the story stopped early (None: it ran to the end)."""
    repo = work / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.email", "bench@example.com")
    git(repo, "config", "user.name", "bench")
    with moto_cloud(work) as (endpoint, app):
        app.repo = repo
        story = Story(repo, endpoint, app, Bench(Recorder(endpoint)), steps)
        try:
            story.front_door()
            story.deploy(1)
            wired = routes_the_listener(story.lifecycle())
            story.promote(1, wired)  # the first prod: 100 % at once, no bake
            story.deploy(2)
            story.promote(2, wired)  # each step and its bake, then 100 %
            story.rollback(wired)
            story.experiment(4, wired or experiments_on_aws())
            story.finish()
        except Failed as exc:
            return story.bench.rows, str(exc)
        return story.bench.rows, None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--steps",
        default="10%, 25%, 50%",
        help="rollout.steps of both squals files (each step's bake waits for CloudWatch: about 2.5 min)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="squals-bench-aws-") as tmp:
        started = time.perf_counter()
        rows, failed = run(Path(tmp), args.steps)
    print(f"{'operation':<52} {'mutating calls':<50} {'total':>5} {'wall':>10}")
    for row in rows:
        print(row.render())
    if failed is not None:
        print(f"stopped: {failed}")
    print(f"moto {REGION} on 127.0.0.1; whole run {time.perf_counter() - started:.1f} s")
    return 1 if failed is not None else 0


if __name__ == "__main__":
    sys.exit(main())
