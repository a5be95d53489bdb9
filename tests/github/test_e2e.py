"""End to end: `squals-action` as a subprocess on real event payloads, GitHub served on 127.0.0.1 through
GITHUB_API_URL, a bare git repository as origin for the state branch (or served over git's smart HTTP on
127.0.0.1, checking the token), and the local provider.
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
from tests.support.git_http import GitHttpServer
from tests.support.github import REPO, event
from tests.support.lifecycle import Load

ACTION = str(Path(sys.executable).parent / "squals-action")
#: The `github-token` input of every run unless a test says otherwise.
TOKEN = "ghs_e2e_secret_token"

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
# the PR's code: the action's token must not reach it (issue 14, finding 11)
leaked = sorted(k for k in ("INPUT_GITHUB-TOKEN", "GITHUB_TOKEN") if k in os.environ)
assert not leaked, f"token in the exit test's environment: {leaked}"
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
    git(repo, "checkout", "-q", "-b", "more")  # a second PR's change, for the promotions in a row
    (repo / "VERSION").write_text("v3\n")
    git(repo, "commit", "-q", "-am", "v3")
    git(repo, "push", "-q", "origin", "more")
    git(repo, "checkout", "-q", "-b", "changes", "master")
    (repo / "VERSION").write_text("v2\n")
    git(repo, "commit", "-q", "-am", "v2")
    git(repo, "push", "-q", "origin", "changes")
    head = git(repo, "rev-parse", "HEAD")
    try:
        yield repo, origin, head
    finally:
        down(repo, runner_temp(tmp_path) / "squals")


@pytest.fixture
def served(project: tuple[Path, Path, str], tmp_path: Path) -> Iterator[GitHttpServer]:
    """The project's origin served over git's smart HTTP, which wants TOKEN (write) or `ghs_read` (read).

    The workspace keeps no credentials (`persist-credentials: false`): only the token the action is given
    can push. Afterwards origin is the bare repository again, so the fixture's `down` can read the state.
    """
    repo, origin, _ = project
    with GitHttpServer(origin.parent, {TOKEN: "write", "ghs_read": "read"}) as server:
        git(repo, "remote", "set-url", "origin", f"{server.url}/{origin.name}")
        try:
            yield server
        finally:
            git(repo, "remote", "set-url", "origin", str(origin))


def checkout(origin: Path, tmp: Path, name: str, ref: str) -> Path:
    """A fresh clone of ``origin`` at ``ref``, as `actions/checkout` gives every job a new workspace."""
    workspace = tmp / "workspaces" / name
    workspace.parent.mkdir(exist_ok=True)
    git(tmp, "clone", "-q", "--no-checkout", str(origin), str(workspace))
    git(workspace, "checkout", "-q", "--detach", ref)
    return workspace


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
    repo: Path,
    tmp: Path,
    fake: FakeGitHub,
    name: str,
    payload: dict[str, object],
    run_id: str,
    extra_env: dict[str, str] | None = None,
    *,
    token: str = TOKEN,
    server_url: str = "https://github.com",
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
            "GITHUB_SERVER_URL": server_url,
            "GITHUB_REPOSITORY": REPO,
            "GITHUB_RUN_ID": run_id,
            "GITHUB_RUN_ATTEMPT": "1",
            "GITHUB_WORKSPACE": str(repo),
            "GITHUB_OUTPUT": str(tmp / "output"),
            "GITHUB_STEP_SUMMARY": str(tmp / "summary.md"),
            "RUNNER_TEMP": str(runner_temp(tmp)),
            "INPUT_GITHUB-TOKEN": token,
            "INPUT_SQUALS-FILES": "squals.yml",
            "INPUT_STATE-BRANCH": "squals/state",
            "INPUT_PROVIDER": "",
            "SQUALS_GITHUB_WRITE_INTERVAL": "0",
            "SQUALS_GITHUB_REQUEST_INTERVAL": "0",
            "SQUALS_GITHUB_TIMEOUT": "10",
            **(extra_env or {}),
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
        assert "<summary>Cost of the island so far</summary>" in body
        assert "- CPU-seconds (since each process started): " in body
        assert "CPU-seconds (since each process started): no data" not in body  # measured
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
        assert f"commit {head} promoted: the island's, whose gates passed." in body
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
def test_in_the_container_the_local_provider_validates_and_gates_but_deploys_nothing(
    project: tuple[Path, Path, str], tmp_path: Path
) -> None:
    repo, origin, head = project
    opened = event("pull_request.opened")
    opened["pull_request"]["head"]["sha"] = head
    container = {"SQUALS_ACTION_CONTAINER": "1"}
    with FakeGitHub(REPO, permissions={"Codertocat": "maintain"}) as fake:
        code, log = run_action(repo, tmp_path, fake, "pull_request.opened", opened, "42", container)
        assert code == 0, log
        refusal = (
            "squals.yml:3:11: provider local cannot run islands in the Docker action: they would be "
            "processes of the job's container, which ends with the job. Use provider kind aws"
        )
        assert f"squals: preview: refused: {refusal}" in log
        [body] = fake.comment_bodies(2)
        assert "| Validation | ✅ passed |" in body and "| Gate test · unit | ✅ passed |" in body
        assert "Nothing was deployed." in body
        assert "127.0.0.1" not in body
        assert [run["conclusion"] for run in fake.check_runs.values()] == ["neutral"]
        assert fake.states("pr-2") == ["in_progress", "inactive"]  # opened with the run, nothing deployed
        outputs = (tmp_path / "output").read_text()
        assert "\nrefused\n" in outputs and "127.0.0.1" not in outputs

        promote = event("pull_request.labeled-promote")
        promote["pull_request"]["head"]["sha"] = head
        fake.pr_labels[2] = {"promote"}
        code, log = run_action(repo, tmp_path, fake, "pull_request.labeled-promote", promote, "43", container)
        assert code == 0, log
        assert "squals: promote: refused: squals.yml:3:11: provider local cannot run islands" in log
        assert fake.states("prod") == []  # the promotion never began: no prod deployment

    assert get_provider("local", repo).list() == ()  # no island was started
    assert not (repo / ".squals" / "dealer").exists()  # nor a Dealer
    assert git(origin, "branch", "--list", "squals/state") == ""  # and nothing was recorded


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


def state_commits(origin: Path) -> list[str]:
    """The state branch's commit subjects on origin, newest first; none while the branch does not exist."""
    if not git(origin, "for-each-ref", "refs/heads/squals/state"):
        return []
    return state_log(origin)


