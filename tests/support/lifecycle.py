"""Support of the lifecycle tests: a project in a real git repository (bare origin for the state branch), the
real local provider, the real Dealer daemon, and a load generator; the ``project`` fixture
fails a test that leaves an environment or the Dealer running.

The app answers ``/healthz`` and ``/`` with its ``VERSION`` (plain text) so a test can see which environment
served a request.
"""

from __future__ import annotations

import http.client
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from squals_action.dealer import dealer_status, stop_dealer
from squals_action.lifecycle.bake import BakeTick
from squals_action.lifecycle.engine import Lifecycle, Progress
from squals_action.lifecycle.traffic import DealerTraffic
from squals_action.manifest import model
from squals_action.providers import LocalProvider
from squals_action.state import open_store

#: The test app: every answer is its commit's ``VERSION``; with a ``DELAY`` file in its commit, every path but
#: ``/healthz`` answers after that many seconds (a slow commit for the load tests).
APP = r"""
import http.server, os, socketserver, time

DELAY = float(open("DELAY").read()) if os.path.exists("DELAY") else 0.0

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        if DELAY and self.path != "/healthz":
            time.sleep(DELAY)
        body = (open("VERSION").read().strip() + "\n").encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True

Server(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"""


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True, timeout=30
    ).stdout.strip()


@dataclass
class Project:
    """A git repository with one commit per version of the app, and a bare ``origin``."""

    path: Path
    commits: dict[str, str] = field(default_factory=dict)

    def commit_version(self, version: str) -> str:
        (self.path / "VERSION").write_text(version + "\n")
        git(self.path, "add", "-A")
        git(self.path, "commit", "-q", "-m", f"version {version}")
        sha = git(self.path, "rev-parse", "HEAD")
        self.commits[version] = sha
        return sha


def make_project(root: Path) -> Project:
    origin = root / "origin.git"
    path = root / "shop"
    path.mkdir(parents=True)
    git(root, "init", "-q", "--bare", str(origin))
    git(path, "init", "-q", "-b", "main")
    git(path, "remote", "add", "origin", str(origin))
    (path / "app.py").write_text(APP)
    (path / ".gitignore").write_text(".squals/\n")
    project = Project(path)
    project.commit_version("v1")
    git(path, "push", "-q", "origin", "main")
    project.commit_version("v2")
    project.commit_version("v3")
    return project


#: Each test's call-phase report, for a teardown to tell a test that failed from one that leaked.
CALL_REPORT = pytest.StashKey[pytest.TestReport]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.when == "call":
        item.stash[CALL_REPORT] = report
    return report


@pytest.fixture
def project(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Project]:
    """A project with v1..v3 committed; at the end everything it left running is stopped, and a test that
    passed must have stopped it itself. A test that failed before its own ``lc.down()`` is not charged
    with a leak too: that second error (in teardown) only hid the first."""
    project = make_project(tmp_path)
    yield project
    provider = LocalProvider(project.path)
    leftovers = provider.list()
    outcomes = provider.down()
    dealer_dir = project.path / ".squals" / "dealer"
    dealer_left = dealer_status(dealer_dir).state == "running"
    stop_dealer(dealer_dir)
    assert all(o.ok for o in outcomes), outcomes
    call = request.node.stash.get(CALL_REPORT, None)
    if call is None or not call.passed:
        return
    assert leftovers == (), f"environments left running: {[h.env for h in leftovers]}"
    assert not dealer_left, "the Dealer was left running"


def manifest(
    *,
    hooks: model.Hooks | None = None,
    exit_tests: tuple[model.Command, ...] = (),
    rollout: model.Rollout | None = None,
) -> model.Manifest:
    return model.Manifest(
        path="squals.yml",
        name="shop",
        app=model.App(start=f"{sys.executable} app.py", health="/healthz", health_timeout=30.0),
        hooks=hooks or model.Hooks(),
        exit_tests=exit_tests,
        rollout=rollout or model.Rollout(blue_share=50.0, bake=0.6, check_interval=0.2),
    )


def cmd(name: str, run: str, timeout: float = 30.0) -> model.Command:
    return model.Command(name=name, run=run, timeout=timeout)


class Recorder(Progress):
    """Keeps every progress line and bake tick, with monotonic times."""

    def __init__(self) -> None:
        self.lines: list[tuple[float, str]] = []
        self.ticks: list[tuple[float, BakeTick]] = []

    def step(self, text: str) -> None:
        self.lines.append((time.monotonic(), f"> {text}"))

    def done(self, text: str, ok: bool = True) -> None:
        self.lines.append((time.monotonic(), ("ok " if ok else "FAIL ") + text))

    def when(self, text: str) -> float:
        """When the first line containing ``text`` was shown."""
        return next(at for at, line in self.lines if text in line)

    def tick(self, tick: BakeTick) -> None:
        self.ticks.append((time.monotonic(), tick))


def lifecycle(project: Project, m: model.Manifest, progress: Progress | None = None) -> Lifecycle:
    return Lifecycle(
        repo=project.path,
        manifest=m,
        store=open_store(project.path),
        provider=LocalProvider(project.path),
        traffic=DealerTraffic(project.path / ".squals" / "dealer"),
        log_dir=project.path / ".squals" / "logs",
        progress=progress or Recorder(),
    )


def get(url: str, timeout: float = 5.0) -> tuple[int, str]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        conn.request("GET", "/")
        resp = conn.getresponse()
        return resp.status, resp.read().decode().strip()
    finally:
        conn.close()


class Load:
    """Steady, bounded GET traffic on loopback from a few threads; records every status (or exception)."""

    def __init__(self, url_of: Callable[[], str | None], threads: int = 3, pause: float = 0.005) -> None:
        self.url_of, self.pause = url_of, pause
        self.stop_event = threading.Event()
        self.results: list[int | str] = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self) -> None:
        while not self.stop_event.is_set():
            url = self.url_of()
            if url is None:
                time.sleep(0.01)
                continue
            try:
                status, _ = get(url)
                outcome: int | str = status
            except Exception as exc:
                outcome = f"{type(exc).__name__}: {exc}"
            with self.lock:
                self.results.append(outcome)
            time.sleep(self.pause)

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_event.set()
        for t in self.threads:
            t.join(timeout=10)

    def failures(self) -> list[int | str]:
        return [r for r in self.results if not (isinstance(r, int) and 200 <= r < 300)]
