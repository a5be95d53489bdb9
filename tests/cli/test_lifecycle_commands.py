"""The lifecycle's sub-commands: usage errors and set-up problems are one line, never a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.support.lifecycle import Project, git

SQUALS = [sys.executable, "-m", "squals_action.cli"]


def _run(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SQUALS, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_bad_pr_number_is_a_usage_error(tmp_path: Path) -> None:
    out = _run(tmp_path, "promote", "--pr", "0")
    assert out.returncode == 2 and "expected a pull request number >= 1" in out.stderr


def test_a_remote_the_repository_lacks_is_named_in_one_line(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q")
    git(tmp_path, "remote", "add", "upstream", str(tmp_path / "nowhere.git"))
    (tmp_path / "squals.yml").write_text("version: 1\nname: shop\napp: {start: python app.py}\n")
    out = _run(tmp_path, "deploy", "--pr", "3", "--skip-gates")
    assert out.returncode == 1, out.stderr
    assert out.stderr.startswith("squals: error: ") and out.stderr.count("\n") == 1
    assert "origin" in out.stderr and "upstream" in out.stderr


def test_teardown_of_a_pr_never_deployed_says_so_and_writes_nothing(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q")
    (tmp_path / "squals.yml").write_text("version: 1\nname: shop\napp: {start: python app.py}\n")
    out = _run(tmp_path, "teardown", "--pr", "99", "--report", "none")
    assert out.returncode == 0 and out.stdout == "", out.stderr
    assert out.stderr.strip() == "✓ pr-99: nothing to tear down"
    assert git(tmp_path, "branch", "--list", "squals/state") == ""


def test_help_lists_the_lifecycle(tmp_path: Path) -> None:
    out = _run(tmp_path, "--help")
    for command in ("deploy", "promote", "rollback", "teardown", "down", "demo"):
        assert command in out.stdout


@pytest.mark.slow
def test_deploy_promote_down_from_the_command_line(project: Project) -> None:
    (project.path / "squals.yml").write_text(
        "version: 1\nname: shop\n"
        f"app: {{start: '{sys.executable} app.py', health: /healthz, health_timeout: 30s}}\n"
        "exit_tests: [{name: e2e, run: 'curl -fsS \"$SQUALS_URL/\"', timeout: 30s}]\n"
    )
    git(project.path, "add", "squals.yml")
    git(project.path, "commit", "-q", "-m", "squals file")
    deploy = _run(project.path, "deploy", "--pr", "5")
    assert deploy.returncode == 0, deploy.stderr
    assert "pr-5 is up at http://127.0.0.1:" in deploy.stderr
    assert "Deploy of pr-5: environments" in deploy.stdout and "<code>" not in deploy.stdout
    promote = _run(project.path, "promote", "--pr", "5", "--report", "none")
    assert promote.returncode == 0, promote.stderr
    assert promote.stdout == "" and "pr-5 is prod" in promote.stderr
    state = git(project.path, "ls-remote", "origin", "squals/state")
    kept = _run(project.path, "teardown", "--pr", "5", "--report", "none")  # printed nothing (issue 14)
    assert kept.returncode == 0 and kept.stdout == "", kept.stderr
    assert kept.stderr.strip() == (
        "✓ kept: pr-5 is prod: cannot teardown (it is serving prod; it is retired by a later promotion, "
        "or by `squals down`)"
    )
    assert git(project.path, "ls-remote", "origin", "squals/state") == state  # no lock/release commits
    rollback = _run(project.path, "rollback")
    assert rollback.returncode == 1 and "nothing to roll back to" in rollback.stderr
    down = _run(project.path, "down")
    assert down.returncode == 0 and "pr-5: destroyed" in down.stderr


def _status(path: Path) -> dict[str, Any]:
    done = _run(path, "status", "--format", "json")
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return report


@pytest.mark.slow
def test_status_shows_the_public_url_live_figures_in_natural_order_and_keeps_the_port(
    project: Project,
) -> None:
    """Finding 5: the Dealer's URL and tallies, pr-2 before pr-10, no URL of a retired island shown as live,
    and the same public URL after ``down`` and the next promotion."""
    (project.path / "squals.yml").write_text(
        "version: 1\nname: shop\n"
        f"app: {{start: '{sys.executable} app.py', health: /healthz, health_timeout: 30s}}\n"
    )
    git(project.path, "add", "squals.yml")
    git(project.path, "commit", "-q", "-m", "squals file")
    for args in (("deploy", "--pr", "10"), ("deploy", "--pr", "2"), ("promote", "--pr", "2")):
        done = _run(project.path, *args, "--report", "none")
        assert done.returncode == 0, done.stderr
    public = _status(project.path)["public_url"]
    assert public and public.startswith("http://127.0.0.1:")
    for _ in range(7):
        with urllib.request.urlopen(public + "/", timeout=10) as response:
            assert response.status == 200

    report = _status(project.path)
    envs = {e["name"]: e for e in report["environments"]}
    assert [e["name"] for e in report["environments"]] == ["pr-2", "pr-10"]
    assert envs["pr-2"]["figures"]["requests"] == 7 and envs["pr-2"]["figures"]["errors"] == 0
    assert envs["pr-2"]["figures"]["p95_ms"] > 0
    assert envs["pr-10"]["figures"] is None  # no request went there: no data, not zeros
    text = _run(project.path, "status").stdout
    assert f"Public URL: {public} (the Dealer, pid " in text
    rows = [line for line in text.splitlines() if " pr-" in line]
    assert [row.split()[1] for row in rows] == ["pr-2", "pr-10"]
    assert " 7 · 0 · " in rows[0] and " ms " in rows[0] and rows[1].count("no data") == 1
    assert "\x1b[" not in text  # not a terminal: no colour codes

    assert _run(project.path, "down", "--report", "none").returncode == 0
    after = _status(project.path)
    assert after["public_url"] is None
    for env in after["environments"]:
        assert env["status"] == "retired" and env["url"] is None and env["last_url"].startswith("http://")
    text = _run(project.path, "status").stdout
    assert "Public URL: none (no Dealer runs from .squals/dealer)" in text
    assert "http://127.0.0.1" not in text  # a retired island's URL is not shown as a place to go

    for args in (("deploy", "--pr", "3"), ("promote", "--pr", "3")):
        done = _run(project.path, *args, "--report", "none")
        assert done.returncode == 0, done.stderr
    assert _status(project.path)["public_url"] == public  # the URL people were given works again
    assert _run(project.path, "down", "--report", "none").returncode == 0
