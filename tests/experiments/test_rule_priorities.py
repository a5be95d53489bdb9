"""Listener rule priorities on AWS: each island's preview rule sits on the front door's listener, whose rule
priorities are unique, at the ``SqualsRulePriority`` squals fills in.

Before, the example's islands took a priority set by hand per variant name (``exp-green: 49002``): the first
experiment's winner, kept as prod with its rule, still held it when the next experiment's ``green`` started,
so CloudFormation refused the new island's rule and the start failed. Here, on moto's server (which refuses
a priority its listener holds, as ALB does), the second experiment's islands get numbers no live island
holds, read from what moto recorded.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from squals_action.experiments.engine import ExperimentEngine, from_lifecycle
from squals_action.lifecycle.project import ProjectOptions, open_project
from squals_action.providers.aws_template import POOL, stack_name
from squals_action.state import utc_now
from tests.experiments.test_aws import _shop
from tests.support.alb import ISLAND_WITH_RULE_TEMPLATE
from tests.support.aws import Cloud, MotoCalls, aws_client
from tests.support.cloudwatch import publish_green_wins
from tests.support.lifecycle import git


def _engine(work: Path) -> ExperimentEngine:
    """The project's experiments, started 10 minutes ago: CloudWatch has whole minutes since the start."""
    engine = from_lifecycle(open_project(ProjectOptions(repo=work, gates=False)))
    engine.clock = lambda: utc_now() - timedelta(minutes=10)
    return engine


def _with_preview_rules(work: Path, listener_arn: str) -> None:
    """Both squals files' islands get a preview rule on the front door's listener (pushed)."""
    (work / "infra" / "island.yml").write_text(ISLAND_WITH_RULE_TEMPLATE)
    for name in ("squals.yml", "green.yml"):
        path = work / name
        path.write_text(path.read_text().replace("VpcId: ", f'ListenerArn: "{listener_arn}", VpcId: ', 1))
    git(work, "commit", "-qam", "preview rules on the front door")
    git(work, "push", "-q", "origin", "main")


def _rules(listener_arn: str, cloud: Cloud) -> dict[str, int]:
    """The preview rules of the islands whose stacks live: island -> priority. (moto's CloudFormation
    deletes no ELBv2 resource with its stack: a deleted island's rule stays on the listener, holding its
    number, as an orphan would on AWS; squals reads the listener, so it avoids those too.)"""
    rules = aws_client("elbv2", cloud.endpoint).describe_rules(ListenerArn=listener_arn)["Rules"]
    live = {line.split()[0] for line in cloud.stacks()}
    found = {
        r["Conditions"][0]["HostHeaderConfig"]["Values"][0].split(".")[0]: int(r["Priority"])
        for r in rules
        if not r["IsDefault"]
    }
    assert len(set(found.values())) == len(found), found  # moto refuses a priority in use, as AWS does
    return {island: n for island, n in found.items() if stack_name("shop", island) in live}


def _priorities(islands: dict[str, Any]) -> dict[str, int]:
    """Each variant's priority as its handle (the experiment's document) recorded it."""
    return {variant: int(handle["data"]["rule_priority"]) for variant, handle in islands.items()}


def test_a_second_experiments_green_gets_a_priority_no_live_island_holds(
    aws_cloud: Cloud, tmp_path: Path, moto_calls: MotoCalls
) -> None:
    """Before: the second start failed ("Priority ... is currently in use": the first green, prod now, holds
    the number of every ``green``). Now: every island of both experiments got its own number, recorded in
    its stack's parameters, its handle and the state; the live rules never share one."""
    _, work, listener_arn = _shop(aws_cloud, tmp_path)
    _with_preview_rules(work, listener_arn)
    first = _engine(work)
    started = first.start(pr=5)
    assert started.experiment.status == "running", started.message
    islands = started.experiment.extra["islands"]
    mine = _priorities(islands)
    assert len(set(mine.values())) == 2 and all(n in POOL for n in mine.values()), mine
    created = dict(moto_calls.parameters("CreateStack"))
    for variant, handle in islands.items():
        assert created[handle["data"]["stack_name"]]["SqualsRulePriority"] == str(mine[variant])
    assert _rules(listener_arn, aws_cloud) == {islands[v]["env"]: n for v, n in mine.items()}

    first.clock = utc_now
    publish_green_wins({variant: island["env"] for variant, island in islands.items()})
    (won,) = first.tick(started.experiment.id)
    assert won.promoted == "green", won.message
    prod = first.store.read().environment("pr-5")
    assert prod is not None and prod.status == "prod" and prod.handle is not None
    assert prod.handle["data"]["rule_priority"] == mine["green"]  # the state shows what prod's rule holds
    first.store.close()
    before = len(moto_calls.parameters("CreateStack"))

    (work / "VERSION").write_text("two\n")
    git(work, "commit", "-qam", "Green again (#6)")
    git(work, "push", "-q", "origin", "main")
    second = _engine(work)
    running = second.start(pr=6)  # the same variant names: before, CloudFormation refused green's rule
    assert running.started and running.experiment.status == "running", running.message
    theirs = _priorities(running.experiment.extra["islands"])
    assert theirs["green"] != mine["green"] and all(n in POOL for n in theirs.values()), theirs
    sent = moto_calls.parameters("CreateStack")[before:]
    assert sorted(int(p["SqualsRulePriority"]) for _, p in sent) == sorted(theirs.values())
    live = _rules(listener_arn, aws_cloud)
    expected = {prod.handle["env"], *(h["env"] for h in running.experiment.extra["islands"].values())}
    assert set(live) == expected and len(set(live.values())) == 3, live
    assert second.stop(running.experiment.id).status == "stopped"
    assert _rules(listener_arn, aws_cloud) == {prod.handle["env"]: mine["green"]}
    second.store.close()
