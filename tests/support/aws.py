"""Support of the AWS provider tests: moto in server mode on 127.0.0.1, and a stand-in for the app a stack
would run.

boto3 reaches moto only through ``AWS_ENDPOINT_URL`` (as in production: the provider has no test hook).
The stand-in app (:class:`StackApp`) plays the service a real template would deploy: the test template's
``Url`` output is ``<AppBase>/stacks/<stack name>``, and the app answers there from what CloudFormation
knows about that stack: its parameters (``SqualsEnvironment``, ``SqualsCommit``, ``SqualsAppEnv``) and
outputs, and the ``VERSION`` file of the deployed commit. A deleted stack answers 404, so "the URL
answers" and "the URL is gone" are real HTTP observations.
"""

from __future__ import annotations

import functools
import json
import os
import re
import socket
import subprocess
import threading
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from squals_action.manifest import model
from squals_action.providers import daemon
from squals_action.providers.aws import AwsProvider
from tests.support.local_http import LocalServer, QuietHandler
from tests.support.providers import CONTRACT_SETUPS, ContractSetup, Repo

REGION = "us-east-1"

TEMPLATE = """\
AWSTemplateFormatVersion: "2010-09-09"
Description: one squals environment of the provider tests
Parameters:
  AppBase:
    Type: String
    Description: where the stand-in app answers (a server of the test on 127.0.0.1)
  SqualsProject:
    Type: String
  SqualsEnvironment:
    Type: String
  SqualsCommit:
    Type: String
  SqualsAppEnv:
    Type: String
    Default: "{}"
  Greeting:
    Type: String
    Default: ""
Resources:
  Inbox:
    Type: AWS::SQS::Queue
    Properties:
      Tags:
        - Key: commit
          Value: !Ref SqualsCommit
Outputs:
  Url:
    Description: the environment's URL
    Value: !Sub "${AppBase}/stacks/${AWS::StackName}"
  Queue:
    Value: !GetAtt Inbox.Arn
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def reset_moto(endpoint: str) -> None:
    """Forget every resource moto holds (its documented reset endpoint)."""
    request = urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST", data=b"")
    urllib.request.urlopen(request, timeout=10).close()


@functools.lru_cache(maxsize=32)
def aws_client(service: str, endpoint: str) -> Any:
    """The test's own client of ``service`` on moto, for its set-up and looks (its calls are not counted):
    one per service and endpoint, as clients are thread-safe and slow to build (botocore reads its JSON
    models again for each)."""
    import boto3

    return boto3.session.Session().client(
        service,
        region_name=REGION,
        endpoint_url=endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def put_alarm(
    cw: Any,
    name: str,
    *,
    state: str | None = None,
    reason: str = "set by the test",
    metric: str = "HTTPCode_Target_5XX_Count",
    namespace: str = "AWS/ApplicationELB",
    statistic: str = "Sum",
    threshold: float = 5,
    comparison: str = "GreaterThanThreshold",
) -> None:
    """A one-minute CloudWatch alarm on moto (an ALB 5xx count unless said otherwise), put in ``state``
    when one is given (moto's alarms start without evaluating)."""
    cw.put_metric_alarm(
        AlarmName=name,
        Namespace=namespace,
        MetricName=metric,
        Statistic=statistic,
        Period=60,
        EvaluationPeriods=1,
        Threshold=threshold,
        ComparisonOperator=comparison,
    )
    if state is not None:
        cw.set_alarm_state(AlarmName=name, StateValue=state, StateReason=reason)


def live_stacks(endpoint: str) -> list[str]:
    """Every stack moto holds that is not deleted, as ``name STATUS``."""
    stacks = aws_client("cloudformation", endpoint).describe_stacks()["Stacks"]
    return [f"{s['StackName']} {s['StackStatus']}" for s in stacks if s["StackStatus"] != "DELETE_COMPLETE"]


class StackApp(LocalServer):
    """The app behind every test stack's ``Url``: answers from the stack's parameters (see module doc)."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.repo: Path | None = None
        self.healthy = True
        self._lock = threading.Lock()
        self._cfn = aws_client("cloudformation", endpoint)
        app = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                # a proxy's request names the whole URL (the public host of tests/github/test_e2e_aws.py)
                path = urllib.parse.urlsplit(self.path).path
                parts = path.split("/", 3)  # "", "stacks", name, rest
                stack = app.stack(parts[2]) if len(parts) >= 3 and parts[1] == "stacks" else None
                if stack is None:
                    self._send(404, {"error": "no such stack"})
                    return
                if not app.healthy and path.endswith("/healthz"):
                    self._send(503, {"error": "sick"})
                    return
                self._send(200, app.body(stack))

            def _send(self, status: int, body: dict[str, Any]) -> None:
                self.reply(status, json.dumps(body).encode(), {"Content-Type": "application/json"})

        super().__init__(Handler)
        self.start()

    def stack(self, name: str) -> dict[str, Any] | None:
        with self._lock:
            try:
                stacks = self._cfn.describe_stacks(StackName=name)["Stacks"]
            except Exception:  # the stack does not exist: 404
                return None
        if not stacks or stacks[0]["StackStatus"] in ("DELETE_COMPLETE", "ROLLBACK_COMPLETE"):
            return None
        found: dict[str, Any] = stacks[0]
        return found

    def body(self, stack: dict[str, Any]) -> dict[str, Any]:
        params = {p["ParameterKey"]: p["ParameterValue"] for p in stack.get("Parameters", [])}
        outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
        app_env = json.loads(params.get("SqualsAppEnv", "{}"))
        commit = params.get("SqualsCommit", "")
        version = ""
        if self.repo is not None and commit:
            version = subprocess.run(
                ["git", "-C", str(self.repo), "show", f"{commit}:VERSION"],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            ).stdout.strip()
        return {
            "version": version,
            "stack": stack["StackName"],
            "env": {
                "PORT": None,
                "SQUALS_ENV": params.get("SqualsEnvironment"),
                "SQUALS_COMMIT": commit,
                "SQUALS_URL": outputs.get("Url"),
                "GREETING": app_env.get("GREETING"),
                "EXTRA": app_env.get("EXTRA"),
            },
            "shared": {k: v for k, v in app_env.items() if k.startswith("SQUALS_SHARED_")},
            "parameters": {k: v for k, v in params.items() if k.startswith("SqualsShared")},
        }


@dataclass
class Cloud:
    """One test's AWS: the moto endpoint, the stand-in app, and a CloudFormation client for assertions."""

    endpoint: str
    app: StackApp
    cfn: Any = field(init=False)

    def __post_init__(self) -> None:
        self.cfn = aws_client("cloudformation", self.endpoint)

    def stacks(self) -> list[str]:
        return live_stacks(self.endpoint)

    def config(self, template: str = "infra/stack.yml", **parameters: str) -> model.Provider:
        return model.Provider(
            kind="aws", template=template, parameters={"AppBase": self.app.url, **parameters}
        )

    def prepare(self, repo: Repo, template: str = TEMPLATE, path: str = "infra/stack.yml") -> str:
        """Commit ``template`` into ``repo`` (as version "one") and let the app read that repository."""
        target = repo.path / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(template)
        self.app.repo = repo.path
        return repo.commit("one")


#: The cloud of the running test (set by the ``aws_cloud`` fixture).
CURRENT: list[Cloud] = []


def aws_setup(repo: Repo, spawned: list[daemon.ProcessRecord]) -> ContractSetup:
    """The contract test's set-up for ``aws``: a template committed in the repository, moto behind it."""
    if not CURRENT:
        raise RuntimeError("the aws contract set-up needs the aws_cloud fixture")
    cloud = CURRENT[-1]
    commit = cloud.prepare(repo)
    provider = AwsProvider(repo.path, cloud.config())
    provider.wait_delay = 1

    def leftovers() -> list[str]:
        return cloud.stacks()

    manifest: Callable[..., model.Manifest] = repo.manifest
    return ContractSetup(provider, manifest, commit, leftovers)


CONTRACT_SETUPS["aws"] = aws_setup


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """moto in server mode on 127.0.0.1 (one per test session and xdist worker), stopped at the end."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def aws_cloud(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Cloud]:
    """A fresh moto, reached the way production reaches AWS: ``AWS_ENDPOINT_URL``, fake credentials in the
    environment, no profile or config file of the user; and the stand-in app behind the stacks' URLs."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    (tmp_path / "aws-config").write_text("")
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    reset_moto(moto_endpoint)
    app = StackApp(moto_endpoint)
    cloud = Cloud(moto_endpoint, app)
    CURRENT.append(cloud)
    try:
        yield cloud
    finally:
        CURRENT.remove(cloud)
        app.stop()


def post(url: str) -> None:
    urllib.request.urlopen(urllib.request.Request(url, method="POST", data=b""), timeout=10).close()


def _region(entry: dict[str, Any]) -> str:
    """The region a recorded request was signed for: the credential scope of its SigV4 ``Authorization``
    header (``Credential=<key>/<date>/<region>/<service>/aws4_request``)."""
    found = re.search(r"Credential=[^/]+/\d+/([^/]+)/", str(entry["headers"].get("Authorization", "")))
    return found.group(1) if found else "?"


def _query(entry: dict[str, Any]) -> dict[str, str]:
    """A recorded query-protocol request's parameters (CloudFormation, ELBv2), first value of each."""
    body = entry.get("body") or ""
    if entry.get("body_encoded"):
        import base64

        body = base64.b64decode(body).decode(errors="replace")
    return {k: v[0] for k, v in urllib.parse.parse_qs(str(body)).items()}


def _operation(entry: dict[str, Any]) -> str:
    """A recorded request's operation: the JSON protocol's ``X-Amz-Target``, else the query protocol's
    ``Action`` (CloudFormation, ELBv2)."""
    target = entry["headers"].get("X-Amz-Target")
    if target:
        return str(target).rsplit(".", 1)[-1]
    return _query(entry).get("Action", "?")


class MotoCalls:
    """What moto's recorder saw since the fixture started it: :meth:`__call__` the operations, in order;
    :meth:`located` each with the region it was sent to."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint

    def _entries(self) -> list[dict[str, Any]]:
        with urllib.request.urlopen(
            f"{self.endpoint}/moto-api/recorder/download-recording", timeout=10
        ) as answer:
            return [json.loads(line) for line in answer.read().decode().splitlines() if line]

    def __call__(self) -> list[str]:
        return [_operation(e) for e in self._entries()]

    def located(self) -> list[tuple[str, str]]:
        """``(operation, region)`` of every recorded request."""
        return [(_operation(e), _region(e)) for e in self._entries()]

    def stacks(self) -> list[tuple[str, str]]:
        """``(operation, StackName)`` of every recorded request naming a stack (a name or a stack id)."""
        return [(_operation(e), q["StackName"]) for e in self._entries() if "StackName" in (q := _query(e))]

    def parameters(self, operation: str) -> list[tuple[str, dict[str, str]]]:
        """``(StackName, {key: value})`` of every recorded ``operation`` (``CreateStack``, ``UpdateStack``)
        with the stack parameters it sent (``Parameters.member.N.ParameterKey``/``ParameterValue``)."""
        sent = []
        for entry in self._entries():
            query = _query(entry)
            if _operation(entry) != operation:
                continue
            keys = {k.split(".")[2]: v for k, v in query.items() if k.endswith(".ParameterKey")}
            values = {k.split(".")[2]: v for k, v in query.items() if k.endswith(".ParameterValue")}
            sent.append((query["StackName"], {keys[n]: values.get(n, "") for n in keys}))
        return sent


@pytest.fixture
def moto_calls(aws_cloud: Cloud, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[MotoCalls]:
    """The operations moto's recorder saw from now on (its file goes to the test's folder)."""
    from moto.moto_api import recorder

    monkeypatch.setattr(recorder, "_location", str(tmp_path / "moto-recording"))
    post(f"{aws_cloud.endpoint}/moto-api/recorder/reset-recording")
    post(f"{aws_cloud.endpoint}/moto-api/recorder/start-recording")
    try:
        yield MotoCalls(aws_cloud.endpoint)
    finally:
        post(f"{aws_cloud.endpoint}/moto-api/recorder/stop-recording")


@pytest.fixture
def cw(aws_cloud: Cloud) -> Any:
    """The test's own CloudWatch client (writes and set-up) on the test's moto."""
    return aws_client("cloudwatch", aws_cloud.endpoint)


def cost_group(environment: str, shared: str, amount: str) -> dict[str, object]:
    """One group of a Cost Explorer answer grouped by the squals tags (empty: untagged)."""
    return {
        "Keys": [f"squals:environment${environment}", f"squals:shared${shared}"],
        "Metrics": {"UnblendedCost": {"Amount": amount, "Unit": "USD"}},
    }


def cost_explorer_answers(endpoint: str, groups: list[dict[str, object]]) -> None:
    """What Cost Explorer answers next (moto tracks no cost: its API takes the answer to give)."""
    today = datetime.now(UTC).date()
    answer = {
        "ResultsByTime": [
            {
                "TimePeriod": {"Start": (today - timedelta(days=1)).isoformat(), "End": today.isoformat()},
                "Total": {},
                "Groups": groups,
                "Estimated": True,
            }
        ]
    }
    request = urllib.request.Request(
        f"{endpoint}/moto-api/static/ce/cost-and-usage-results",
        data=json.dumps({"results": [answer]}).encode(),
        method="POST",
    )
    urllib.request.urlopen(request, timeout=10).close()
