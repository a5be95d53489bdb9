"""Local-provider behaviour beyond the contract: worktrees, supervision, stale pids, failures, detachment."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from squals_action.manifest import model
from squals_action.providers import EnvironmentHandle, LocalProvider, ProviderError, ProvisionError, daemon
from squals_action.providers import local as local_module
from tests.support.providers import START, Repo, kill_quietly, port_closed, read_json


def _wait_for(predicate: object, within: float = 10.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


def test_two_commits_side_by_side_from_their_own_worktrees(repo: Repo, local: LocalProvider) -> None:
    head_before = repo.git("rev-parse", "HEAD")
    repo.commit("two")
    one = local.provision("pr-1", repo.shas["one"], repo.manifest())
    two = local.provision("pr-2", repo.shas["two"], repo.manifest())

    body_one, body_two = read_json(one.url + "/"), read_json(two.url + "/")
    assert (body_one["version"], body_two["version"]) == ("one", "two")
    assert Path(str(body_one["cwd"])) == Path(one.data["worktree"]).resolve()
    assert Path(str(body_two["cwd"])) == Path(two.data["worktree"]).resolve()
    assert one.url != two.url
    assert set(repo.worktrees()) == {str(repo.path), one.data["worktree"], two.data["worktree"]}

    # The user's checkout is untouched: same HEAD, same file contents, nothing to commit.
    assert repo.git("rev-parse", "HEAD") != head_before  # we committed "two" above ...
    assert repo.git("rev-parse", "HEAD") == repo.shas["two"]  # ... and provisioning moved nothing
    assert (repo.path / "VERSION").read_text() == "two\n"
    assert repo.git("status", "--porcelain") == ""


def test_app_environment_layers(repo: Repo, local: LocalProvider) -> None:
    overrides = {"pr-*": model.EnvironmentOverride(name="pr-*", app_env={"GREETING": "island"})}
    manifest = repo.manifest(env={"GREETING": "base", "PORT": "1"}, environments=overrides)
    handle = local.provision("pr-9", "HEAD", manifest, extra_env={"EXTRA": "e", "SQUALS_ENV": "spoofed"})
    env = read_json(handle.url + "/")["env"]
    assert env == {
        "PORT": str(handle.data["port"]),
        "SQUALS_ENV": "pr-9",
        "SQUALS_COMMIT": repo.shas["one"],
        "SQUALS_URL": handle.url,
        "GREETING": "island",
        "EXTRA": "e",
    }


def test_process_outlives_the_python_process_that_started_it(repo: Repo, local: LocalProvider) -> None:
    script = textwrap.dedent(
        f"""
        import json, sys
        from squals_action.manifest import model
        from squals_action.providers import LocalProvider
        app = model.App(start={repo.manifest().app.start!r})
        manifest = model.Manifest(path={str(repo.path / "squals.yml")!r}, name="tiny", app=app)
        handle = LocalProvider({str(repo.path)!r}).provision("prod", "HEAD", manifest)
        print(json.dumps(handle.to_json()))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd="/", check=False
    )
    assert done.returncode == 0, done.stderr
    printed = EnvironmentHandle.from_json(json.loads(done.stdout))

    (found,) = local.list()  # found again from the pid file alone
    assert found == printed
    assert local.health(found).ok
    assert read_json(found.url + "/")["version"] == "one"
    record = daemon.ProcessRecord.from_json(found.data["process"])
    assert daemon.probe(record) == "running"
    assert local.destroy(found).ok
    assert daemon.members(record) == ()
    assert port_closed(int(found.data["port"]))


def test_stale_pid_is_reported_and_never_killed(repo: Repo, local: LocalProvider) -> None:
    handle = local.provision("pr-4", "HEAD", repo.manifest())
    record = daemon.ProcessRecord.from_json(handle.data["process"])
    local.destroy(handle)

    # An unrelated process now holds the recorded pid (simulated: same record, that process's pid).
    bystander = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        forged = daemon.ProcessRecord(bystander.pid, record.start_ticks, record.boot_id, record.token)
        env_dir = Path(handle.data["dir"])
        env_dir.mkdir(parents=True)
        stale = EnvironmentHandle(
            handle.env, handle.commit, handle.url, "local", {**handle.data, "process": forged.to_json()}
        )
        (env_dir / "handle.json").write_text(json.dumps(stale.to_json()))

        (listed,) = local.list()
        health = local.health(listed)
        assert health.status == "stale"
        assert str(bystander.pid) in health.detail and "left alone" in health.detail

        (outcome,) = local.down()
        assert outcome.ok
        assert any("pid reused" in note for note in outcome.notes), outcome
        assert bystander.poll() is None, "squals killed a process it did not start"
        assert local.list() == ()
    finally:
        bystander.kill()
        bystander.wait(timeout=10)


