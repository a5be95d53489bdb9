"""The lifecycle's sub-commands: usage errors and set-up problems are one line, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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
    assert deploy.stdout.startswith("### ✅ Deploy of <code>pr-5</code>")
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
