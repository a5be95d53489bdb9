"""A start on AWS killed (SIGKILL, at a named kill point: ``squals_action.faults``) around the moment the
front door's listener moves, then stopped by a new engine that has only the state branch and AWS: what the
listener needs to get its routing back is on the state branch before the listener is touched, the stop puts
it back only when the start had changed it, and says "stopped" only once it did."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

from squals_action.experiments.engine import from_lifecycle
from squals_action.faults import FAULT_AT_ENV
from squals_action.lifecycle.project import ProjectOptions, open_project
from squals_action.state import open_store, utc_now
from squals_action.state.interface import ExperimentState
from tests.experiments.test_aws import _listener, _shop, _stacks
from tests.support.aws import Cloud, MotoCalls, aws_client
from tests.support.experiments import state_log


def _killed_start(work: Path, tmp_path: Path, step: str) -> ExperimentState:
    """``squals experiment start`` in a new process, SIGKILLed at ``step``; the document it left."""
    scratch = tmp_path / "scratch"  # what the killed process leaves behind (its worktree of the commit)
    scratch.mkdir()
    died = subprocess.run(
        [sys.executable, "-m", "squals_action.cli", "experiment", "start"],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, FAULT_AT_ENV: step, "TMPDIR": str(scratch)},
        check=False,
    )
    assert died.returncode == -9, died.stdout + died.stderr
    with open_store(work) as store:
        (doc,) = store.read().experiments().values()
    return doc


def _forwarded(elbv2: Any, listener_arn: str) -> set[str]:
    (action,) = _listener(elbv2, listener_arn)["DefaultActions"]
    return {g["TargetGroupArn"] for g in (action.get("ForwardConfig") or {}).get("TargetGroups", [])}


def test_a_start_killed_after_the_listener_moved_is_given_back_by_a_stop(
    aws_cloud: Cloud, tmp_path: Path, moto_calls: MotoCalls
) -> None:
    """Killed once the listener forwards to the variants and before ``running`` was recorded: the stop
    (a new engine) puts the listener's routing from before the start back, then deletes the stacks (before:
    the document held no trace of the listener, the stop deleted the stacks under it and said "stopped");
    a second stop changes nothing and says so."""
    origin, work, listener_arn = _shop(aws_cloud, tmp_path)
    elbv2 = aws_client("elbv2", aws_cloud.endpoint)
    before = _listener(elbv2, listener_arn)["DefaultActions"]
    doc = _killed_start(work, tmp_path, "before-commit:experiment-running")
    assert doc.status == "starting"
    assert len(_forwarded(elbv2, listener_arn)) == 2  # the start had moved it to the variants

    said: list[str] = []
    engine = from_lifecycle(open_project(ProjectOptions(repo=work, gates=False)), log=said.append)
    recorded = len(moto_calls())
    assert engine.stop(doc.id).status == "stopped"
    sent = [c for c in moto_calls()[recorded:] if not c.startswith(("Describe", "Get", "List"))]
    assert sent[0] == "ModifyListener" and sent.count("ModifyListener") == 1, sent  # before any stack went
    assert sent.count("DeleteStack") == 2, sent
    assert _listener(elbv2, listener_arn)["DefaultActions"] == before
    assert _stacks(aws_cloud) == {"squals-shop-front-door"}
    # what the stop went by: written ahead, with the islands it was routing to
    groups = {h["data"]["target_group_arn"] for h in doc.extra["islands"].values()}
    assert doc.extra["traffic"]["before"] == before
    assert set(doc.extra["traffic"]["target_groups"].values()) == groups

    said.clear()
    recorded = len(moto_calls())
    assert engine.stop(doc.id).status == "stopped"
    assert moto_calls()[recorded:] == []  # a no-op: not even a read
    assert said == [f"experiment {doc.id} is stopped already: nothing to do"]
    assert state_log(origin)[-2:] == ["experiment-routing", "experiment-stop"]  # one stop
    engine.store.close()


def test_a_start_killed_before_the_listener_moved_leaves_it_alone_at_the_stop(
    aws_cloud: Cloud, tmp_path: Path, moto_calls: MotoCalls
) -> None:
    """Killed right after the listener's routing was written ahead, before the listener was touched: the
    stop reads the listener, finds it forwarding to none of the variants and changes nothing on it (only
    the stacks go)."""
    _, work, listener_arn = _shop(aws_cloud, tmp_path)
    elbv2 = aws_client("elbv2", aws_cloud.endpoint)
    before = _listener(elbv2, listener_arn)["DefaultActions"]
    doc = _killed_start(work, tmp_path, "after-commit:experiment-routing")
    assert doc.status == "starting" and doc.extra["traffic"]["before"] == before
    assert _listener(elbv2, listener_arn)["DefaultActions"] == before  # untouched

    engine = from_lifecycle(open_project(ProjectOptions(repo=work, gates=False)))
    recorded = len(moto_calls())
    assert engine.stop(doc.id).status == "stopped"
    sent = [c for c in moto_calls()[recorded:] if not c.startswith(("Describe", "Get", "List"))]
    assert sent == ["DeleteStack", "DeleteStack"], sent
    assert _listener(elbv2, listener_arn)["DefaultActions"] == before
    assert _stacks(aws_cloud) == {"squals-shop-front-door"}
    engine.store.close()


def test_a_start_again_after_a_killed_one_keeps_the_listeners_routing_from_before_both(
    aws_cloud: Cloud, tmp_path: Path
) -> None:
    """Killed once the listener forwards to the variants; 16 minutes later a new start takes the claim over
    and finds the listener forwarding to the experiment's own target groups: what it writes ahead is the
    routing from before the first start (carried over by the claim), not the killed start's, so the stop
    gives the listener its real routing back."""
    _, work, listener_arn = _shop(aws_cloud, tmp_path)
    elbv2 = aws_client("elbv2", aws_cloud.endpoint)
    before = _listener(elbv2, listener_arn)["DefaultActions"]
    doc = _killed_start(work, tmp_path, "before-commit:experiment-running")

    engine = from_lifecycle(open_project(ProjectOptions(repo=work, gates=False)))
    engine.clock = lambda: utc_now() + timedelta(minutes=16)  # the killed start's claim is stale
    started = engine.start()
    assert started.started and started.experiment.id == doc.id, started.message
    assert started.experiment.extra["traffic"]["before"] == before
    assert engine.stop(doc.id).status == "stopped"
    assert _listener(elbv2, listener_arn)["DefaultActions"] == before
    assert _stacks(aws_cloud) == {"squals-shop-front-door"}
    engine.store.close()
