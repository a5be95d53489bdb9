"""The bake reading CloudWatch (moto's server on 127.0.0.1): BLUE's target group over the step's matured
window, and alarms as stop signals. The windows' wall clock is a test clock that moves 30 s per read, so
CloudWatch's one-minute delay is honoured without waiting for it; the calls are counted from moto's
recorder.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from squals_action.dealer.interface import VariantTally
from squals_action.lifecycle.bake import HealthReading, bake
from squals_action.lifecycle.engine import Lifecycle
from squals_action.lifecycle.machine import Env, Event, Status
from squals_action.lifecycle.signals import CloudWatchSignals
from squals_action.manifest import model
from squals_action.providers.cloudwatch import CloudWatch
from squals_action.providers.interface import DestroyOutcome, EnvironmentHandle, Health, Provider
from squals_action.state import open_memory_store
from tests.providers.test_cloudwatch import ALB_NAMESPACE, LB_ARN, alb_dims, put, tg_arn
from tests.support import aws
from tests.support.providers import NoShared

BLUE = Env(
    name="pr-2",
    status=Status.BLUE,
    share=10.0,
    handle=EnvironmentHandle(
        "pr-2", "c" * 40, "http://127.0.0.1:9", "aws", {"target_group_arn": tg_arn("blue")}
    ).to_json(),
)
KPIS = (model.Kpi("error_rate", max=1.0),)


def stepping_clock(start: datetime, step: float = 30.0) -> Callable[[], datetime]:
    """A wall clock that moves ``step`` seconds at every reading."""
    ticks = itertools.count()
    return lambda: start + timedelta(seconds=step * next(ticks))


@pytest.fixture
def since() -> datetime:
    """A step's start 20 s past a whole minute, half an hour ago (CloudWatch takes data that old)."""
    now = datetime.now(UTC) - timedelta(minutes=30)
    return now.replace(second=20, microsecond=0)


def source(clock: Callable[[], datetime], alarms: tuple[str, ...] = ()) -> CloudWatchSignals:
    return CloudWatchSignals(
        CloudWatch(aws.REGION), LB_ARN, kpis=[k.metric for k in KPIS], alarms=alarms, clock=clock
    )


def requests(cw: Any, target_group: str, when: datetime, count: float, errors: float = 0.0) -> None:
    put(cw, ALB_NAMESPACE, "RequestCount", alb_dims(tg_arn(target_group)), when, count)
    if errors:
        put(cw, ALB_NAMESPACE, "HTTPCode_Target_5XX_Count", alb_dims(tg_arn(target_group)), when, errors)


def test_half_of_blues_requests_failing_is_a_breach_at_the_first_check_that_can_see_them(
    cw: Any, moto_calls: Callable[[], list[str]], since: datetime
) -> None:
    first_minute = since + timedelta(seconds=50)  # inside the first whole minute after the step began
    requests(cw, "blue", first_minute, 100, errors=50)
    requests(cw, "green", first_minute, 100)
    ticks: list[float | None] = []
    out = bake(
        blue=BLUE,
        rollout=model.Rollout(blue_share=10, bake=60.0, check_interval=0.05, kpis=KPIS),
        source=source(stepping_clock(since)),
        health=lambda: HealthReading(ok=True),
        on_tick=lambda t: ticks.append(t.metrics.get("error_rate")),
    )
    assert not out.ok and not out.inconclusive
    assert out.reason == "KPI breach: error_rate 50 > max 1"
    # Reads at +30 s ... +150 s: the minute since+40..+100 s is readable 60 s after it ends, at +160 s.
    assert ticks == [None, None, None, None, None, 50.0]
    calls = moto_calls()
    assert calls[:3] == ["PutMetricData"] * 3
    assert calls[3:] == ["GetMetricData"]  # the immature windows cost no call


