"""End to end: `squals-action` as a subprocess on real event payloads, GitHub served on 127.0.0.1 through
GITHUB_API_URL, a bare git repository as origin for the state branch, and the local provider.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from squals_action.providers import get_provider
from tests.support.action_files import declared_outputs, written_outputs
from tests.support.fake_github import FakeGitHub
from tests.support.github import REPO, event

ACTION = str(Path(sys.executable).parent / "squals-action")

APP = r"""
import http.server, os

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = open("VERSION").read().encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"""

SMOKE = """
import os, urllib.request
print(urllib.request.urlopen(os.environ["SQUALS_URL"], timeout=10).read().decode())
"""

SQUALS = f"""version: 1
name: hello
provider: {{kind: local}}
app:
  start: {sys.executable} app.py
  health: /healthz
  health_timeout: 20s
gates:
  test:
    - name: unit
      run: {sys.executable} -c "print('unit ok')"
      timeout: 1m
exit_tests:
  - name: smoke
    run: {sys.executable} smoke.py
    timeout: 1m
rollout:
  blue_share: 50%
  bake: 1s
  check_interval: 1s
"""


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True, timeout=30)
    return done.stdout.strip()


@pytest.fixture
def project(tmp_path: Path) -> Iterator[tuple[Path, Path, str]]:
    origin = tmp_path / "origin.git"
    repo = tmp_path / "hello"
    repo.mkdir()
    git(tmp_path, "init", "-q", "--bare", "-b", "master", str(origin))
    git(repo, "init", "-q", "-b", "master")
    git(repo, "remote", "add", "origin", str(origin))
    (repo / "app.py").write_text(APP)
    (repo / "smoke.py").write_text(SMOKE)
    (repo / "squals.yml").write_text(SQUALS)
    (repo / "VERSION").write_text("v1\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "v1")
    git(repo, "push", "-q", "origin", "master")
    git(repo, "checkout", "-q", "-b", "changes")
    (repo / "VERSION").write_text("v2\n")
    git(repo, "commit", "-q", "-am", "v2")
    git(repo, "push", "-q", "origin", "changes")
    head = git(repo, "rev-parse", "HEAD")
    try:
        yield repo, origin, head
    finally:
        down(repo, runner_temp(tmp_path) / "squals")


def runner_temp(tmp: Path) -> Path:
    """The runner's RUNNER_TEMP for the runs of one test: where the action keeps its own files."""
    return tmp / "runner-temp"


def down(repo: Path, scratch: Path) -> None:
    """Stop everything the runs started: environments and the Dealer (by the lifecycle's own `down`).

    Under GitHub Actions the action keeps the local provider's and the Dealer's directories in ``scratch``
    (``$RUNNER_TEMP/squals``), never in the workspace.
    """
    from squals_action.lifecycle.engine import Lifecycle
    from squals_action.lifecycle.traffic import DealerTraffic
    from squals_action.manifest import load
    from squals_action.state import open_store

    with open_store(repo) as store:
        Lifecycle(
            repo=repo,
            manifest=load(repo / "squals.yml", repo),
            store=store,
            provider=get_provider("local", repo, state_dir=scratch / "local"),
            traffic=DealerTraffic(scratch / "dealer"),
            log_dir=scratch / "logs",
        ).down()


