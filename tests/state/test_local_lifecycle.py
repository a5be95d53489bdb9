"""The laptop case end to end: a repository with no remote at all runs ``squals deploy``, ``promote``,
``status``, ``history`` and ``down`` with its state on its own ``squals/state`` branch; ``--local-state``
keeps a clone's state off its origin."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.state import fingerprint, git

SQUALS = [sys.executable, "-m", "squals_action.cli"]

APP = r"""
import http.server, os

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"ok\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"""


def squals(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SQUALS, *args], cwd=repo, capture_output=True, text=True, timeout=120)


def make_project(path: Path) -> Path:
    git(path.parent, "init", "-q", "-b", "main", str(path))
    (path / "app.py").write_text(APP)
    (path / ".gitignore").write_text(".squals/\n")
    (path / "squals.yml").write_text(
        "version: 1\nname: shop\n"
        f"app: {{start: '{sys.executable} app.py', health: /healthz, health_timeout: 30s}}\n"
        "rollout: {bake: 1s, check_interval: 1s}\n"
    )
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "shop")
    return path


def checkout(repo: Path) -> dict[str, str]:
    """What the user sees of their checkout, but the lifecycle's own ignored ``.squals/`` directory."""
    prints = fingerprint(repo, except_branches=("squals/state",))
    return {name: value for name, value in prints.items() if not name.startswith(".squals/")}


def events(repo: Path) -> list[str]:
    log = git(repo, "log", "--format=%(trailers:key=Squals-Event,valueonly)", "squals/state")
    return [line for line in log.splitlines() if line.strip()]


@pytest.mark.slow
def test_deploy_promote_status_history_down_without_any_remote(tmp_path: Path) -> None:
    repo = make_project(tmp_path / "laptop")
    before = checkout(repo)
    try:
        deploy = squals(repo, "deploy", "--pr", "1", "--report", "none")
        assert deploy.returncode == 0, deploy.stderr
        promote = squals(repo, "promote", "--pr", "1", "--report", "none")
        assert promote.returncode == 0, promote.stderr
        assert "pr-1 is prod" in promote.stderr
        status = squals(repo, "status", "--format", "json")
        assert status.returncode == 0, status.stderr
        report = json.loads(status.stdout)
        assert report["remote"] is None and report["commit"] == git(repo, "rev-parse", "squals/state").strip()
        prod = next(e for e in report["environments"] if e["name"] == "pr-1")
        assert prod["status"] == "prod" and prod["traffic_share"] == 100.0
        history = squals(repo, "history", "pr-1", "--format", "json")
        assert history.returncode == 0, history.stderr
        assert {"deploy", "promote-start", "complete"} <= {e["event"] for e in json.loads(history.stdout)}
    finally:
        down = squals(repo, "down")
    assert down.returncode == 0, down.stderr
    trail = events(repo)
    assert trail[0] == "down" and trail[-1] == "lock" and "deploy" in trail and "complete" in trail
    assert len(trail) == int(git(repo, "rev-list", "--count", "squals/state"))  # one commit per transition
    assert git(repo, "remote").strip() == ""
    assert checkout(repo) == before


@pytest.mark.slow
def test_local_state_keeps_a_clones_state_off_its_origin(tmp_path: Path) -> None:
    repo = make_project(tmp_path / "work")
    origin = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", str(origin))
    git(repo, "remote", "add", "origin", str(origin))
    try:
        deploy = squals(repo, "deploy", "--pr", "2", "--report", "none", "--local-state")
        assert deploy.returncode == 0, deploy.stderr
        local = squals(repo, "status", "--local-state", "--format", "json")
        assert [e["name"] for e in json.loads(local.stdout)["environments"]] == ["pr-2"]
        remote = squals(repo, "status", "--format", "json")  # origin's state: nothing yet
        assert remote.returncode == 0 and json.loads(remote.stdout)["commit"] is None
        typo = squals(repo, "deploy", "--pr", "2", "--remote", "upstream")
        assert typo.returncode == 1 and "has no remote 'upstream' (it has: origin)" in typo.stderr
        assert len(typo.stderr.strip().splitlines()) == 1
    finally:
        down = squals(repo, "down", "--remote", "")
    assert down.returncode == 0, down.stderr
    assert events(repo)[0] == "down"
    assert git(origin, "for-each-ref").strip() == ""  # nothing was pushed
