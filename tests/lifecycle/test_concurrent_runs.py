"""Environment locks are held per run, and nothing squals starts escapes the record (issue 14, finding 2):
real ``squals`` processes racing for one PR, a run killed while holding its lock, a process started by a
run the state never heard of."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from squals_action.providers import LocalProvider
from squals_action.providers.daemon import probe, read_pid_file
from squals_action.state import open_store
from tests.support.lifecycle import Project, cmd, get, git, lifecycle, manifest

SQUALS = [sys.executable, "-m", "squals_action.cli"]


def _commit_squals_file(project: Project, hook: str) -> None:
    (project.path / "squals.yml").write_text(
        "version: 1\nname: shop\n"
        f"app: {{start: '{sys.executable} app.py', health: /healthz, health_timeout: 30s}}\n"
        f"hooks: {{before_preprod: [{{run: '{hook}', timeout: 60s}}]}}\n"
    )
    git(project.path, "add", "squals.yml")
    git(project.path, "commit", "-q", "-m", "squals file")


def _start(project: Project, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*SQUALS, *args, "--report", "none"],
        cwd=project.path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _squals(project: Project, *args: str) -> subprocess.CompletedProcess[str]:
    report = ("--report", "none") if args[0] not in ("unlock", "status") else ()
    return subprocess.run(
        [*SQUALS, *args, *report], cwd=project.path, capture_output=True, text=True, timeout=180
    )


def _apps_of(env: str) -> list[psutil.Process]:
    """Live processes whose environment says they belong to ``env``."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get("SQUALS_ENV") == env and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except psutil.Error:
            continue
    return found


def _wait_for(what: Callable[[], bool], runs: list[subprocess.Popen[str]], timeout: float = 60) -> None:
    """Poll ``what`` until it holds; fails at the deadline or when every run given has exited without it."""
    deadline = time.monotonic() + timeout
    while not what():
        assert time.monotonic() < deadline, [run.poll() for run in runs]
        assert not runs or any(run.poll() is None for run in runs), [run.communicate() for run in runs]
        time.sleep(0.05)


@pytest.mark.slow
def test_two_deploys_of_one_pr_at_once_make_one_deploy_and_teardown_leaves_nothing(project: Project) -> None:
    # The run holding the lock waits in its hook until the other one has exited: they overlap however late
    # the second starts on a loaded machine, and no fixed sleep is waited out.
    release = project.path.parent / "release"
    _commit_squals_file(project, f"until [ -e {release} ]; do sleep 0.05; done")
    runs = [_start(project, "deploy", "--pr", "22") for _ in range(2)]
    try:
        _wait_for(lambda: any(run.poll() is not None for run in runs), runs, timeout=120)
    finally:
        release.touch()
    results = [(run.wait(timeout=180), *run.communicate()) for run in runs]
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 1], results
    refused = next(err for code, _, err in results if code == 1)
    assert "pr-22 is being deployed by another run (pid " in refused, refused
    assert refused.count("squals: error:") == 1

    with open_store(project.path) as store:
        events = [e.event for e in store.history("pr-22")]
        doc = store.read().environment("pr-22")
        assert store.read().lock("pr-22") is None
    assert events.count("deploy") == 1 and events.count("lock") == 1 and events.count("unlock") == 1, events
    assert doc is not None and doc.status == "ready" and doc.url
    assert get(doc.url)[0] == 200  # the port the state records is the live process's
    apps = _apps_of("pr-22")
    assert len(apps) == 1, apps
    port = int(doc.url.rsplit(":", 1)[1])
    assert any(c.laddr.port == port for c in apps[0].net_connections(kind="tcp"))

    teardown = _squals(project, "teardown", "--pr", "22")
    assert teardown.returncode == 0, teardown.stderr
    assert _apps_of("pr-22") == []


@pytest.mark.slow
def test_a_run_killed_holding_its_lock_leaves_a_stale_lock_that_says_what_to_run(project: Project) -> None:
    # The hook outlives its killed run until the test releases it, and says when it has ended.
    started, release, ended = (project.path.parent / name for name in ("started", "release", "ended"))
    _commit_squals_file(
        project, f"touch {started} && until [ -e {release} ]; do sleep 0.05; done; touch {ended}"
    )
    killed = _start(project, "deploy", "--pr", "22")
    _wait_for(started.exists, [killed])
    os.kill(killed.pid, signal.SIGKILL)
    killed.wait(timeout=30)

    again = _squals(project, "deploy", "--pr", "22")
    assert again.returncode == 1
    assert again.stderr.count("\n") == 1, again.stderr
    assert f"pr-22 is locked by a run that is no longer running (pid {killed.pid} on " in again.stderr
    assert "break it with `squals unlock pr-22` and run the command again" in again.stderr
    status = subprocess.run(
        [*SQUALS, "status", "--format", "json"],
        cwd=project.path,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    lock = next(e["lock"] for e in json.loads(status.stdout)["environments"] if e["name"] == "pr-22")
    assert lock["stale"] is True and lock["holder"]["pid"] == killed.pid and lock["operation"] == "deploy"
    assert _squals(project, "unlock", "pr-22").returncode == 0
    release.touch()  # the killed run's hook ends before the PR is deployed again
    _wait_for(ended.exists, [])
    redeploy = _squals(project, "deploy", "--pr", "22")  # a deploy found half-way is started over
    assert redeploy.returncode == 0, redeploy.stderr
    assert _squals(project, "teardown", "--pr", "22").returncode == 0
    assert _apps_of("pr-22") == []


def test_teardown_stops_a_process_the_state_never_recorded(project: Project) -> None:
    lc = lifecycle(project, manifest(exit_tests=(cmd("e2e", "true"),)))
    assert lc.deploy(7, project.commits["v1"]).ok
    recorded = lc.fleet()["pr-7"].handle
    # A run killed after its provider started pr-7 again and before the state heard of it: the state still
    # records the first process; the provider's pid files know the second.
    unrecorded = LocalProvider(project.path).provision("pr-7", project.commits["v2"], lc.manifest)
    assert lc.fleet()["pr-7"].handle == recorded != unrecorded.to_json()
    assert get(unrecorded.url) == (200, "v2")

    assert lc.teardown(7).ok
    assert LocalProvider(project.path).health(unrecorded).status == "down"
    assert _apps_of("pr-7") == []


def test_a_launched_app_records_itself_before_it_runs(project: Project, tmp_path: Path) -> None:
    provider = LocalProvider(project.path)
    pid_file = project.path / ".squals" / "local" / "pids" / "pr-9" / "orphan.json"
    from squals_action.providers.daemon import spawn

    # What a provision killed right after the launch leaves: no handle, only the app's own pid file.
    record = spawn(
        "sleep 60", cwd=tmp_path, env={"SQUALS_ENV": "pr-9"}, log_path=tmp_path / "log", pid_file=pid_file
    )
    assert read_pid_file(pid_file) == record and probe(record) == "running"
    assert [h.env for h in provider.list()] == ["pr-9"]
    outcome = provider.destroy(provider.list()[0])
    assert outcome.ok and probe(record) == "gone" and not pid_file.exists()
    assert provider.list() == ()
