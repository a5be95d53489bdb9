"""The CloudWatch reader against moto's server on 127.0.0.1: figures written with ``put_metric_data`` read
back over windows, "no data" kept apart from 0, batching counted from the requests moto recorded, alarms.

What moto 5.2.1 cannot do is tested against :class:`ScriptedCloudWatch` below (a CloudWatch JSON-protocol
server on 127.0.0.1 answering scripted pages): moto answers an extended statistic (``p95``) with HTTP 500
(its ``Statistics`` has no percentiles and serialises ``None``), never pages ``get_metric_data`` (no
``NextToken``) and never answers a per-result ``InternalError``. moto also compares dimensions in the order
they were written (its ``Dimension.__lt__`` is broken), so the tests write them sorted by name, the order
squals asks in; CloudWatch itself ignores the order.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from squals_action.lifecycle.kpi import evaluate
from squals_action.manifest.model import Kpi, Location
from squals_action.providers.cloudwatch import (
    ALB_NAMESPACE,
    CloudWatch,
    CloudWatchError,
    CustomMetric,
    SufficientStats,
    load_balancer_dimension,
    target_group_dimension,
)
from squals_action.providers.cloudwatch_window import NotYet, Window, read_window
from tests.support import aws
from tests.support.local_http import LocalServer, QuietHandler

LB_ARN = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/front/50dc6c495c0c9188"
LISTENER_ARN = LB_ARN.replace(":loadbalancer/", ":listener/") + "/f2f7dc8efc522ab2"


def tg_arn(name: str) -> str:
    return f"arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/{name}/73e2d6bc24d8a067"


def put(
    cw: Any,
    namespace: str,
    metric: str,
    dims: Sequence[tuple[str, str]],
    when: datetime,
    value: float | None = None,
    values: Sequence[float] = (),
) -> None:
    datum: dict[str, Any] = {
        "MetricName": metric,
        "Dimensions": [{"Name": k, "Value": v} for k, v in dims],
        "Timestamp": when,
    }
    if values:
        datum["Values"] = list(values)
    else:
        datum["Value"] = value
    cw.put_metric_data(Namespace=namespace, MetricData=[datum])


def alb_dims(target_group: str) -> list[tuple[str, str]]:
    return [
        ("LoadBalancer", load_balancer_dimension(LB_ARN)),
        ("TargetGroup", target_group_dimension(target_group)),
    ]


def recent_window(now: datetime) -> Window:
    window = read_window(now, now - timedelta(minutes=10))
    assert isinstance(window, Window)
    return window


# ------------------------------------------------------------------------------------------------- ARNs


def test_dimensions_come_from_the_arns_moto_made(aws_cloud: aws.Cloud) -> None:
    ec2 = boto3.session.Session().client("ec2", region_name=aws.REGION)
    elbv2 = boto3.session.Session().client("elbv2", region_name=aws.REGION)
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{i}.0/24", AvailabilityZone=f"us-east-1{z}")["Subnet"][
            "SubnetId"
        ]
        for i, z in enumerate("ab")
    ]
    lb = elbv2.create_load_balancer(Name="front", Subnets=subnets)["LoadBalancers"][0]["LoadBalancerArn"]
    tg = elbv2.create_target_group(Name="blue", Protocol="HTTP", Port=80, VpcId=vpc)["TargetGroups"][0][
        "TargetGroupArn"
    ]
    listener = elbv2.create_listener(
        LoadBalancerArn=lb,
        Protocol="HTTP",
        Port=80,
        DefaultActions=[{"Type": "forward", "TargetGroupArn": tg}],
    )["Listeners"][0]["ListenerArn"]

    lb_dim = load_balancer_dimension(lb)
    assert lb_dim.startswith("app/front/") and lb.endswith(lb_dim)
    assert load_balancer_dimension(listener) == lb_dim
    tg_dim = target_group_dimension(tg)
    assert tg_dim.startswith("targetgroup/blue/") and tg.endswith(tg_dim)


def test_an_arn_of_something_else_is_a_one_line_error() -> None:
    with pytest.raises(CloudWatchError, match=r"not a target group ARN: .*targetgroup/<name>/<id>") as bad:
        target_group_dimension(LB_ARN)
    assert "\n" not in bad.value.one_line()
    with pytest.raises(CloudWatchError, match="not an Application Load Balancer or listener ARN"):
        load_balancer_dimension(tg_arn("blue"))
    with pytest.raises(CloudWatchError, match="not an Application Load Balancer"):
        load_balancer_dimension("app/front/50dc6c495c0c9188")


# ------------------------------------------------------------------------------------ target-group KPIs


def test_kpis_of_blue_and_green_over_the_window_in_one_call(
    cw: Any, moto_calls: Callable[[], list[str]]
) -> None:
    now = datetime.now(UTC)
    window = recent_window(now)
    blue, green = tg_arn("blue"), tg_arn("green")
    inside = window.start + timedelta(seconds=90)
    put(cw, ALB_NAMESPACE, "RequestCount", alb_dims(blue), inside, 100)
    put(cw, ALB_NAMESPACE, "HTTPCode_Target_5XX_Count", alb_dims(blue), inside, 50)
    put(cw, ALB_NAMESPACE, "RequestCount", alb_dims(green), inside, 100)
    put(cw, ALB_NAMESPACE, "HTTPCode_Target_5XX_Count", alb_dims(green), inside, 0)
    # before the window (before the bake) and after it (not matured yet): never counted
    put(cw, ALB_NAMESPACE, "RequestCount", alb_dims(blue), window.start - timedelta(seconds=1), 1000)
    put(cw, ALB_NAMESPACE, "HTTPCode_Target_5XX_Count", alb_dims(green), window.end, 1000)
    assert moto_calls() == ["PutMetricData"] * 6

    reader = CloudWatch(aws.REGION)
    figures = reader.target_group_kpis({"blue": blue, "green": green}, LISTENER_ARN, window, now=now)

    assert moto_calls()[6:] == ["GetMetricData"]
    assert reader.calls == 1
    b, g = figures["blue"], figures["green"]
    assert (b.get("activations"), b.get("target_5xx"), b.get("errors"), b.get("error_rate")) == (
        100,
        50,
        50,
        50.0,
    )
    assert (g.get("activations"), g.get("target_5xx"), g.get("errors"), g.get("error_rate")) == (
        100,
        0,
        0,
        0.0,
    )
    # no TargetResponseTime written: the latencies are "no data", with the metric and window named
    assert b.get("p95_latency_ms") is None
    assert b.missing["p95_latency_ms"] == (
        "no data: no datapoints for AWS/ApplicationELB TargetResponseTime p95 [LoadBalancer=app/front/"
        f"50dc6c495c0c9188, TargetGroup=targetgroup/blue/73e2d6bc24d8a067] in {window.describe()}"
    )
    readings = {
        r.metric: r
        for r in evaluate((Kpi("error_rate", max=1.0), Kpi("p95_latency_ms", max=400)), b.metrics())
    }
    assert not readings["error_rate"].ok and readings["error_rate"].value == 50.0
    assert readings["p95_latency_ms"].value is None and readings["p95_latency_ms"].describe().endswith(
        "not measured"
    )


def test_only_the_kpis_asked_for_are_read(cw: Any, moto_calls: Callable[[], list[str]]) -> None:
    now = datetime.now(UTC)
    window = recent_window(now)
    blue = tg_arn("blue")
    put(cw, ALB_NAMESPACE, "RequestCount", alb_dims(blue), window.start, 200)
    put(cw, ALB_NAMESPACE, "HTTPCode_ELB_5XX_Count", alb_dims(blue), window.start, 3)
    # moto answers any percentile over datapoints with HTTP 500: a bake watching only error_rate never asks
    put(cw, ALB_NAMESPACE, "TargetResponseTime", alb_dims(blue), window.start, values=[0.1, 0.2])
    reader = CloudWatch(aws.REGION)

    figures = reader.target_group_kpis(
        {"blue": blue}, LB_ARN, window, kpis=["error_rate", "visitors"], now=now
    )

    assert figures["blue"].metrics() == {
        "activations": 200.0,
        "target_5xx": None,
        "elb_5xx": 3.0,
        "errors": 3.0,
        "error_rate": 1.5,
    }
    assert reader.calls == 1 and moto_calls()[-1] == "GetMetricData"
    latency = reader.target_group_kpis({"blue": blue}, LB_ARN, window, kpis=["activations"], now=now)["blue"]
    assert latency.metrics() == {"activations": 200.0}


def test_a_5xx_count_alb_did_not_publish_counts_as_0_only_next_to_requests(cw: Any) -> None:
    now = datetime.now(UTC)
    window = recent_window(now)
    put(cw, ALB_NAMESPACE, "RequestCount", alb_dims(tg_arn("blue")), window.start, 40)

    blue = CloudWatch(aws.REGION).target_group_kpis({"blue": tg_arn("blue")}, LB_ARN, window, now=now)["blue"]

    assert blue.get("error_rate") == 0.0 and blue.get("errors") == 0.0
    assert blue.get("target_5xx") is None and blue.missing["target_5xx"].startswith("no data")


def test_a_target_group_without_requests_has_no_error_rate_never_0(cw: Any) -> None:
    now = datetime.now(UTC)
    window = recent_window(now)
    put(cw, ALB_NAMESPACE, "RequestCount", alb_dims(tg_arn("green")), window.start, 100)

    blue = CloudWatch(aws.REGION).target_group_kpis({"blue": tg_arn("blue")}, LB_ARN, window, now=now)["blue"]

    assert blue.values == {}
    assert blue.metrics() == dict.fromkeys(blue.metrics())  # every KPI None
    assert blue.missing["error_rate"].startswith("no data: no datapoints for AWS/ApplicationELB RequestCount")
    assert blue.missing["activations"] == blue.missing["error_rate"]


def test_a_window_that_has_not_matured_is_no_data_yet_without_a_call(
    moto_calls: Callable[[], list[str]],
) -> None:
    now = datetime.now(UTC)
    window = read_window(now, now - timedelta(seconds=30))
    assert isinstance(window, NotYet)

    reader = CloudWatch(aws.REGION)
    figures = reader.target_group_kpis({"blue": tg_arn("blue")}, LB_ARN, window, now=now)["blue"]

    assert figures.values == {} and figures.window is None
    assert set(figures.missing.values()) == {window.reason}
    assert window.reason.startswith("no data yet")
    assert moto_calls() == [] and reader.calls == 0


# ---------------------------------------------------------------------------------------- custom metrics


REVENUE = CustomMetric(
    "Shop",
    "Revenue",
    "Average",
    {"Variant": "$variant", "Environment": "${environment}"},
    squares="RevenueSquared",
)


def test_custom_metrics_give_sufficient_statistics_per_variant(cw: Any) -> None:
    now = datetime.now(UTC)
    window = recent_window(now)
    when = window.start + timedelta(seconds=30)
    control = [("Environment", "prod"), ("Variant", "control")]
    green = [("Environment", "exp-green"), ("Variant", "green")]
    put(cw, "Shop", "Revenue", control, when, values=[0, 10, 20])
    put(cw, "Shop", "RevenueSquared", control, when, values=[0, 100, 400])
    put(cw, "Shop", "Revenue", green, when, values=[30, 50])
    put(cw, "Shop", "Revenue", green, when + timedelta(minutes=2), value=40)
    put(cw, "Shop", "RevenueSquared", green, when, values=[900, 2500])
    put(cw, "Shop", "RevenueSquared", green, when + timedelta(minutes=2), value=1600)
    # another environment of the same variant is another series
    put(cw, "Shop", "Revenue", [("Environment", "pr-3"), ("Variant", "green")], when, value=1e6)

    variants = {"control": "prod", "green": "exp-green", "blue": "exp-blue"}
    reading = CloudWatch(aws.REGION).custom_metrics({"revenue": REVENUE}, variants, window, now=now)[
        "revenue"
    ]

    assert reading["control"].stats == SufficientStats(n=3, total=30, sum_squares=500, minimum=0, maximum=20)
    assert reading["control"].value == 10.0 and reading["control"].missing == ""
    green_stats = reading["green"].stats
    assert green_stats == SufficientStats(n=3, total=120, sum_squares=5000, minimum=30, maximum=50)
    assert reading["green"].value == 40.0 and green_stats.variance == pytest.approx(100.0)
    assert reading["blue"].value is None and reading["blue"].stats is None
    assert reading["blue"].missing.startswith("no data: no datapoints for Shop Revenue SampleCount")


def test_a_mean_without_its_squares_metric_says_so(cw: Any) -> None:
    now = datetime.now(UTC)
    window = recent_window(now)
    put(cw, "Shop", "Revenue", [("Environment", "prod"), ("Variant", "control")], window.start, values=[1, 3])

    reading = CloudWatch(aws.REGION).custom_metrics(
        {"revenue": REVENUE}, {"control": "prod"}, window, now=now
    )
    control = reading["revenue"]["control"]

    assert control.value == 2.0 and control.stats is not None and control.stats.sum_squares is None
    assert control.stats.variance is None
    assert control.missing.startswith("no data: no datapoints for Shop RevenueSquared Sum")


def test_more_than_500_queries_are_split_and_every_variant_read(
    cw: Any, moto_calls: Callable[[], list[str]]
) -> None:
    now = datetime.now(UTC)
    window = recent_window(now)
    variants = {f"v{i:03d}": f"exp-v{i:03d}" for i in range(130)}  # 4 statistics each: 520 queries
    data = [
        {
            "MetricName": "Checkout",
            "Dimensions": [{"Name": "Variant", "Value": name}],
            "Timestamp": window.start,
            "Values": [1.0] * (i % 7 + 1),
        }
        for i, name in enumerate(variants)
    ]
    cw.put_metric_data(Namespace="Shop", MetricData=data)
    checkout = CustomMetric("Shop", "Checkout", "Sum", {"Variant": "$variant"})
    before = len(moto_calls())

    reader = CloudWatch(aws.REGION)
    reading = reader.custom_metrics({"checkout": checkout}, variants, window, now=now)["checkout"]

    assert moto_calls()[before:] == ["GetMetricData", "GetMetricData"]
    assert reader.calls == 2
    assert {name: r.value for name, r in reading.items()} == {
        name: i % 7 + 1 for i, name in enumerate(variants)
    }


def test_high_resolution_sums_combine_across_periods_but_a_percentile_does_not(cw: Any) -> None:
    now = datetime.now(UTC)
    since = now - timedelta(seconds=58)
    window = read_window(now, since, delay=5, resolution=10)
    assert isinstance(window, Window) and window.seconds in (40, 50)  # 10 s periods, several datapoints
    dims = [("Variant", "green")]
    for step in range(window.seconds // 10):
        put(cw, "Shop", "Latency", dims, window.start + timedelta(seconds=10 * step + 1), values=[step + 1.0])
    summed = CustomMetric("Shop", "Latency", "Sum", {"Variant": "$variant"}, resolution=10)
    p95 = CustomMetric("Shop", "Latency", "p95", {"Variant": "$variant"}, resolution=10)
    reader = CloudWatch(aws.REGION)

    total = reader.custom_metrics({"sum": summed}, {"green": "prod"}, window, now=now)["sum"]["green"]
    periods = window.seconds // 10
    assert total.value == periods * (periods + 1) / 2
    assert total.stats is not None and total.stats.n == periods and total.stats.maximum == periods

    # a percentile over several periods cannot be combined: see the scripted server's test below (moto
    # answers any percentile over datapoints with HTTP 500); without datapoints it is "no data"
    missing = reader.custom_metrics({"p95": p95}, {"blue": "prod"}, window, now=now)["p95"]["blue"]
    assert missing.value is None and missing.missing.startswith("no data")


def test_a_declared_unit_reads_only_data_sent_with_that_unit(cw: Any) -> None:
    now = datetime.now(UTC)
    window = recent_window(now)
    dims = [{"Name": "Variant", "Value": "green"}]
    cw.put_metric_data(
        Namespace="Shop",
        MetricData=[
            {
                "MetricName": "Basket",
                "Dimensions": dims,
                "Timestamp": window.start,
                "Value": 3,
                "Unit": "Count",
            },
            {
                "MetricName": "Basket",
                "Dimensions": dims,
                "Timestamp": window.start,
                "Value": 9,
                "Unit": "Bytes",
            },
        ],
    )
    counted = CustomMetric("Shop", "Basket", "Sum", {"Variant": "$variant"}, unit="Count")
    every = CustomMetric("Shop", "Basket", "Sum", {"Variant": "$variant"})

    reading = CloudWatch(aws.REGION).custom_metrics(
        {"counted": counted, "every": every}, {"green": "prod"}, window, now=now
    )

    assert reading["counted"]["green"].value == 3.0
    assert reading["every"]["green"].value == 12.0


def test_importing_the_reader_loads_no_boto3() -> None:
    code = (
        "import sys, squals_action.providers.cloudwatch, squals_action.providers.cloudwatch_window; "
        "print(sorted(m for m in ('boto3', 'botocore') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]"


def test_custom_metric_declarations_are_checked_with_their_location() -> None:
    where = Location("squals.yml", 31, 7)
    with pytest.raises(
        CloudWatchError, match=r"^squals.yml:31:7: .*statistic 'Median': expected SampleCount"
    ):
        CustomMetric("Shop", "Revenue", "Median", location=where)
    with pytest.raises(CloudWatchError, match=r"dimension Variant: unknown placeholder \$varaint"):
        CustomMetric("Shop", "Revenue", dimensions={"Variant": "$varaint"}, location=where)
    with pytest.raises(CloudWatchError, match=r"resolution 15: expected one of 1, 5, 10, 30, 60"):
        CustomMetric("Shop", "Revenue", resolution=15)
    for stat in ("p95", "p99.9", "tm90", "TM(10%:90%)", "IQM", "SampleCount"):
        assert CustomMetric("Shop", "Revenue", stat).statistic == stat
    assert REVENUE.dimensions_for("green", "exp-green") == (
        ("Environment", "exp-green"),
        ("Variant", "green"),
    )


# ------------------------------------------------------------------------------------------------ alarms


def test_alarms_in_alarm_are_stop_signals(cw: Any, moto_calls: Callable[[], list[str]]) -> None:
    for name in ("shop-5xx", "shop-latency", "shop-cpu"):
        aws.put_alarm(cw, name, state="OK", reason="quiet")
    cw.set_alarm_state(AlarmName="shop-5xx", StateValue="ALARM", StateReason="Threshold Crossed: 50 > 5")
    before = len(moto_calls())

    states = CloudWatch(aws.REGION).alarms(["shop-5xx", "shop-latency"])

    assert moto_calls()[before:] == ["DescribeAlarms"]
    assert states.states == {"shop-5xx": "ALARM", "shop-latency": "OK"}
    assert states.firing == ("shop-5xx",)
    assert states.stop_reason() == "CloudWatch alarm in ALARM: shop-5xx (Threshold Crossed: 50 > 5)"
    cw.set_alarm_state(AlarmName="shop-5xx", StateValue="OK", StateReason="recovered")
    calm = CloudWatch(aws.REGION).alarms(["shop-5xx", "shop-latency"])
    assert calm.firing == () and calm.stop_reason() is None


def test_an_unknown_alarm_is_a_one_line_error_naming_it(cw: Any) -> None:
    aws.put_alarm(cw, "shop-5xx", metric="RequestCount")
    with pytest.raises(CloudWatchError) as unknown:
        CloudWatch(aws.REGION).alarms(
            ["shop-5xx", "shop-5xxx", "gone"], location=Location("squals.yml", 12, 5)
        )
    assert unknown.value.one_line() == (
        "squals.yml:12:5: CloudWatch in us-east-1 has no alarm named 'shop-5xxx', 'gone': "
        "an unknown alarm is a misconfiguration, not a pass "
        "(expected the names of existing metric or composite alarms)"
    )


def test_more_than_100_alarm_names_take_one_call_per_hundred(
    cw: Any, moto_calls: Callable[[], list[str]]
) -> None:
    names = [f"alarm-{i:03d}" for i in range(120)]
    for name in names:
        aws.put_alarm(
            cw, name, namespace="Shop", metric="Checkout", threshold=1, comparison="LessThanThreshold"
        )
    cw.set_alarm_state(AlarmName="alarm-117", StateValue="ALARM", StateReason="no checkouts")
    before = len(moto_calls())

    states = CloudWatch(aws.REGION).alarms(names)

    assert moto_calls()[before:] == ["DescribeAlarms", "DescribeAlarms"]
    assert len(states.states) == 120 and states.firing == ("alarm-117",)


# ------------------------------------------------------------------------- what moto cannot answer


class ScriptedCloudWatch(LocalServer):
    """CloudWatch's JSON protocol on 127.0.0.1: answers each request with the next scripted (status, body)
    and keeps what was asked (operation, body)."""

    def __init__(self, answers: Sequence[tuple[int, dict[str, Any]]]) -> None:
        self.answers = list(answers)
        self.requests: list[tuple[str, dict[str, Any]]] = []
        cloud = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
                cloud.requests.append((str(self.headers.get("X-Amz-Target", "")).rsplit(".", 1)[-1], body))
                status, answer = cloud.answers.pop(0) if cloud.answers else (500, {"__type": "Exhausted"})
                self.reply(
                    status, json.dumps(answer).encode(), {"Content-Type": "application/x-amz-json-1.0"}
                )

        super().__init__(Handler)
        self.start()


@pytest.fixture
def scripted(
    aws_cloud: aws.Cloud, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., ScriptedCloudWatch]]:
    """Point CloudWatch (only) at a scripted server: ``AWS_ENDPOINT_URL_CLOUDWATCH``, as boto3 documents."""
    started: list[ScriptedCloudWatch] = []

    def start(*answers: tuple[int, dict[str, Any]]) -> ScriptedCloudWatch:
        server = ScriptedCloudWatch(answers)
        started.append(server)
        monkeypatch.setenv("AWS_ENDPOINT_URL_CLOUDWATCH", server.url)
        return server

    yield start
    for server in started:
        server.stop()


def result(query_id: str, values: Sequence[float], status: str = "Complete", **extra: Any) -> dict[str, Any]:
    stamp = datetime(2026, 11, 30, 12, 0, tzinfo=UTC).timestamp()
    return {
        "Id": query_id,
        "Label": query_id,
        "Timestamps": [stamp] * len(values),
        "Values": list(values),
        "StatusCode": status,
        **extra,
    }


def test_pages_are_followed_and_percentiles_come_back_in_ms(
    scripted: Callable[..., ScriptedCloudWatch],
) -> None:
    window = Window(datetime(2026, 11, 30, 12, 0, tzinfo=UTC), datetime(2026, 11, 30, 12, 5, tzinfo=UTC))
    now = window.end + timedelta(minutes=2)
    server = scripted(
        (
            200,
            {
                "MetricDataResults": [result("q0", [60.0], "PartialData"), result("q4", [0.25])],
                "NextToken": "page-2",
            },
        ),
        (200, {"MetricDataResults": [result("q0", [40.0]), result("q1", [3.0]), result("q5", [0.5])]}),
    )

    blue = CloudWatch(aws.REGION).target_group_kpis({"blue": tg_arn("blue")}, LB_ARN, window, now=now)["blue"]

    assert [op for op, _ in server.requests] == ["GetMetricData", "GetMetricData"]
    first, second = (body for _, body in server.requests)
    assert "NextToken" not in first and second["NextToken"] == "page-2"
    assert first["MetricDataQueries"] == second["MetricDataQueries"]
    stats = [
        (q["Id"], q["MetricStat"]["Metric"]["MetricName"], q["MetricStat"]["Stat"], q["MetricStat"]["Period"])
        for q in first["MetricDataQueries"]
    ]
    assert stats == [
        ("q0", "RequestCount", "Sum", 300),
        ("q1", "HTTPCode_Target_5XX_Count", "Sum", 300),
        ("q2", "HTTPCode_ELB_5XX_Count", "Sum", 300),
        ("q3", "TargetResponseTime", "p50", 300),
        ("q4", "TargetResponseTime", "p95", 300),
        ("q5", "TargetResponseTime", "p99", 300),
    ]
    assert first["MetricDataQueries"][0]["MetricStat"]["Metric"]["Dimensions"] == [
        {"Name": "LoadBalancer", "Value": "app/front/50dc6c495c0c9188"},
        {"Name": "TargetGroup", "Value": "targetgroup/blue/73e2d6bc24d8a067"},
    ]
    assert blue.get("activations") == 100.0 and blue.get("error_rate") == 3.0
    assert blue.get("p95_latency_ms") == 250.0 and blue.get("p99_latency_ms") == 500.0
    assert blue.get("p50_latency_ms") is None


def test_a_failed_result_and_a_split_percentile_are_no_data_with_the_reason(
    scripted: Callable[..., ScriptedCloudWatch],
) -> None:
    window = Window(datetime(2026, 11, 30, 12, 0, tzinfo=UTC), datetime(2026, 11, 30, 12, 5, tzinfo=UTC))
    scripted(
        (
            200,
            {
                "MetricDataResults": [
                    result(
                        "q0", [], "InternalError", Messages=[{"Code": "InternalError", "Value": "try again"}]
                    ),
                    result("q4", [0.1, 0.2]),
                    result("q5", [float("nan")]),
                ]
            },
        ),
    )
    blue = CloudWatch(aws.REGION).target_group_kpis(
        {"blue": tg_arn("blue")}, LB_ARN, window, now=window.end + timedelta(minutes=2)
    )["blue"]

    assert blue.missing["activations"] == (
        "CloudWatch answered InternalError for AWS/ApplicationELB RequestCount Sum [LoadBalancer=app/front/"
        f"50dc6c495c0c9188, TargetGroup=targetgroup/blue/73e2d6bc24d8a067] in {window.describe()}: try again"
    )
    assert "came in 2 periods of 300 s and a p95 cannot be combined" in blue.missing["p95_latency_ms"]
    assert blue.missing["p99_latency_ms"].startswith("bad data: CloudWatch answered a non-finite value")
    assert blue.values == {}


def test_an_aws_error_is_one_line_quoting_its_code(scripted: Callable[..., ScriptedCloudWatch]) -> None:
    window = Window(datetime(2026, 11, 30, 12, 0, tzinfo=UTC), datetime(2026, 11, 30, 12, 5, tzinfo=UTC))
    scripted(
        (400, {"__type": "InvalidParameterValueException", "message": "The value q0 for Id is invalid."})
    )

    with pytest.raises(CloudWatchError) as failed:
        CloudWatch(aws.REGION).target_group_kpis({"blue": tg_arn("blue")}, LB_ARN, window, now=window.end)
    line = failed.value.one_line()
    assert line.startswith(
        "CloudWatch GetMetricData (6 queries, 2026-11-30 12:00:00-2026-11-30 12:05:00 UTC): "
    )
    assert "InvalidParameterValue" in line and "The value q0 for Id is invalid." in line
