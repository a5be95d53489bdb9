"""Support of the provider tests: a real git repository with a tiny HTTP app, guards that nothing leaks, and
the set-up of each registered kind for the contract test.

The app (``app.py``) answers ``/healthz`` and ``/`` with a JSON body naming its version (the ``VERSION`` file
of its commit), environment, working directory and the ``SQUALS_*``/``PORT``/``GREETING`` variables it got.
``APP_MODE`` picks a misbehaviour: ``sick`` (health answers 503 forever), ``crash`` (prints and exits 3),
``deaf`` (ignores SIGTERM), ``family`` (starts a grandchild in its process group), ``stranger`` (the same
with an emptied environment, so it cannot be proven ours once the app is gone). ``/shared`` reports what
each shared resource (``SQUALS_SHARED_*_URL``, served by ``shared_server.py``) says on connect.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from squals_action.manifest import model
from squals_action.providers import PROVIDERS, LocalProvider, Provider, daemon
from squals_action.providers.interface import DestroyOutcome, SharedHandle, SharedResources, SharedStatus

APP = r"""
import http.server, json, os, signal, socket, subprocess, sys, time

mode = os.environ.get("APP_MODE", "ok")
print(f"booting in mode {mode} on port {os.environ['PORT']}", flush=True)
if mode == "crash":
    print("boom: cannot open the database", flush=True)
    sys.exit(3)
if mode == "deaf":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
if mode in ("family", "stranger"):
    argv = [sys.executable, "-c", "import time; time.sleep(300)"]
    child = subprocess.Popen(argv if mode == "family" else ["env", "-i", *argv])
    open("child.pid", "w").write(str(child.pid))


def read_shared():
    # the first line each shared resource (a SQUALS_SHARED_*_URL of tcp://host:port) says on connect
    said = {}
    for key, url in sorted(os.environ.items()):
        if key.startswith("SQUALS_SHARED_"):
            host, _, port = url.split("//", 1)[1].rpartition(":")
            with socket.create_connection((host, int(port)), timeout=5) as conn:
                said[key] = {"url": url, "said": conn.makefile().readline().strip()}
    return said


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/healthz" and mode == "sick":
            self.send_response(503)
            self.end_headers()
            return
        if self.path == "/shared":
            self.reply(json.dumps(read_shared()).encode())
            return
        keys = ("PORT", "SQUALS_ENV", "SQUALS_COMMIT", "SQUALS_URL", "GREETING", "EXTRA")
        body = json.dumps({
            "version": open("VERSION").read().strip(),
            "cwd": os.getcwd(),
            "env": {k: os.environ.get(k) for k in keys},
        }).encode()
        self.reply(body)

    def reply(self, body):
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"""

START = f"exec {shlex.quote(sys.executable)} app.py"

#: A long-running shared resource: a TCP server on $PORT that greets every connection with its pid.
SHARED_SERVER = r"""
import os, socketserver
print(f"shared resource booting on port {os.environ['PORT']}", flush=True)

class Greet(socketserver.StreamRequestHandler):
    def handle(self):
        self.wfile.write(f"hello from {os.getpid()}\n".encode())

socketserver.ThreadingTCPServer(("127.0.0.1", int(os.environ["PORT"])), Greet).serve_forever()
"""


@dataclass
class Repo:
    """A throw-away project repository: ``commit(version)`` makes a commit whose app reports ``version``."""

    path: Path
    shas: dict[str, str] = field(default_factory=dict)

    def git(self, *args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(self.path), *args], capture_output=True, text=True, check=True, timeout=30
        ).stdout.strip()

    def commit(self, version: str) -> str:
        (self.path / "VERSION").write_text(version + "\n")
        self.git("add", "-A")
        self.git("commit", "-q", "-m", f"version {version}")
        sha = self.git("rev-parse", "HEAD")
        self.shas[version] = sha
        return sha

    def manifest(
        self,
        *,
        start: str = START,
        health: str = "/healthz",
        health_timeout: float = 10.0,
        env: dict[str, str] | None = None,
        environments: dict[str, model.EnvironmentOverride] | None = None,
        shared: dict[str, model.SharedResource] | None = None,
    ) -> model.Manifest:
        app = model.App(start=start, health=health, health_timeout=health_timeout, env=env or {})
        return model.Manifest(
            path=str(self.path / "squals.yml"),
            name="tiny",
            app=app,
            environments=environments or {},
            shared=shared or {},
        )

    def worktrees(self) -> list[str]:
        out = self.git("worktree", "list", "--porcelain")
        return [line.split(" ", 1)[1] for line in out.splitlines() if line.startswith("worktree ")]


def make_repo(path: Path) -> Repo:
    path.mkdir()
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True, timeout=30)
    (path / "app.py").write_text(APP)
    (path / "shared_server.py").write_text(SHARED_SERVER)
    (path / "squals.yml").write_text("version: 1\nname: tiny\napp: {start: python app.py}\n")
    result = Repo(path)
    result.commit("one")
    return result


def port_closed(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex(("127.0.0.1", port)) != 0


@dataclass
class ContractSetup:
    """How the contract test drives one provider kind, and how it checks that nothing is left."""

    provider: Provider
    manifest: Callable[..., model.Manifest]
    commit: str
    leftovers: Callable[[], list[str]]


def _local_setup(repo: Repo, spawned: list[daemon.ProcessRecord]) -> ContractSetup:
    provider = LocalProvider(repo.path)

    def leftovers() -> list[str]:
        found = [f"process group {r.pid}" for r in spawned if daemon.members(r)]
        found += [f"worktree {w}" for w in repo.worktrees() if w != str(repo.path)]
        found += [f"env folder {p}" for p in (provider.root / "envs").glob("*")]
        return found

    return ContractSetup(provider, repo.manifest, repo.shas["one"], leftovers)


#: One entry per registered kind; a provider added to PROVIDERS must add its set-up here.
CONTRACT_SETUPS: dict[str, Callable[[Repo, list[daemon.ProcessRecord]], ContractSetup]] = {
    "local": _local_setup,
}


def read_json(url: str) -> dict[str, object]:
    import urllib.request

    with urllib.request.urlopen(url, timeout=5) as response:
        loaded: dict[str, object] = json.loads(response.read())
        return loaded


def kill_quietly(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


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
        pytest.fail(f"provider {kind!r} is registered but tests.support CONTRACT_SETUPS has no set-up for it")
    setup = CONTRACT_SETUPS[kind](repo, spawned)
    yield setup
    setup.provider.down()
    assert setup.leftovers() == []


class NoShared(SharedResources):
    """The shared resources of a fake provider: none declared, none running."""

    def ensure(self, manifest: model.Manifest, commit: str) -> tuple[SharedHandle, ...]:
        return ()

    def running(self) -> tuple[SharedHandle, ...]:
        return ()

    def status(self, manifest: model.Manifest | None) -> tuple[SharedStatus, ...]:
        return ()

    def remove(self, names: Iterable[str] | None = None) -> tuple[DestroyOutcome, ...]:
        return ()