def unmasked(log: str) -> str:
    """The log without the runner's ``::add-mask::`` lines, which are the only place a secret may show."""
    return "\n".join(line for line in log.splitlines() if not line.startswith("::add-mask::"))


@pytest.mark.slow
def test_the_state_branch_goes_out_with_the_github_token_over_http(
    project: tuple[Path, Path, str], served: GitHttpServer, tmp_path: Path
) -> None:
    repo, origin, head = project
    opened = event("pull_request.opened")
    opened["pull_request"]["head"]["sha"] = head
    config = (repo / ".git" / "config").read_text()
    assert "extraheader" not in config  # persist-credentials: false -- nothing but the token can push

    with FakeGitHub(REPO) as fake:
        code, log = run_action(
            repo,
            tmp_path,
            fake,
            "pull_request.opened",
            opened,
            "70",
            token="ghs_wrong",
            server_url=served.url,
        )
        assert code == 1, log
        [line] = [x for x in log.splitlines() if x.startswith("squals: preview: failure:")]
        assert line.endswith(
            "remote 'origin' did not accept the credentials for state branch 'squals/state' (HTTP 401): "
            "the token was not accepted"
        ), log
        assert "Traceback" not in log and "ghs_wrong" not in unmasked(log)
        assert state_commits(origin) == []

        served.seen.clear()
        code, log = run_action(
            repo, tmp_path, fake, "pull_request.opened", opened, "71", server_url=served.url
        )
        assert code == 0, log
    assert any(line.startswith("deploy ") and "pr-2" in line for line in state_commits(origin))
    pushes = [s for s in served.seen if s.path.endswith("/git-receive-pack")]
    assert pushes and {s.role for s in served.seen} == {"write"}
    assert {s.authorizations for s in served.seen} == {1}
    assert TOKEN not in unmasked(log)
    assert (repo / ".git" / "config").read_text() == config  # the token never landed in the config


@pytest.mark.slow
def test_a_token_that_may_not_push_degrades_to_validation_and_gates(
    project: tuple[Path, Path, str], served: GitHttpServer, tmp_path: Path
) -> None:
    repo, origin, head = project
    opened = event("pull_request.opened")
    opened["pull_request"]["head"]["sha"] = head
    with FakeGitHub(REPO) as fake:
        code, log = run_action(
            repo, tmp_path, fake, "pull_request.opened", opened, "72", token="ghs_read", server_url=served.url
        )
        assert code == 0, log
        [line] = [x for x in log.splitlines() if x.startswith("squals: preview: neutral:")]
        assert "may not push the state branch" in line and "(HTTP 403)" in line, line
        assert "Permission to origin.git denied" in line
        [body] = fake.comment_bodies(2)
        assert "| Gate test · unit | ✅ passed |" in body  # what it could do is reported
        assert fake.states("pr-2") == ["in_progress", "inactive"]  # nothing was deployed
        [run] = fake.check_runs.values()
        assert run["conclusion"] == "neutral"
    assert state_commits(origin) == []
    assert "ghs_read" not in unmasked(log)