def run_action(
    repo: Path, tmp: Path, fake: FakeGitHub, name: str, payload: dict[str, object], run_id: str
) -> tuple[int, str]:
    event_path = tmp / f"{name}.json"
    event_path.write_text(json.dumps(payload))
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("GITHUB_", "INPUT_", "RUNNER_"))
    }
    env.update(
        {
            "GITHUB_ACTIONS": "true",
            "GITHUB_EVENT_NAME": name.split(".")[0],
            "GITHUB_EVENT_PATH": str(event_path),
            "GITHUB_API_URL": fake.url,
            "GITHUB_SERVER_URL": "https://github.com",
            "GITHUB_REPOSITORY": REPO,
            "GITHUB_RUN_ID": run_id,
            "GITHUB_RUN_ATTEMPT": "1",
            "GITHUB_WORKSPACE": str(repo),
            "GITHUB_OUTPUT": str(tmp / "output"),
            "GITHUB_STEP_SUMMARY": str(tmp / "summary.md"),
            "RUNNER_TEMP": str(runner_temp(tmp)),
            "INPUT_GITHUB-TOKEN": "ghs_e2e_secret_token",
            "INPUT_SQUALS-FILES": "squals.yml",
            "INPUT_STATE-BRANCH": "squals/state",
            "INPUT_PROVIDER": "",
            "SQUALS_GITHUB_WRITE_INTERVAL": "0",
            "SQUALS_GITHUB_REQUEST_INTERVAL": "0",
            "SQUALS_GITHUB_TIMEOUT": "10",
        }
    )
    done = subprocess.run([ACTION], cwd=repo, env=env, capture_output=True, text=True, timeout=180)
    return done.returncode, done.stdout + done.stderr


def state_log(origin: Path) -> list[str]:
    return git(origin, "log", "--format=%s", "squals/state").splitlines()


def untracked(repo: Path) -> str:
    """What git sees in the workspace beyond its commits, ignored files included."""
    return git(repo, "status", "--porcelain", "--ignored", "--untracked-files=all")


@pytest.mark.slow
def test_open_promote_then_close_a_pr(project: tuple[Path, Path, str], tmp_path: Path) -> None:
    repo, origin, head = project
    opened = event("pull_request.opened")
    opened["pull_request"]["head"]["sha"] = head
    closed = event("pull_request.closed")
    closed["pull_request"]["head"]["sha"] = head

    clean = untracked(repo)
    with FakeGitHub(REPO, permissions={"Codertocat": "maintain"}) as fake:
        code, log = run_action(repo, tmp_path, fake, "pull_request.opened", opened, "42")
        assert code == 0, log
        assert untracked(repo) == clean  # nothing left in the workspace: logs and the rest in RUNNER_TEMP
        assert (runner_temp(tmp_path) / "squals" / "logs").is_dir()
        assert "::add-mask::ghs_e2e_secret_token" in log
        assert "ghs_e2e_secret_token" not in log.replace("::add-mask::ghs_e2e_secret_token", "")

        [body] = fake.comment_bodies(2)
        assert body.startswith("<!-- squals:comment -->")
        assert "| Validation | ✅ passed |" in body
        assert "| Gate test · unit | ✅ passed |" in body
        assert "| Exit test smoke | ✅ passed |" in body
        assert "<summary>Environments, hooks and tests</summary>" in body  # the lifecycle's own section
        assert "island, ready" in body
        [run] = fake.check_runs.values()
        assert (run["status"], run["conclusion"], run["head_sha"]) == ("completed", "success", head)
        assert fake.states("pr-2") == ["in_progress", "success"]
        [status] = [
            s for d in fake.deployments.values() for s in fake.statuses[d["id"]] if s["state"] == "success"
        ]
        url = status["environment_url"]
        assert url.startswith("http://127.0.0.1:")
        assert urllib.request.urlopen(url, timeout=10).read() == b"v2\n"
        assert status["log_url"] == f"https://github.com/{REPO}/actions/runs/42"
        assert set(fake.labels) == {"promote", "rollback"}
        outputs = (tmp_path / "output").read_text()
        assert "\nsuccess\n" in outputs and f"\n{url}\n" in outputs
        assert "| Gate test · unit |" in (tmp_path / "summary.md").read_text()
        deployed = state_log(origin)
        assert deployed and any("pr-2" in line for line in deployed)

        promote = event("pull_request_target.labeled-promote-by-readonly")
        promote["pull_request"]["head"]["sha"] = head
        promote["sender"] = opened["sender"]  # Codertocat, a maintainer here
        fake.pr_labels[2] = {"promote"}
        code, log = run_action(repo, tmp_path, fake, "pull_request_target.labeled-promote", promote, "44")
        assert code == 0, log
        assert untracked(repo) == clean
        [body] = fake.comment_bodies(2)
        assert "| Rollout |" in body and "| Gate test · unit | ✅ passed |" in body
        assert fake.states("prod") == ["in_progress", "success"]
        [prod] = [
            s
            for d in fake.deployments.values()
            if d["environment"] == "prod"
            for s in fake.statuses[d["id"]]
            if s["state"] == "success"
        ]
        assert urllib.request.urlopen(prod["environment_url"], timeout=10).read() == b"v2\n"
        assert ("DELETE", f"/repos/{REPO}/issues/2/labels/promote", None) in fake.requests
        assert fake.pr_labels[2] == set()
        promoted = state_log(origin)
        assert len(promoted) > len(deployed)

        code, log = run_action(repo, tmp_path, fake, "pull_request.closed", closed, "43")
        assert code == 0, log
        assert untracked(repo) == clean
        written = written_outputs(tmp_path / "output")  # three runs' outputs, `commit` among them
        assert set(written) <= declared_outputs() and "commit" in written, written
        assert written["commit"] == [head, head]  # the preview's island, then prod after the promotion
        [body] = fake.comment_bodies(2)  # edited in place, not a second comment
        assert "PR \\#2 closed: kept: " in body, body  # pr-2 serves prod now: kept, and the comment says so
        assert "| Gate test · unit | ✅ passed |" in body  # the gates of the last preview are kept
        assert "127.0.0.1" not in body.split("<!-- squals:data")[0]  # the island's URL is gone
        assert fake.states("pr-2")[-1] == "inactive"
        assert len(state_log(origin)) >= len(promoted)
        posts = [p for m, p, _ in fake.requests if m == "POST" and p.endswith("/comments")]
        assert len(posts) == 1