def test_app_that_never_becomes_healthy_fails_with_its_log_tail(repo: Repo, local: LocalProvider) -> None:
    manifest = repo.manifest(env={"APP_MODE": "sick"}, health_timeout=1.5)
    with pytest.raises(ProvisionError) as caught:
        local.provision("pr-5", "HEAD", manifest)
    message = str(caught.value)
    assert "did not become healthy" in message and "within 1.5s" in message
    assert "HTTP 503" in message
    assert "booting in mode sick" in message
    assert "booting in mode sick" in caught.value.log_tail
    assert caught.value.log_path.exists()  # the log stays for inspection
    assert local.list() == ()
    assert repo.worktrees() == [str(repo.path)]


def test_an_app_that_ignores_port_is_told_so_and_where_it_listens(repo: Repo, local: LocalProvider) -> None:
    """The app binds a port of its own (here: $PORT overridden in app.start): the failure names $PORT's port
    and the address the app's process listens on instead."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        own = sock.getsockname()[1]
    manifest = repo.manifest(start=f"PORT={own} {START}", health_timeout=1.5)
    with pytest.raises(ProvisionError) as caught:
        local.provision("pr-7", "HEAD", manifest)
    first = str(caught.value).splitlines()[0]
    assert "the app never answered on $PORT (" in first and "it must listen on the port in $PORT" in first
    assert first.split("never answered on $PORT (")[1].split(")")[0] != str(own)
    assert f"it listens on 127.0.0.1:{own} instead" in first
    assert local.list() == ()


def test_app_that_crashes_at_start_fails_fast_with_its_output(repo: Repo, local: LocalProvider) -> None:
    manifest = repo.manifest(env={"APP_MODE": "crash"}, health_timeout=60)
    started = time.monotonic()
    with pytest.raises(ProvisionError, match="boom: cannot open the database") as caught:
        local.provision("pr-6", "HEAD", manifest)
    assert "exited before becoming healthy" in str(caught.value)
    assert time.monotonic() - started < 30  # did not sit out the 60 s deadline
    assert local.list() == ()


def test_a_start_command_that_does_not_exist(repo: Repo, local: LocalProvider) -> None:
    with pytest.raises(ProvisionError, match="not-a-real-program"):
        local.provision("pr-8", "HEAD", repo.manifest(start="not-a-real-program --port $PORT"))
    assert local.list() == ()


def test_crashed_app_reports_down_and_destroy_still_cleans(repo: Repo, local: LocalProvider) -> None:
    handle = local.provision("pr-10", "HEAD", repo.manifest())
    record = daemon.ProcessRecord.from_json(handle.data["process"])
    kill_quietly(record.pid)
    assert _wait_for(lambda: daemon.probe(record) == "gone")
    health = local.health(handle)
    assert health.status == "down" and not health.ok
    assert local.destroy(handle).ok
    assert local.list() == ()


def test_destroy_reaches_grandchildren(repo: Repo, local: LocalProvider) -> None:
    handle = local.provision("pr-11", "HEAD", repo.manifest(env={"APP_MODE": "family"}))
    child_pid_file = Path(handle.data["worktree"]) / "child.pid"
    assert _wait_for(child_pid_file.exists)
    child = int(child_pid_file.read_text())
    record = daemon.ProcessRecord.from_json(handle.data["process"])
    assert child in daemon.members(record)
    assert local.destroy(handle).ok
    assert daemon.members(record) == ()
    assert not _alive(child)


def test_orphans_of_a_crashed_app_are_stopped_only_when_provably_ours(
    repo: Repo, local: LocalProvider
) -> None:
    for mode, ours in (("family", True), ("stranger", False)):
        handle = local.provision(f"pr-{mode}", "HEAD", repo.manifest(env={"APP_MODE": mode}))
        child_pid_file = Path(handle.data["worktree"]) / "child.pid"
        assert _wait_for(child_pid_file.exists)
        child = int(child_pid_file.read_text())
        record = daemon.ProcessRecord.from_json(handle.data["process"])
        kill_quietly(record.pid)  # the app dies; its child stays in the group
        assert _wait_for(lambda: daemon.probe(record) == "gone")  # noqa: B023
        try:
            outcome = local.destroy(handle)
            assert outcome.ok
            if ours:
                assert _wait_for(lambda: not _alive(child))  # noqa: B023
            else:
                assert _alive(child), "killed a process it could not prove it started"
                assert any("cannot prove" in note for note in outcome.notes), outcome
        finally:
            kill_quietly(child)


def test_app_ignoring_sigterm_is_killed_after_the_grace(
    repo: Repo, local: LocalProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(local_module, "STOP_GRACE", 0.3)
    handle = local.provision("pr-12", "HEAD", repo.manifest(env={"APP_MODE": "deaf"}))
    outcome = local.destroy(handle)
    assert outcome.ok
    assert any("SIGKILL" in note for note in outcome.notes), outcome
    assert port_closed(int(handle.data["port"]))


def test_unhealthy_running_app_reports_unhealthy(repo: Repo, local: LocalProvider) -> None:
    handle = local.provision("pr-13", "HEAD", repo.manifest())
    other_path = EnvironmentHandle(
        handle.env, handle.commit, handle.url, "local", {**handle.data, "health_path": "/x"}
    )
    assert local.health(other_path).ok  # the recorded health path is the one checked
    wrong_port = EnvironmentHandle(
        handle.env, handle.commit, "http://127.0.0.1:1", "local", dict(handle.data)
    )
    health = local.health(wrong_port, timeout=1.0)
    assert health.status == "unhealthy" and "127.0.0.1:1" in health.detail


def test_state_lives_under_dot_squals_and_stays_out_of_git_status(repo: Repo, local: LocalProvider) -> None:
    handle = local.provision("pr-14", "HEAD", repo.manifest())
    assert Path(handle.data["dir"]) == repo.path / ".squals" / "local" / "envs" / "pr-14"
    assert (repo.path / ".squals" / ".gitignore").read_text().strip().endswith("*")
    assert repo.git("status", "--porcelain", "--untracked-files=all") == ""


def test_provider_from_a_subfolder_and_an_app_workdir(repo: Repo, local: LocalProvider) -> None:
    sub = repo.path / "svc"
    sub.mkdir()
    (sub / "VERSION").write_text("sub\n")
    (sub / "app.py").write_text((repo.path / "app.py").read_text())
    repo.commit("three")
    manifest = model.Manifest(
        path=str(sub / "squals.yml"), name="tiny", app=model.App(start=repo.manifest().app.start)
    )
    other = LocalProvider(sub)  # any path inside the repository finds the same project
    assert other.root == local.root
    handle = other.provision("pr-15", "HEAD", manifest)
    assert read_json(handle.url + "/")["version"] == "sub"

    declared = model.Manifest(
        path="elsewhere.yml", name="t", app=model.App(start=repo.manifest().app.start), base_dir=str(sub)
    )
    handle = other.provision("pr-16", "HEAD", declared)
    assert read_json(handle.url + "/")["version"] == "sub"

    escape = model.Manifest(
        path=str(sub / "squals.yml"), name="t", app=model.App(start="true", workdir="../..")
    )
    with pytest.raises(ProviderError, match="leaves the repository"):
        other.provision("pr-17", "HEAD", escape)
    assert [h.env for h in other.list()] == ["pr-15", "pr-16"]


def test_destroying_another_kind_is_refused(local: LocalProvider) -> None:
    with pytest.raises(ProviderError, match="cannot be destroyed by 'local'"):
        local.destroy(EnvironmentHandle("pr-1", "abc", "https://x", "aws", {}))


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"


def test_not_a_git_repository(tmp_path: Path) -> None:
    with pytest.raises(ProviderError, match="git rev-parse"):
        LocalProvider(tmp_path)


def test_env_var_values_are_not_evaluated_by_the_shell(repo: Repo, local: LocalProvider) -> None:
    hostile = "$(touch pwned) `touch pwned2`; rm -rf /"
    handle = local.provision("pr-17", "HEAD", repo.manifest(), extra_env={"EXTRA": hostile})
    assert read_json(handle.url + "/")["env"]["EXTRA"] == hostile  # type: ignore[index]
    worktree = Path(handle.data["worktree"])
    assert not (worktree / "pwned").exists() and not (worktree / "pwned2").exists()


def test_a_start_command_that_backgrounds_the_app(repo: Repo, local: LocalProvider) -> None:
    start = repo.manifest().app.start.removeprefix("exec ") + " & echo started in the background"
    handle = local.provision("pr-18", "HEAD", repo.manifest(start=start))
    record = daemon.ProcessRecord.from_json(handle.data["process"])
    assert local.health(handle).ok
    assert daemon.probe(record) == "gone"  # bash exited; the app runs on in its group
    assert local.destroy(handle).ok
    assert daemon.members(record) == ()
    assert port_closed(int(handle.data["port"]))


def test_start_ticks_from_psutil_are_the_kernels_own() -> None:
    import psutil

    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        for pid in (os.getpid(), sleeper.pid, 1):
            stat = Path(f"/proc/{pid}/stat").read_bytes()
            kernel = int(stat[stat.rindex(b")") + 2 :].split()[19])
            assert daemon.start_ticks(psutil.Process(pid)) == kernel
    finally:
        sleeper.kill()
        sleeper.wait(timeout=10)
