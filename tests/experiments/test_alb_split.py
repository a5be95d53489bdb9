"""The experiment's ALB splitter on moto's server: what ``prepare`` reads before a start moves the listener
(the routing a stop gives back), when the listener already forwards to the experiment's own target groups
(a killed start moved it)."""

from __future__ import annotations

from types import MappingProxyType

import pytest

from squals_action.experiments.interface import ExperimentError
from squals_action.experiments.splitters import AlbSplit
from squals_action.manifest.model import StickyUnit
from squals_action.providers.interface import EnvironmentHandle
from tests.support.alb import Alb, Calls, build_alb
from tests.support.aws import Cloud

CLOSED = [{"Type": "fixed-response", "FixedResponseConfig": {"StatusCode": "503"}}]


def _islands(alb: Alb) -> dict[str, EnvironmentHandle]:
    return {
        name: EnvironmentHandle(
            env=f"exp-{name}",
            commit="0" * 40,
            url="",
            kind="aws",
            data=MappingProxyType({"target_group_arn": arn}),
        )
        for name, arn in alb.groups.items()
    }


def _split(alb: Alb, calls: Calls) -> AlbSplit:
    split = AlbSplit(listener_arn=alb.listener_arn, url="http://door", unit=StickyUnit())
    calls.attach(split.traffic.elbv2)
    return split


def test_prepare_reads_the_routing_to_give_back_and_moves_nothing(aws_cloud: Cloud) -> None:
    alb, calls = build_alb(aws_cloud.endpoint), Calls()
    split = _split(alb, calls)
    split.prepare(_islands(alb), {}, lambda _: None)
    assert calls.names == ["DescribeListeners"]  # one read, nothing changed
    assert split.record()["traffic"]["before"] == CLOSED
    assert split.record()["traffic"]["target_groups"] == alb.groups


def test_a_listener_a_killed_start_moved_keeps_the_routing_recorded_from_before_it(aws_cloud: Cloud) -> None:
    alb, calls = build_alb(aws_cloud.endpoint), Calls()
    _split(alb, Calls()).traffic.route(alb.groups, {"green": 60, "blue": 40})  # what the killed start did
    split = _split(alb, calls)
    recorded = {"kind": "alb", "listener_arn": alb.listener_arn, "before": CLOSED}
    said: list[str] = []
    split.prepare(_islands(alb), recorded, said.append)
    assert split.record()["traffic"]["before"] == CLOSED
    assert said == ["the listener holds a killed start's routing: keep the one recorded from before it"]

    with pytest.raises(ExperimentError) as refused:  # no record of what it was before: nothing to go by
        _split(alb, calls).prepare(_islands(alb), {}, said.append)
    assert refused.value.one_line() == (
        f"listener {alb.listener_arn} forwards to this experiment's target groups already (a start that "
        "was killed?) and its routing from before is not recorded: give the listener its routing back by "
        "hand, then start again"
    )
    assert calls.mutating == []
