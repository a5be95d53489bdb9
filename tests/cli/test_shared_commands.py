"""``squals shared``: started by a deploy or ``up``, kept by ``down``, removed only by ``shared down``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.lifecycle import Project, git
from tests.support.providers import SHARED_SERVER

SQUALS = [sys.executable, "-m", "squals_action.cli"]


def _run(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SQUALS, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_a_deploy_starts_it_down_keeps_it_shared_down_removes_it(project: Project) -> None:
    (project.path / "shared_server.py").write_text(SHARED_SERVER)
    (project.path / "squals.yml").write_text(
        "version: 1\nname: shop\n"
        f"app: {{start: '{sys.executable} app.py', health: /, health_timeout: 30s}}\n"
        "shared:\n"
        f"  cache: {{type: kv, run: '{sys.executable} shared_server.py', url: 'tcp://127.0.0.1:$PORT'}}\n"
    )
    git(project.path, "add", "-A")
    git(project.path, "commit", "-q", "-m", "a shared cache")
    try:
        before = _run(project.path, "shared", "status")
        assert (before.returncode, before.stdout) == (0, "cache: not started (never started)\n")

        deploy = _run(project.path, "deploy", "--pr", "1", "--skip-gates", "--report", "none")
        assert deploy.returncode == 0, deploy.stderr
        running = _run(project.path, "shared", "status")
        assert running.stdout.startswith("cache: running at tcp://127.0.0.1:"), running.stdout

        down = _run(project.path, "down", "--report", "none")
        assert down.returncode == 0, down.stderr
        assert _run(project.path, "shared", "status").stdout == running.stdout  # untouched by down

        again = _run(project.path, "shared", "up")
        assert again.returncode == 0 and "(SQUALS_SHARED_CACHE_URL)" in again.stdout  # kept, not restarted
        assert _run(project.path, "shared", "status").stdout == running.stdout

        typo = _run(project.path, "shared", "down", "cach")
        assert typo.returncode == 1 and "no shared resource 'cach' (known: cache)" in typo.stderr
    finally:
        removed = _run(project.path, "shared", "down")
    assert removed.returncode == 0 and removed.stdout.startswith("cache: removed (")
    assert _run(project.path, "shared", "status").stdout == "cache: not started (never started)\n"
