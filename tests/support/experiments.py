"""Support of the experiment tests: a shop whose variant converts more, in a real git repository with a bare
``origin`` for the state branch, run by the real local provider behind the real Dealer daemon; the ``shop``
fixture stops every process it started, and fails if a test left any running.

The app answers ``/`` with its ``COLOR`` and, on every ``CONVERT_EVERY``-th request, the header
``X-Squals-Event: checkout`` (or ``$EVENT``, e.g. ``revenue=30`` for an event with a value), and echoes the
Dealer's ``X-Squals-Assignments`` as ``X-Seen-Assignments``; ``/boom`` answers 500 when ``FAIL_EVERY`` is set
(for guardrails).
"""

from __future__ import annotations

import contextlib
import http.client
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from squals_action.experiments.engine import ExperimentEngine
from squals_action.lifecycle.engine import Lifecycle
from squals_action.lifecycle.traffic import DealerTraffic
from squals_action.manifest import load
from squals_action.manifest.model import Manifest
from squals_action.providers import LocalProvider
from squals_action.state import StateStore, open_store
from tests.support.lifecycle import Load, git

APP = r"""
import http.server, itertools, os, socketserver, threading

counter = itertools.count(1)
lock = threading.Lock()
EVERY = int(os.environ.get("CONVERT_EVERY", "0"))
FAIL = int(os.environ.get("FAIL_EVERY", "0"))

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes: no delayed-ACK stall per request

    def do_GET(self):
        with lock:
            n = next(counter)
        body = (os.environ.get("COLOR", "none") + "\n").encode()
        failing = FAIL and self.path != "/healthz" and n % FAIL == 0
        self.send_response(500 if failing else 200)
        self.send_header("X-Seen-Assignments", self.headers.get("X-Squals-Assignments", ""))
        if EVERY and self.path != "/healthz" and n % EVERY == 0:
            self.send_header("X-Squals-Event", os.environ.get("EVENT", "checkout"))
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

SQUALS = """\
version: 1
name: shop
app:
  start: {python} app.py
  health: /healthz
  env: {{COLOR: grey, CONVERT_EVERY: "{control_every}"}}
rollout: {{blue_share: 50%, bake: 1s, check_interval: 0.2s}}
experiment:
  variants:
    control: {{squals: squals.yml}}
    green: {{squals: variants/green.yml}}
  split: {{control: 50, green: 50}}
  unit: cookie
  objective: {{maximize: conversion, numerator: "event:checkout", denominator: visitors}}
  guardrails: [{{metric: error_rate, max_increase: 1%}}]
  min_duration: {{time: 0s, activations: {activations}}}
  significance: {{alpha: 0.05, method: {method}}}
"""

VARIANT = """\
version: 1
name: shop-green
app:
  start: {python} app.py
  health: /healthz
  workdir: ..
  env: {{COLOR: green, CONVERT_EVERY: "{every}", FAIL_EVERY: "{fail}"}}