@pytest.mark.slow
def test_a_closed_fork_pr_writes_nothing_and_exits_0(project: tuple[Path, Path, str], tmp_path: Path) -> None:
    repo, origin, _ = project
    closed = event("pull_request.closed")
    closed["pull_request"]["head"] = event("pull_request.opened-fork")["pull_request"]["head"]
    with FakeGitHub(REPO) as fake:
        code, log = run_action(repo, tmp_path, fake, "pull_request.closed", closed, "73")
        assert code == 0, log
        assert fake.requests == []  # a read-only token: nothing is even tried on GitHub
    assert "comes from the fork Octocoders/Hello-World" in log and "read-only token" in log
    assert "squals: teardown: success: PR #2 closed: pr-2: nothing to tear down" in log
    assert state_commits(origin) == []  # no lock taken, no commit pushed


@pytest.mark.slow
def test_a_dependabot_pr_is_validated_and_gated_only(project: tuple[Path, Path, str], tmp_path: Path) -> None:
    repo, origin, head = project
    opened = event("pull_request.opened")
    opened["pull_request"]["head"]["sha"] = head
    opened["sender"] = dict(opened["sender"], login="dependabot[bot]", type="Bot")
    with FakeGitHub(REPO) as fake:
        code, log = run_action(repo, tmp_path, fake, "pull_request.opened", opened, "74")
        assert code == 0, log
        assert fake.requests == []
    [line] = [x for x in log.splitlines() if x.startswith("squals: preview:")]
    assert line == (
        "squals: preview: success: PR #2: valid, gates passed; not deployed: dependabot[bot] triggered this "
        "run: GitHub gives it a read-only token"
    )
    assert "| Gate test · unit |" in (tmp_path / "summary.md").read_text()
    assert state_commits(origin) == []


@pytest.mark.slow
def test_a_refused_check_run_is_how_a_read_only_token_shows_itself(
    project: tuple[Path, Path, str], tmp_path: Path
) -> None:
    repo, origin, head = project
    opened = event("pull_request.opened")
    opened["pull_request"]["head"]["sha"] = head
    refusal = {
        "message": "Resource not accessible by integration",
        "documentation_url": "https://docs.github.com/rest/checks/runs#create-a-check-run",
    }
    with FakeGitHub(REPO) as fake:
        fake.inject[("POST", "/check-runs")] = [(403, {}, refusal)]
        code, log = run_action(repo, tmp_path, fake, "pull_request.opened", opened, "75")
        assert code == 0, log
        assert [m for m, _, _ in fake.requests if m != "GET"] == ["POST"]  # the refused one, then no write
    assert "squals: GitHub refused a write with this run's token, so it is read-only" in log
    assert "HTTP 403: Resource not accessible by integration" in log
    [line] = [x for x in log.splitlines() if x.startswith("squals: preview:")]
    assert line.startswith("squals: preview: success: PR #2: valid, gates passed; not deployed: GitHub ")
    assert state_commits(origin) == []


def pr_event(name: str, number: int, sha: str, ref: str) -> dict[str, object]:
    """A fixture payload about PR ``number`` at ``sha``, sent by Codertocat (a maintainer in these runs)."""
    payload = event(name)
    payload["pull_request"]["number"] = number
    payload["pull_request"]["head"].update(sha=sha, ref=ref)
    payload["sender"] = event("pull_request.opened")["sender"]
    return payload


