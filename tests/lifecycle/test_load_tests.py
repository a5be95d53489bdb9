"""Load tests as a stage: a real Locust, headless, against a real island (local provider), a few seconds each.

The app answers every path but ``/healthz`` after the delay in its ``DELAY`` file (none: at once), so one
commit is slow and another fast; a breached limit fails the island (promotion refused), a kept one lets it
through, and ``baseline: prod`` judges relative limits against prod's run with the same profile.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from squals_action.github.pipeline import Pipeline
from squals_action.github.runner import settings_from_env
from squals_action.lifecycle.load_tests import (
    LoadFigures,
    find_locust,
    fmt,
    judge,
    percentile,
    read_figures,
)
from squals_action.lifecycle.machine import InvalidTransition, Status
from squals_action.manifest.model import LoadLimit, LoadTests
from squals_action.providers import LocalProvider
from squals_action.report.comment import RunInfo, render
from squals_action.report.lifecycle import markdown
from tests.support.lifecycle import APP, Project, git, lifecycle, manifest

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]

LOCUSTFILE = """
from locust import HttpUser, constant, task

class Visitor(HttpUser):
    wait_time = constant(0.1)

    @task
    def home(self):
        self.client.get("/")
"""


def spec(**limits: LoadLimit | float | None) -> LoadTests:
    """Four users for three seconds: a hundred requests or more against a fast app, tens against a slow one
    (two seconds on a busy machine have ended before a slow answer was recorded)."""
    return LoadTests(
        locustfile="load/locustfile.py", users=4, spawn_rate=4, duration=3.0, timeout=60.0, **limits
    )


def commit_app(project: Project, version: str, delay: float | None) -> str:
    """A commit of the delaying app with the locustfile; ``delay`` seconds before each answer."""
    (project.path / "app.py").write_text(APP)  # the project's app, slow with a DELAY file
    (project.path / "load").mkdir(exist_ok=True)
    (project.path / "load" / "locustfile.py").write_text(LOCUSTFILE)
    delay_file = project.path / "DELAY"
    if delay is None:
        delay_file.unlink(missing_ok=True)
    else:
        delay_file.write_text(str(delay))
    return project.commit_version(version)


def test_a_breached_p95_fails_the_island_and_blocks_its_promotion(project: Project) -> None:
    slow = commit_app(project, "slow", 0.4)
    m = dataclasses.replace(manifest(), load_tests=spec(p95=LoadLimit(100.0), failure_ratio=1.0))
    lc = lifecycle(project, m)
    out = lc.deploy(1, slow)
    assert not out.ok
    assert out.fleet["pr-1"].status is Status.FAILED
    load = out.load_tests
    assert load is not None and load.island is not None
    assert load.island.requests > 0 and load.island.p95 is not None and load.island.p95 >= 400
    p95 = next(r for r in load.readings if r.key == "p95")
    assert not p95.ok and p95.bound == 100.0
    assert out.message.startswith("load test failed: p95 ")
    assert "> max 100 ms" in out.message and "pr-1 is kept for inspection" in out.message
    comment = markdown(out)
    assert "❌ Load test (Locust)" in comment
    assert f"| ❌ | p95 | {fmt(p95.value or 0)} ms | max 100 ms |" in comment
    assert out.fleet["pr-1"].reason == out.message.split("; pr-1 is kept")[0]
    # The PR comment the action posts: the figure in its headline, a row for the load test, the table.
    report = Pipeline(settings_from_env({}), {})._outcome("preview", out, "pr-1")
    posted = render(report, RunInfo(sha=slow))
    assert f"**load test failed: p95 {fmt(p95.value or 0)} ms &gt; max 100 ms" in posted
    assert "| Load test locust | ❌ failed |" in posted and "❌ Load test (Locust)" in posted
    with pytest.raises(InvalidTransition, match="its deploy failed"):
        lc.promote(1)
    lc.down()


def squals(
    project: Project, *args: str, python: str = sys.executable, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The ``squals`` command line of this checkout, run in the project's repository."""
    return subprocess.run(
        [python, "-m", "squals_action.cli", *args],
        cwd=project.path,
        env=env or {**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_the_example_shop_within_its_limits_is_ready_and_its_table_on_the_terminal(project: Project) -> None:
    """``examples/shop/squals-load.yml`` and its locustfile through ``squals deploy``, for 3 s (not 30 s)."""
    shutil.copytree(REPO / "examples" / "shop", project.path, dirs_exist_ok=True)
    squals_file = project.path / "squals-load.yml"
    squals_file.write_text(squals_file.read_text().replace("duration: 30s", "duration: 3s"))
    project.commit_version("shop")
    done = squals(
        project, "deploy", "--pr", "1", "--skip-gates", "--file", "squals-load.yml", "--report", "markdown"
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "#### ✅ Load test (Locust)" in done.stdout
    table = done.stdout.split("#### ✅ Load test (Locust)")[1]
    assert "| ✅ | p95 |" in table and "| ✅ | failure ratio | 0 % | max 1 % |" in table
    assert "| ⚪ not judged | requests/s |" in table  # -20% of prod's, and there is no prod yet
    assert "limits kept; requests/s" in done.stderr and "not judged: no prod to compare with" in done.stderr
    # The terminal's progress view has the same table as aligned text.
    assert re.search(r"\n    ✓\s+p95\s+\d+ ms\s+max 500 ms\n", done.stderr), done.stderr
    assert re.search(r"\n    not judged\s+requests/s\s+[\d.]+\s+prod -20%\n", done.stderr), done.stderr
    env = lifecycle(project, manifest()).fleet()["pr-1"]
    assert env.status is Status.READY
    check = next(c for c in env.checks if c.kind == "load-test")
    assert check.ok and not check.no_data
    promoted = squals(project, "promote", "--pr", "1", "--file", "squals-load.yml")
    assert promoted.returncode == 0, promoted.stdout + promoted.stderr
    assert squals(project, "down", "--file", "squals-load.yml").returncode == 0


def test_baseline_prod_judges_relative_limits_against_prods_run(project: Project) -> None:
    fast, slow = commit_app(project, "fast", None), commit_app(project, "slow", 0.5)
    load = spec(p95=LoadLimit(100.0, relative=True), min_rps=LoadLimit(-50.0, relative=True))
    load = dataclasses.replace(load, baseline="prod")
    lc = lifecycle(project, dataclasses.replace(manifest(), load_tests=load))

    first = lc.deploy(1, fast)  # no prod yet: the relative limits are shown as not judged
    assert first.ok, first.message
    assert first.load_tests is not None and first.load_tests.baseline is None
    assert all(not r.judged and r.ok for r in first.load_tests.readings)
    assert "not judged: no prod to compare with (prod +100%)" in first.message + first.load_tests.summary()
    assert "⚪ not judged" in markdown(first)
    assert lc.promote(1).ok

    out = lc.deploy(2, slow)
    assert not out.ok
    assert out.fleet["pr-2"].status is Status.FAILED
    result = out.load_tests
    assert result is not None and result.island is not None and result.baseline is not None
    assert result.baseline.env == "pr-1" and result.island.env == "pr-2"
    assert result.baseline.requests > 0
    p95 = next(r for r in result.readings if r.key == "p95")
    assert p95.baseline == result.baseline.p95 and p95.bound == pytest.approx(2 * (result.baseline.p95 or 0))
    assert not p95.ok and "(prod +100%)" in out.message
    comment = markdown(out)
    table = comment.split("#### ❌ Load test (Locust)")[1]
    assert "| limit | prod <code>pr-1</code> |" in table
    row = next(line for line in table.splitlines() if line.startswith("| ❌ | p95 |"))
    assert row.split(" | ")[2:] == [
        f"{fmt(p95.value or 0)} ms",
        rf"max {fmt(p95.bound or 0)} ms \(prod +100%\)",
        f"{fmt(p95.baseline or 0)} ms |",
    ]
    with pytest.raises(InvalidTransition):
        lc.promote(2)

    again = lc.deploy(3, fast)  # the same code as prod keeps its requests/s within -50 % of prod's
    rps = next(r for r in (again.load_tests.readings if again.load_tests else ()) if r.key == "min_rps")
    assert rps.judged and rps.ok, again.message
    lc.down()


def test_a_locustfile_that_cannot_run_is_no_data_never_a_pass(project: Project) -> None:
    fast = commit_app(project, "fast", None)
    (project.path / "load" / "locustfile.py").write_text("raise SystemExit('broken on purpose')\n")
    git(project.path, "commit", "-qam", "broken locustfile")
    m = dataclasses.replace(manifest(), load_tests=spec(p95=LoadLimit(2000.0)))
    out = lifecycle(project, m).deploy(1, fast)
    assert not out.ok and out.fleet["pr-1"].status is Status.FAILED
    assert out.message.startswith("load test failed: no data: pr-1: Locust exit ")
    check = next(c for c in out.fleet["pr-1"].checks if c.kind == "load-test")
    assert check.no_data and not check.ok
    assert "⚪ Load test: no data" in markdown(out)
    lifecycle(project, m).down()


SQUALS_FILE = """version: 1
name: shop
app: {start: python3 app.py, health: /healthz}
load_tests: {locustfile: load/locustfile.py, users: 2, duration: 2s, limits: {failure_ratio: 1%}}
"""


def test_without_locust_deploy_says_how_to_install_it_in_one_line(project: Project, tmp_path: Path) -> None:
    """``squals deploy`` from a Python without Locust (a bare virtualenv, nothing on ``PATH``)."""
    commit_app(project, "fast", None)
    (project.path / "squals.yml").write_text(SQUALS_FILE)
    git(project.path, "add", "squals.yml")
    git(project.path, "commit", "-qm", "squals file")
    bare = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True, timeout=120)
    python = bare / "bin" / "python"
    assert find_locust(python, path=str(bare / "bin")) is None
    env = {
        "PATH": f"{bare / 'bin'}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "PYTHONPATH": f"{REPO}:{sysconfig.get_paths()['purelib']}:{sysconfig.get_paths()['platlib']}",
    }
    done = squals(project, "deploy", "--pr", "1", "--skip-gates", python=str(python), env=env)
    assert done.returncode == 1, done.stderr
    assert done.stderr.splitlines() == [
        "squals: error: Locust is not installed: pip install 'squals-action[load]'"
        " (the squals file has load_tests)"
    ]
    assert LocalProvider(project.path).list() == ()  # said before anything was deployed
    assert find_locust() is not None  # the test extra installs it


def test_figures_follow_locusts_own_percentiles_and_totals(tmp_path: Path) -> None:
    stats = tmp_path / "stats.json"
    stats.write_text(
        '[{"name": "/", "method": "GET", "start_time": 100.0, "last_request_timestamp": 110.0,'
        ' "num_requests": 90, "num_none_requests": 0, "num_failures": 9,'
        ' "response_times": {"10": 80, "200": 10}},'
        ' {"name": "/b", "method": "GET", "start_time": 100.0, "last_request_timestamp": 105.0,'
        ' "num_requests": 10, "num_none_requests": 0, "num_failures": 0, "response_times": {"900": 10}}]'
    )
    figures = read_figures(stats, "pr-1")
    assert (figures.requests, figures.failures, figures.failure_ratio, figures.rps) == (100, 9, 9.0, 10.0)
    assert (figures.p95, figures.p99) == (900.0, 900.0)
    assert percentile({}, 0, 0.95) is None


def test_percentiles_are_locusts_own() -> None:
    """Locust's function, run in its own process (importing locust patches this one with gevent)."""
    cases = [({10: 80, 200: 20}, 100, p) for p in (0.5, 0.79, 0.8, 0.95, 0.99)]
    cases += [({3: 1, 7: 5, 40: 2, 1200: 1}, 9, p) for p in (0.5, 0.95, 0.99)]
    probe = (
        "import json, sys\n"
        "from locust.stats import calculate_response_time_percentile as f\n"
        "cases = json.load(sys.stdin)\n"
        "print(json.dumps([f({int(k): v for k, v in t.items()}, n, p) for t, n, p in cases]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], input=json.dumps(cases), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert [percentile(t, n, p) for t, n, p in cases] == json.loads(done.stdout)


def test_relative_limits_scale_prods_figure() -> None:
    island = LoadFigures(env="pr-2", requests=100, failures=0, rps=40.0, p95=120.0, p99=300.0)
    prod = LoadFigures(env="pr-1", requests=100, failures=0, rps=50.0, p95=100.0, p99=250.0)
    limits = spec(p95=LoadLimit(10.0, relative=True), min_rps=LoadLimit(-10.0, relative=True))
    rps, p95 = judge(limits, island, prod)
    assert (rps.bound, rps.ok) == (pytest.approx(45.0), False)
    assert (p95.bound, p95.ok) == (pytest.approx(110.0), False)
    assert p95.describe() == "p95 120 ms > max 110 ms (prod +10%)"
    assert rps.describe() == "requests/s 40 < min 45 (prod -10%)"
