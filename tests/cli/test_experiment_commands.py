"""``squals experiment`` as a user runs it: subprocesses against a real repository and state branch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from squals_action.experiments.spec import island_names
from tests.support.experiments import Shop, squals_experiment, state_log, visit


@pytest.mark.slow
def test_start_status_tick_promote_status(shop: Shop) -> None:
    started = squals_experiment(shop, "start", "--pr", "7", "--format", "json")
    assert started.returncode == 0, started.stderr
    info = json.loads(started.stdout)
    assert info["started"] and info["status"] == "running" and info["url"].startswith("http://127.0.0.1:")
    islands = island_names(info["id"], ("control", "green"))
    assert f"provision {islands['control']}" in started.stderr

    status = squals_experiment(shop, "status")
    assert status.returncode == 0 and f"{info['id']}: running" in status.stdout

    visit(info["url"], 200)
    tick = squals_experiment(shop, "tick")
    assert tick.returncode == 0, tick.stderr
    assert "green won and is prod (pr-7)" in tick.stdout
    shop.kept.add(islands["green"])  # the winner's own island is prod now

    final = json.loads(squals_experiment(shop, "status", info["id"], "--format", "json").stdout)
    assert final[0]["status"] == "decided" and final[0]["winner"] == "green"
    assert final[0]["outcome"] == "promoted"
    assert state_log(shop.origin)[-1] == "experiment-promoted"

    report = squals_experiment(shop, "status", info["id"], "--format", "markdown")
    assert report.returncode == 0, report.stderr
    assert report.stdout.startswith(f"### Experiment <code>{info['id']}</code>: decided")
    green = next(line for line in report.stdout.splitlines() if line.startswith("| <code>green</code>"))
    assert "🏆 winner" in green and "% of 50.0 %" in green


@pytest.mark.slow
def test_stop_and_errors_are_one_line(shop: Shop) -> None:
    started = json.loads(squals_experiment(shop, "start", "--format", "json").stdout)
    stopped = squals_experiment(shop, "stop", started["id"], "--reason", "wrong colour")
    assert stopped.returncode == 0, stopped.stderr
    assert "stopped (stopped)" in stopped.stdout
    missing = squals_experiment(shop, "status", "nope")
    assert missing.returncode == 1
    assert missing.stderr.strip() == "squals: error: no experiment 'nope' on the state branch"
    usage = squals_experiment(shop)
    assert usage.returncode == 2 and "Traceback" not in usage.stderr
    assert not (
        Path(shop.path) / ".squals" / "experiments" / started["id"] / "dealer" / "dealer.pid"
    ).exists()