rollout: {{blue_share: 50%, bake: 1s, check_interval: 0.2s}}
"""


@dataclass
class Shop:
    path: Path
    origin: Path
    commit: str
    #: Islands a test expects to outlive it: a winner's own island (``exp-<variant>``), promoted to prod.
    kept: set[str] = field(default_factory=set)


def make_shop(
    root: Path,
    *,
    control_every: int = 10,
    green_every: int = 2,
    green_fail: int = 0,
    activations: int = 100,
    method: str = "sequential",
    control_extra: str = "",
    green_extra: str = "",
    scripts: Mapping[str, str] | None = None,
) -> Shop:
    """The shop, committed and pushed; ``*_extra`` is YAML appended to the squals file (control) or to
    ``variants/green.yml``, ``scripts`` are executable files committed under ``scripts/``."""
    origin = root / "origin.git"
    path = root / "shop"
    (path / "variants").mkdir(parents=True)
    git(root, "init", "-q", "--bare", str(origin))
    git(path, "init", "-q", "-b", "main")
    git(path, "remote", "add", "origin", str(origin))
    (path / "app.py").write_text(APP)
    (path / ".gitignore").write_text(".squals/\n")
    (path / "squals.yml").write_text(
        SQUALS.format(
            python=sys.executable, control_every=control_every, activations=activations, method=method
        )
    )
    (path / "squals.yml").write_text((path / "squals.yml").read_text() + control_extra)
    (path / "variants" / "green.yml").write_text(
        VARIANT.format(python=sys.executable, every=green_every, fail=green_fail) + green_extra
    )
    for name, text in (scripts or {}).items():
        script = path / "scripts" / name
        script.parent.mkdir(exist_ok=True)
        script.write_text(text)
        script.chmod(0o755)
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "shop with an experiment")
    git(path, "push", "-q", "origin", "main")
    return Shop(path, origin, git(path, "rev-parse", "HEAD"))


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[Shop]:
    shop = make_shop(tmp_path)
    yield shop
    leftovers, dealers = stop_everything(shop.path)
    # the promoted winner (its own island, or a pr-N) and the project's Dealer are the product of a test
    kept = [env for env in leftovers if env.startswith("pr-") or env in shop.kept]
    assert kept == leftovers, f"environments left running: {sorted(set(leftovers) - set(kept))}"
    assert dealers == [] or dealers == [str(shop.path / ".squals" / "dealer")], dealers


def squals_experiment(shop: Shop, *args: str) -> subprocess.CompletedProcess[str]:
    """``squals experiment ARGS`` as a user runs it in the shop (a subprocess; no GitHub run id)."""
    env = dict(os.environ, GITHUB_ACTOR="octocat")
    env.pop("GITHUB_RUN_ID", None)
    return subprocess.run(
        [sys.executable, "-m", "squals_action.cli", "experiment", *args],
        cwd=shop.path,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )


def experiment_engine(
    shop: Shop, store: StateStore | None = None, squals: str = "squals.yml"
) -> ExperimentEngine:
    """The experiment ``squals`` declares in this process: the real local provider, the state on ``origin``,
    and promotion (and the variants' readiness) through a lifecycle behind the project's own Dealer."""
    manifest = load(shop.path / squals, shop.path)
    the_store = store or open_store(shop.path)
    provider = LocalProvider(shop.path)

    @contextlib.contextmanager
    def promoter(m: Manifest) -> Iterator[Lifecycle]:
        yield project_lifecycle(shop, m, the_store, provider)

    return ExperimentEngine(
        repo=shop.path, manifest=manifest, store=the_store, provider=provider, promoter=promoter
    )


def project_lifecycle(
    shop: Shop, manifest: Manifest, store: StateStore, provider: LocalProvider
) -> Lifecycle:
    """The shop's lifecycle holding ``manifest``, behind the project's Dealer in ``.squals/dealer``."""
    return Lifecycle(
        repo=shop.path,
        manifest=manifest,
        store=store,
        provider=provider,
        traffic=DealerTraffic(shop.path / ".squals" / "dealer"),
        log_dir=shop.path / ".squals" / "logs",
    )


def green_wins_again(engine: ExperimentEngine, public: str, *, experiment_id: str, pr: int) -> None:
    """A later experiment whose green wins while prod already serves ``public``: its islands get visitors
    enough to decide, and its tick runs under traffic on ``public`` (the winner's bake needs visitors);
    green is promoted and no request fails."""
    started = engine.start(experiment_id=experiment_id, pr=pr)
    assert started.url
    visit(started.url, 160)
    with Load(lambda: public) as load:
        (won,) = engine.tick()
    assert won.promoted == "green", won.message
    assert load.results and load.failures() == [], Counter(load.failures())


def visit(url: str, count: int, path: str = "/") -> dict[str, int]:
    """``count`` new visitors (no cookie: each is a new unit), one request each; answers by body."""
    parts = urlsplit(url)
    seen: dict[str, int] = {}
    for _ in range(count):
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            body = resp.read().decode().strip()
            key = body if resp.status < 500 else f"{resp.status}"
            seen[key] = seen.get(key, 0) + 1
        finally:
            conn.close()
    return seen


def state_log(origin: Path, branch: str = "squals/state") -> list[str]:
    """The state branch's commit events, oldest first."""
    out = git(origin, "log", "--reverse", "--format=%(trailers:key=Squals-Event,valueonly)", branch)
    return [line.strip() for line in out.splitlines() if line.strip()]


def stop_everything(repo: Path) -> tuple[list[str], list[str]]:
    """Stop every environment and Dealer the tests may have started; return what was still running."""
    from squals_action.dealer import dealer_status, stop_dealer
    from squals_action.providers import LocalProvider

    provider = LocalProvider(repo)
    leftovers = [h.env for h in provider.list()]
    provider.down()
    dealers = [repo / ".squals" / "dealer", *sorted((repo / ".squals" / "experiments").glob("*/dealer"))]
    running = []
    for d in dealers:
        with contextlib.suppress(Exception):
            if dealer_status(d).state == "running":
                running.append(str(d))
            stop_dealer(d)
    return leftovers, running


def sticky_visits(url: str, count: int) -> set[str]:
    """One visitor coming back ``count`` times with the cookie the Dealer gave it: the bodies it saw."""
    parts = urlsplit(url)
    cookie = None
    bodies = set()
    for _ in range(count):
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
        try:
            conn.request("GET", "/", headers={"Cookie": cookie} if cookie else {})
            resp = conn.getresponse()
            bodies.add(resp.read().decode().strip())
            set_cookie = resp.getheader("Set-Cookie")
            if set_cookie and cookie is None:
                cookie = set_cookie.split(";", 1)[0]
        finally:
            conn.close()
    assert cookie is not None and cookie.startswith("squals_unit="), cookie
    return bodies
