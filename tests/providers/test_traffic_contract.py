"""The traffic contract: the local Dealer and the ALB listener go through the same scenarios.

Both implement ``dealer.interface.Traffic``; what may differ is declared per implementation below (where the
upstreams live, what ``stop`` can stop, what ``tallies`` can measure), nothing else.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from squals_action.dealer.alb import AlbTraffic
from squals_action.dealer.interface import NotMeasured, Traffic
from squals_action.lifecycle.traffic import DealerTraffic
from tests.support.alb import build_alb
from tests.support.aws import Cloud


@dataclass
class Splitter:
    traffic: Traffic
    upstreams: Mapping[str, str]
    #: ``stop`` ends a process of squals (the local Dealer) or leaves a cloud listener routing (the ALB).
    owns_a_process: bool


@pytest.fixture(params=["dealer", "alb"])
def splitter(request: pytest.FixtureRequest, aws_cloud: Cloud, tmp_path: Path) -> Iterator[Splitter]:
    if request.param == "dealer":
        local = DealerTraffic(tmp_path / "dealer")
        base = aws_cloud.app.url  # a real HTTP server on 127.0.0.1
        yield Splitter(local, {"a": f"{base}/a", "b": f"{base}/b"}, owns_a_process=True)
        local.stop()
    else:
        alb = build_alb(aws_cloud.endpoint, ("a", "b"))
        yield Splitter(AlbTraffic(alb.listener_arn), alb.groups, owns_a_process=False)


def test_route_read_back_switch_drain_and_stop(splitter: Splitter) -> None:
    traffic = splitter.traffic
    url = traffic.route(splitter.upstreams, {"a": 90, "b": 10})
    assert url and url == traffic.url()
    assert traffic.routing() == {"a": 90.0, "b": 10.0}

    assert traffic.route(splitter.upstreams, {"b": 100}) == url  # a missing from the weights gets 0
    assert traffic.routing() == {"a": 0.0, "b": 100.0}

    said = traffic.drain(["a"], timeout=5)
    assert isinstance(said, str) and said

    try:
        tallies = traffic.tallies()
    except NotMeasured as exc:
        assert str(exc).startswith("no data")
    else:
        assert set(tallies) <= set(splitter.upstreams)

    assert traffic.stop() is splitter.owns_a_process
    assert traffic.stop() is False
    if splitter.owns_a_process:
        assert traffic.url() is None
        assert traffic.routing() == {}
    else:  # users keep being served: the listener and its weights stay
        assert traffic.url() == url
        assert traffic.routing() == {"a": 0.0, "b": 100.0}

    # ``down``'s close: users are sent nowhere (the Dealer is already stopped; the listener answers 503).
    closed = traffic.close()
    assert (closed is None) is splitter.owns_a_process
    assert traffic.routing() == {}
    assert traffic.close() is None  # nothing left to close: no call
