"""The ALB Dealer against moto's server on 127.0.0.1: what each call leaves on the listener, read back.

Every weight change must be exactly one mutating call (``ModifyListener``); the calls are counted with a
botocore ``before-call`` hook on the Dealer's own client (what reached moto).
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import pytest
from hypothesis import given
from hypothesis import strategies as st

from squals_action.dealer.alb import MAX_WEIGHT, AlbError, AlbTraffic, alb_weights
from squals_action.dealer.interface import DealerError, NotMeasured, VariantTally
from squals_action.manifest.model import StickyUnit
from tests.support.alb import Alb, Calls, build_alb
from tests.support.aws import Cloud


@pytest.fixture
def alb(aws_cloud: Cloud) -> Alb:
    return build_alb(aws_cloud.endpoint)


def _traffic(alb: Alb, calls: Calls, **kwargs: object) -> AlbTraffic:
    traffic = AlbTraffic(alb.listener_arn, **kwargs)  # type: ignore[arg-type]
    calls.attach(traffic.elbv2)
    return traffic


def test_a_ten_percent_route_is_one_modify_listener_reading_back_900_100(alb: Alb) -> None:
    calls = Calls()
    traffic = _traffic(alb, calls, unit=StickyUnit("cookie", "shopper"))
    url = traffic.route(alb.groups, {"green": 90, "blue": 10})

    assert url == f"http://{alb.dns_name}"
    assert alb.weights() == {"green": 900, "blue": 100}
    assert alb.group_stickiness() == {"Enabled": True, "DurationSeconds": 7 * 24 * 3600}
    # First sight of the two target groups: their stickiness is set once, then the one listener change.
    assert calls.mutating == ["ModifyTargetGroupAttributes", "ModifyTargetGroupAttributes", "ModifyListener"]
    for name in ("green", "blue"):
        attributes = alb.attributes(name)
        assert attributes["stickiness.enabled"] == "true"
        assert attributes["stickiness.type"] == "app_cookie"
        assert attributes["stickiness.app_cookie.cookie_name"] == "shopper"
        assert attributes["deregistration_delay.timeout_seconds"] == "1"  # the rest is left as it was
    assert traffic.routing() == {"green": 90.0, "blue": 10.0}

    calls.clear()
    traffic.route(alb.groups, {"green": 0, "blue": 100})
    assert calls.mutating == ["ModifyListener"]
    assert alb.weights() == {"green": 0, "blue": MAX_WEIGHT}
    assert traffic.routing() == {"green": 0.0, "blue": 100.0}

    calls.clear()
    traffic.route(alb.groups, {"green": 100})  # the switch back (a rollback): one call
    assert calls.mutating == ["ModifyListener"]
    assert alb.weights() == {"green": MAX_WEIGHT, "blue": 0}


def test_a_header_unit_uses_the_load_balancer_cookie(alb: Alb) -> None:
    traffic = AlbTraffic(alb.listener_arn, unit=StickyUnit("header", "X-User"), stickiness_seconds=3600)
    traffic.route({"green": alb.groups["green"]}, {"green": 1})
    attributes = alb.attributes("green")
    assert (attributes["stickiness.type"], attributes["stickiness.lb_cookie.duration_seconds"]) == (
        "lb_cookie",
        "3600",
    )
    assert alb.group_stickiness() == {"Enabled": True, "DurationSeconds": 3600}
    assert alb.weights() == {"green": MAX_WEIGHT}


def test_a_fresh_process_reads_the_routing_back(alb: Alb) -> None:
    AlbTraffic(alb.listener_arn).route(alb.groups, {"green": 75, "blue": 25})
    named = AlbTraffic(alb.listener_arn, upstreams=alb.groups)
    assert named.routing() == {"green": 75.0, "blue": 25.0}
    assert named.upstreams() == alb.groups
    anonymous = AlbTraffic(alb.listener_arn)
    assert anonymous.routing() == {alb.groups["green"]: 75.0, alb.groups["blue"]: 25.0}


def test_mistakes_make_no_call_and_aws_errors_are_one_line(alb: Alb) -> None:
    calls = Calls()
    traffic = _traffic(alb, calls)
    for weights, expected in [  # the local Dealer's checks and messages
        ({"green": 0, "blue": 0}, "at least one upstream needs a weight above 0"),
        ({"green": -1, "blue": 5}, "weight of 'green' must be a finite number >= 0, got -1.0"),
        ({"purple": 1}, "weights name unknown upstream"),
    ]:
        with pytest.raises(DealerError, match=expected):
            traffic.route(alb.groups, weights)
    six = {f"g{i}": alb.groups["green"] for i in range(6)}
    with pytest.raises(AlbError, match="takes 1 to 5 target groups"):
        traffic.route(six, {"g0": 1})
    assert calls.names == []

    with pytest.raises(AlbError, match="is not an ALB listener ARN"):
        AlbTraffic("arn:aws:s3:::bucket")
    gone = alb.listener_arn[:-4] + "0000"
    with pytest.raises(AlbError) as caught:
        AlbTraffic(gone).route(alb.groups, {"green": 1})
    message = caught.value.one_line()
    assert message == str(caught.value)
    assert message.startswith(f"modify listener {gone}: ListenerNotFound: "), message
    with pytest.raises(AlbError, match="TargetGroupNotFound"):
        traffic.route({"green": alb.groups["green"][:-4] + "0000"}, {"green": 1})


def test_tallies_without_a_reader_are_no_data_and_with_one_come_from_it(alb: Alb) -> None:
    traffic = AlbTraffic(alb.listener_arn)
    traffic.route(alb.groups, {"green": 50, "blue": 50})
    with pytest.raises(NotMeasured, match=r"^no data: the ALB Dealer of .* has no metric reader"):
        traffic.tallies()

    asked: list[Mapping[str, str]] = []

    def reader(upstreams: Mapping[str, str]) -> Mapping[str, VariantTally]:
        asked.append(dict(upstreams))
        return {name: VariantTally(name, activations=7) for name in upstreams}

    measured = AlbTraffic(alb.listener_arn, upstreams=alb.groups, reader=reader)
    assert {n: t.activations for n, t in measured.tallies().items()} == {"green": 7, "blue": 7}
    assert asked == [alb.groups]


def test_drain_waits_out_the_deregistration_delay_and_refuses_what_still_routes(alb: Alb) -> None:
    calls = Calls()
    traffic = _traffic(alb, calls)
    traffic.route(alb.groups, {"green": 90, "blue": 10})
    with pytest.raises(AlbError, match=r"cannot drain blue: listener .* still forwards new requests to it"):
        traffic.drain(["blue"])
    traffic.route(alb.groups, {"green": 100, "blue": 0})
    calls.clear()
    with pytest.raises(AlbError, match=r"cannot drain blue within 0.2s: .* leaves 1s for requests in flight"):
        traffic.drain(["blue"], timeout=0.2)
    started = time.monotonic()
    said = traffic.drain(["blue"], timeout=5)
    assert 0.5 < time.monotonic() - started < 1.5, said  # the 1 s delay, counted from the switch
    assert said.startswith("waited ") and "deregistration delay of blue has passed" in said
    assert calls.mutating == []
    assert traffic.drain([]) == "nothing to drain"


def test_stop_keeps_the_listener_and_its_routing(alb: Alb) -> None:
    calls = Calls()
    traffic = _traffic(alb, calls, url="https://shop.example.org")
    traffic.route(alb.groups, {"green": 90, "blue": 10})
    calls.clear()
    assert traffic.stop() is False
    assert traffic.url() == "https://shop.example.org"
    assert calls.names == []
    assert alb.weights() == {"green": 900, "blue": 100}


@pytest.mark.parametrize(
    ("shares", "expected"),
    [
        ({"a": 90, "b": 10}, {"a": 900, "b": 100}),
        ({"a": 0, "b": 100}, {"a": 0, "b": 999}),
        ({"a": 1}, {"a": 999}),
        ({"a": 1, "b": 1, "c": 1}, {"a": 334, "b": 333, "c": 333}),
        ({"a": 0.001, "b": 99.999}, {"a": 1, "b": 999}),
        ({"a": 25, "b": 25, "c": 50}, {"a": 250, "b": 250, "c": 500}),
    ],
)
def test_the_rounding_rule(shares: dict[str, float], expected: dict[str, int]) -> None:
    assert alb_weights(shares) == expected


@given(
    st.dictionaries(st.sampled_from("abcde"), st.floats(0, 1e6), min_size=1).filter(lambda d: sum(d.values()))
)
def test_rounding_keeps_zero_at_zero_and_every_positive_share_routed(shares: dict[str, float]) -> None:
    weights = alb_weights(shares)
    assert set(weights) == set(shares)
    assert all(0 <= w <= MAX_WEIGHT for w in weights.values())
    assert all((weights[n] == 0) == (shares[n] == 0) for n in shares)
    assert sum(weights.values()) in (999, 1000)
    total = sum(shares.values())
    assert all(abs(weights[n] / 1000 - shares[n] / total) <= 0.006 for n in shares)
