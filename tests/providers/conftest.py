"""Provider test fixtures: a project repository per test, and guards that every test leaks nothing."""

from __future__ import annotations

import json
import os
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import awsfix
import pytest
from provfix import CONTRACT_SETUPS, ContractSetup, Repo, make_repo, port_closed

from squals_action.providers import PROVIDERS, LocalProvider, daemon

CONTRACT_SETUPS["aws"] = awsfix.aws_setup


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    return make_repo(tmp_path / "project")


@pytest.fixture
def spawned(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[daemon.ProcessRecord]]:
    """Every process group started through :func:`daemon.spawn` in this test; all must be gone at the end.

    Anything still alive is killed (so a failing test leaks nothing) and the test fails.
    """
    records: list[daemon.ProcessRecord] = []
    real_spawn = daemon.spawn

    def recording_spawn(*args: object, **kwargs: object) -> daemon.ProcessRecord:
        record = real_spawn(*args, **kwargs)  # type: ignore[arg-type]
        records.append(record)
        return record

    monkeypatch.setattr(daemon, "spawn", recording_spawn)
    yield records
    leaked = [r for r in records if daemon.members(r)]
    for record in leaked:
        daemon.terminate(record, grace=0.5)
    assert not leaked, f"processes left running: {leaked}"


@pytest.fixture
def local(repo: Repo, spawned: list[daemon.ProcessRecord]) -> Iterator[LocalProvider]:
    """A local provider for ``repo``; at the end ``down()`` must leave no process, port or worktree."""
    provider = LocalProvider(repo.path)
    yield provider
    handles = provider.list()
    outcomes = provider.down()
    assert all(o.ok for o in outcomes), outcomes
    assert provider.list() == ()
    assert repo.worktrees() == [str(repo.path)]
    for handle in handles:
        if "port" in handle.data:
            assert port_closed(int(handle.data["port"]))


@pytest.fixture(params=sorted(PROVIDERS))
def contract(
    request: pytest.FixtureRequest, repo: Repo, spawned: list[daemon.ProcessRecord]
) -> Iterator[ContractSetup]:
    kind: str = request.param
    if kind == "aws":
        request.getfixturevalue("aws_cloud")
    if kind not in CONTRACT_SETUPS:
        pytest.fail(f"provider {kind!r} is registered but tests/providers/provfix.py has no contract set-up")
    setup = CONTRACT_SETUPS[kind](repo, spawned)
    yield setup
    setup.provider.down()
    assert setup.leftovers() == []


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """moto in server mode on 127.0.0.1 (one per test session and xdist worker), stopped at the end."""
    from moto.server import ThreadedMotoServer

    port = awsfix.free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def aws_cloud(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[awsfix.Cloud]:
    """A fresh moto, reached the way production reaches AWS: ``AWS_ENDPOINT_URL``, fake credentials in the
    environment, no profile or config file of the user; and the stand-in app behind the stacks' URLs."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    (tmp_path / "aws-config").write_text("")
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_REGION", awsfix.REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    awsfix.reset_moto(moto_endpoint)
    app = awsfix.StackApp(moto_endpoint)
    cloud = awsfix.Cloud(moto_endpoint, app)
    awsfix.CURRENT.append(cloud)
    try:
        yield cloud
    finally:
        awsfix.CURRENT.remove(cloud)
        app.stop()


def post(url: str) -> None:
    urllib.request.urlopen(urllib.request.Request(url, method="POST", data=b""), timeout=10).close()


@pytest.fixture
def moto_calls(
    aws_cloud: awsfix.Cloud, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[], list[str]]]:
    """The operations moto's recorder saw from now on (its file goes to the test's folder)."""
    from moto.moto_api import recorder

    monkeypatch.setattr(recorder, "_location", str(tmp_path / "moto-recording"))
    post(f"{aws_cloud.endpoint}/moto-api/recorder/reset-recording")
    post(f"{aws_cloud.endpoint}/moto-api/recorder/start-recording")

    def operations() -> list[str]:
        with urllib.request.urlopen(
            f"{aws_cloud.endpoint}/moto-api/recorder/download-recording", timeout=10
        ) as answer:
            entries = [json.loads(line) for line in answer.read().decode().splitlines() if line]
        return [str(e["headers"].get("X-Amz-Target", "?")).rsplit(".", 1)[-1] for e in entries]

    try:
        yield operations
    finally:
        post(f"{aws_cloud.endpoint}/moto-api/recorder/stop-recording")


@pytest.fixture
def cw(aws_cloud: awsfix.Cloud) -> Any:
    """The test's own CloudWatch client (writes and set-up), reaching moto through AWS_ENDPOINT_URL."""
    import boto3

    return boto3.session.Session().client("cloudwatch", region_name=awsfix.REGION)