def test_an_alarm_in_alarm_sends_all_traffic_back_to_green_naming_it(
    cw: Any, moto_calls: Callable[[], list[str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    aws.put_alarm(cw, "shop-5xx", state="ALARM", reason="12 5xx in a minute")
    aws.put_alarm(cw, "shop-latency", metric="TargetResponseTime", statistic="Average", threshold=1)
    routes: list[dict[str, float]] = []
    rollout = model.Rollout(
        blue_share=10, bake=60.0, check_interval=0.05, kpis=KPIS, alarms=("shop-5xx", "shop-latency")
    )
    lc = _aws_like_lifecycle(tmp_path, monkeypatch, rollout, routes)
    lc.signals = source(lambda: datetime.now(UTC), alarms=rollout.alarms)
    before = len(moto_calls())
    out = lc.promote(2)
    assert not out.ok
    assert out.message.startswith("CloudWatch alarm in ALARM: shop-5xx (12 5xx in a minute)")
    assert "all traffic is back on GREEN pr-1" in out.message
    assert routes[-2:] == [{"pr-1": 90.0, "pr-2": 10.0}, {"pr-1": 100.0}]
    fleet = lc.fleet()
    assert (fleet["pr-2"].status, fleet["pr-2"].last_event) == (Status.FAILED, Event.BAKE_BREACH)
    assert moto_calls()[before:] == ["DescribeAlarms"]  # the first check; its window is not readable yet


def test_no_datapoints_for_blue_is_inconclusive_once_the_window_has_matured(
    cw: Any, moto_calls: Callable[[], list[str]], since: datetime
) -> None:
    requests(cw, "green", since + timedelta(seconds=50), 100)  # GREEN served; BLUE never did
    out = bake(
        blue=BLUE,
        rollout=model.Rollout(blue_share=10, bake=0.2, check_interval=0.05, kpis=KPIS),
        source=source(stepping_clock(since)),
        health=lambda: HealthReading(ok=True),
    )
    assert not out.ok and out.inconclusive
    blue_series = "[LoadBalancer=app/front/50dc6c495c0c9188, TargetGroup=targetgroup/blue/73e2d6bc24d8a067]"
    assert out.reason is not None and out.reason.startswith(
        f"inconclusive: BLUE pr-2's requests: no data: no datapoints for AWS/ApplicationELB RequestCount Sum "
        f"{blue_series}"
    )
    assert "error_rate: no data" in out.reason
    assert "GetMetricData" in moto_calls()  # judged on CloudWatch's answer, not on an immature window


class _Islands(Provider):
    """Islands that are up, with a target group each (what the aws provider records)."""

    kind = "aws"

    def provision(self, env_name: str, commit: str, manifest: model.Manifest, **kw: Any) -> EnvironmentHandle:
        data = {"target_group_arn": tg_arn(env_name)}
        return EnvironmentHandle(env_name, commit, f"https://{env_name}.example", "aws", data)

    def health(self, handle: EnvironmentHandle, *, timeout: float = 2.0) -> Health:
        return Health("up")

    def destroy(self, handle: EnvironmentHandle) -> DestroyOutcome:
        return DestroyOutcome(handle.env, True)

    def list(self) -> tuple[EnvironmentHandle, ...]:
        return ()

    def shared_resources(self) -> NoShared:
        return NoShared()


class _Routes:
    """A splitter that records every route call's weights."""

    def __init__(self, routes: list[dict[str, float]]) -> None:
        self.routes = routes

    def url(self) -> str | None:
        return "https://shop.example"

    def upstream(self, url: str | None, handle: Mapping[str, Any] | None) -> str | None:
        return url

    def route(self, upstreams: Mapping[str, str], weights: Mapping[str, float]) -> str:
        self.routes.append({k: v for k, v in weights.items() if v})
        return "https://shop.example"

    def routing(self) -> Mapping[str, float]:
        return self.routes[-1] if self.routes else {}

    def drain(self, names: list[str], timeout: float = 30.0) -> str:
        return "nothing in flight"

    def tallies(self) -> Mapping[str, VariantTally]:
        return {}

    def stop(self) -> bool:
        return False

    def close(self) -> str | None:
        return None


def _aws_like_lifecycle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rollout: model.Rollout, routes: list[dict[str, float]]
) -> Lifecycle:
    monkeypatch.setattr("squals_action.gitcmd.resolve_commit", lambda repo, ref, error: ref)
    m = model.Manifest(path="squals.yml", name="shop", app=model.App(start="true"), rollout=rollout)
    lc = Lifecycle(tmp_path, m, open_memory_store(), _Islands(tmp_path), _Routes(routes), tmp_path / "logs")
    for pr in (1, 2):
        assert lc.deploy(pr, "a" * 39 + str(pr)).ok
    assert lc.promote(1).ok  # the first prod: nothing to bake against
    return lc


def test_the_last_read_waits_for_the_window_reaching_the_bakes_end_then_gives_up_inconclusive(
    since: datetime,
) -> None:
    clock = stepping_clock(since + timedelta(minutes=5), step=0.0)  # CloudWatch's clock stands still
    signals = source(clock)
    signals.settle_limit = 0.3  # instead of 150 s: the bound, not its size, is under test
    ticks: list[float] = []
    out = bake(
        blue=BLUE,
        rollout=model.Rollout(blue_share=10, bake=0.2, check_interval=0.05, kpis=KPIS),
        source=signals,
        health=lambda: HealthReading(ok=True),
        on_tick=lambda t: ticks.append(t.elapsed),
    )
    assert not out.ok and out.inconclusive and out.reason is not None
    ready = (since + timedelta(minutes=7, seconds=40)).strftime("%H:%M:%S")
    assert out.reason.startswith(
        f"inconclusive: waiting for CloudWatch: the window reaching the bake's end is readable from {ready} "
        "UTC (delay 60 s); not readable within 0.3 s of the bake's end"
    )
    assert max(ticks) >= 0.2 + 0.3  # it kept checking (alarms, health) while it waited
    assert signals.reader.calls == 0  # an immature window is never asked for