@pytest.mark.slow
def test_two_promotions_in_a_row_then_rollback_swaps_prod_and_postprod(
    project: tuple[Path, Path, str], tmp_path: Path
) -> None:
    from squals_action.state import open_store

    repo, origin, v2 = project
    v3 = git(repo, "rev-parse", "more")
    steps = [  # (event, payload, workspace ref): each a fresh checkout and a fresh process
        ("pull_request.opened", pr_event("pull_request.opened", 2, v2, "changes"), v2),
        (
            "pull_request_target.labeled-promote",
            pr_event("pull_request.labeled-promote", 2, v2, "changes"),
            "master",
        ),
        ("pull_request.opened", pr_event("pull_request.opened", 3, v3, "more"), v3),
        (
            "pull_request_target.labeled-promote",
            pr_event("pull_request.labeled-promote", 3, v3, "more"),
            "master",
        ),
        (
            "pull_request_target.labeled-rollback",
            pr_event("pull_request.labeled-rollback", 3, v3, "more"),
            "master",
        ),
    ]
    serving: list[bytes] = []
    prod_url: list[str] = []
    # Users on prod from its first promotion on: BLUE must serve some of them to prove itself in the bake.
    with (
        FakeGitHub(REPO, permissions={"Codertocat": "maintain"}) as fake,
        Load(lambda: prod_url[0] if prod_url else None, threads=2, pause=0.02) as users,
    ):
        for index, (name, payload, ref) in enumerate(steps):
            workspace = checkout(origin, tmp_path, f"run-{index}", ref)
            number = payload["pull_request"]["number"]  # type: ignore[index]
            fake.pr_labels[number] = {"promote", "rollback"}
            code, log = run_action(workspace, tmp_path, fake, name, payload, str(80 + index))
            assert code == 0, f"{name} of PR #{number}: {log}"
            if "promote" in name or "rollback" in name:
                url = written_outputs(tmp_path / "output")["environment-url"][-1]
                prod_url[:] = [url]
                serving.append(urllib.request.urlopen(url, timeout=10).read())
        assert serving == [b"v2\n", b"v3\n", b"v2\n"]  # prod: PR 2, then PR 3, then PR 2 again
        assert users.results and users.failures() == []  # no user saw an error through it all
        [body] = fake.comment_bodies(3)
        assert "pr-2 is prod again; pr-3 is postprod at 0 %" in body, body
        assert ("DELETE", f"/repos/{REPO}/issues/3/labels/rollback", None) in fake.requests
        prod = sorted(
            (d for d in fake.deployments.values() if d["environment"] == "prod"), key=lambda d: d["id"]
        )
        assert [d["sha"] for d in prod] == [v2, v3, v2]  # the rollback recorded what is live again
        assert [fake.statuses[d["id"]][-1]["state"] for d in prod] == ["success"] * 3
    assert written_outputs(tmp_path / "output")["commit"][-1] == v2
    assert "rollback: pr-2 is prod again, pr-3 is postprod" in state_commits(origin)
    with open_store(checkout(origin, tmp_path, "after", "master")) as store:
        envs = store.read().environments()
    assert {name: (env.status, env.commit) for name, env in envs.items()} == {
        "pr-2": ("prod", v2),
        "pr-3": ("postprod", v3),
    }


@pytest.mark.slow
def test_gates_checks_wait_for_the_workflow_jobs_and_guard_the_promotion(
    project: tuple[Path, Path, str], tmp_path: Path
) -> None:
    """A toolchain job of the workflow named in gates.checks: its result is a gate of the preview, and a
    promote of a head commit that did not pass it is refused (the island keeps the commit that passed)."""
    repo, origin, _ = project
    squals = (
        (repo / "squals.yml")
        .read_text()
        .replace(
            "gates:\n", 'gates:\n  checks: ["test (node)"]\n  checks_timeout: 20s\n  checks_interval: 1s\n'
        )
    )
    (repo / "squals.yml").write_text(squals)
    git(repo, "commit", "-q", "-am", "wait for the node job")
    passed = git(repo, "rev-parse", "HEAD")
    opened = event("pull_request.opened")
    opened["pull_request"]["head"]["sha"] = passed

    with FakeGitHub(REPO, permissions={"Codertocat": "maintain"}) as fake:
        job = fake.job(passed, "test (node)", "success")
        code, log = run_action(repo, tmp_path, fake, "pull_request.opened", opened, "70")
        assert code == 0, log
        [body] = fake.comment_bodies(2)
        assert f"| Gate checks · test \\(node\\) | ✅ passed [success]({job['html_url']}) |" in body, body
        assert fake.states("pr-2") == ["in_progress", "success"]
        checks_read = [p for m, p, _ in fake.requests if m == "GET" and f"/commits/{passed}/status" in p]
        assert checks_read == [f"/repos/{REPO}/commits/{passed}/status?page=1&per_page=100"]

        (repo / "VERSION").write_text("v3\n")
        git(repo, "commit", "-q", "-am", "v3")
        failed = git(repo, "rev-parse", "HEAD")
        fake.job(failed, "test (node)", "failure")
        pushed = event("pull_request.synchronize")
        pushed["pull_request"]["head"]["sha"] = failed
        pushed["pull_request"]["number"] = pushed["number"] = 2
        code, log = run_action(repo, tmp_path, fake, "pull_request.synchronize", pushed, "71")
        assert code == 1, log
        [body] = fake.comment_bodies(2)
        assert "| Gate checks · test \\(node\\) | ❌ failed [failure](" in body, body
        before = state_log(origin)

        promote = event("pull_request_target.labeled-promote-by-readonly")
        promote["pull_request"]["head"]["sha"] = failed
        promote["sender"] = opened["sender"]
        fake.pr_labels[2] = {"promote"}
        code, log = run_action(repo, tmp_path, fake, "pull_request_target.labeled-promote", promote, "72")
        assert code == 0, log
        [body] = fake.comment_bodies(2)
        assert f"head commit {failed[:12]} has not passed its gates: its island runs {passed[:12]}" in body
        assert fake.states("prod") == []  # no prod deployment for a refused promotion
        assert written_outputs(tmp_path / "output")["status"][-1] == "refused"
    assert state_log(origin) == before  # nothing was recorded