@pytest.mark.slow
def test_promote_while_another_pr_holds_prod(project: tuple[Path, Path, str], tmp_path: Path) -> None:
    from squals_action.state import open_store

    repo, origin, head = project
    with open_store(repo) as store:
        store.acquire_lock("prod", pr=7, run_id="77", actor="someone", ttl=600)
    locked_at = state_log(origin)
    promote = event("pull_request.labeled-promote")
    promote["pull_request"]["head"]["sha"] = head

    with FakeGitHub(REPO, permissions={"Codertocat": "write"}) as fake:
        fake.pr_labels[2] = {"promote"}
        for attempt_run in ("50", "51"):  # the losing run, then a retry of it
            code, log = run_action(repo, tmp_path, fake, "pull_request.labeled-promote", promote, attempt_run)
            assert code == 0, log
            fake.pr_labels[2] = {"promote"}
        [body] = fake.comment_bodies(2)  # one comment, not one per retry
        assert "locked by PR \\#7" in body
        assert "🔒" in body
        assert fake.deployments == {}  # waiting for the lock deployed nothing: no prod deployment
        assert "\nlocked\n" in (tmp_path / "output").read_text()
    assert state_log(origin) == locked_at  # nothing was changed


@pytest.mark.slow
def test_promote_of_a_pr_never_deployed_leaves_no_prod_deployment(
    project: tuple[Path, Path, str], tmp_path: Path
) -> None:
    repo, _, head = project
    command = event("issue_comment.created-promote")  # `/squals promote` on PR #1, which has no island
    pull = event("pull_request.opened")["pull_request"]
    pull["number"], pull["head"]["sha"] = 1, head

    with FakeGitHub(REPO, permissions={"Codertocat": "admin"}) as fake:
        fake.pulls[1] = pull
        code, log = run_action(repo, tmp_path, fake, "issue_comment.created-promote", command, "60")
        assert code == 1, log
        [body] = fake.comment_bodies(1)
        assert "pr-1 is absent: cannot promote-start \\(it was never deployed\\)" in body, body
        [check] = fake.check_runs.values()
        assert check["conclusion"] == "failure"
        assert fake.deployments == {}  # nothing was deployed, so nothing in the Deployments view
        assert not any(p.endswith("/deployments") for m, p, _ in fake.requests if m == "POST")
    assert written_outputs(tmp_path / "output")["status"] == ["failure"]
