"""Metric sources: Prometheus' HTTP API served by a real tiny server on 127.0.0.1; the Dealer's tallies."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import ClassVar
from urllib.parse import parse_qs, urlsplit

import pytest

from squals_action.dealer.interface import DealerError, EventSums, VariantTally
from squals_action.experiments.cloudwatch_source import AwsPlace, CloudWatchMetrics, custom_metric
from squals_action.experiments.dealer_metrics import DealerMetrics
from squals_action.experiments.interface import ExperimentError, MetricError, MetricSource, Reading
from squals_action.experiments.observe import observe
from squals_action.experiments.prometheus import PrometheusSource, render_query
from squals_action.experiments.sources import SOURCES, SourceContext, build_sources, check_declarations
from squals_action.experiments.sufficient import Mean, Proportion, Ratio
from squals_action.manifest import model
from squals_action.providers.cloudwatch import CloudWatch
from tests.support.aws import REGION
from tests.support.cloudwatch import LISTENER_ARN, put_alb, put_custom, tg_arn
from tests.support.local_http import LocalServer, QuietHandler


class FakePrometheus(QuietHandler):
    """Answers ``/api/v1/query`` the way Prometheus documents it (status, data.resultType, data.result)."""

    answers: ClassVar[dict[str, tuple[int, dict[str, object]]]] = {}
    seen: ClassVar[list[str]] = []
    fail_first: ClassVar[set[str]] = set()

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        query = parse_qs(parts.query).get("query", [""])[0]
        self.seen.append(query)
        if parts.path != "/api/v1/query":
            self._send(404, {"status": "error", "errorType": "not_found", "error": "no such path"})
        elif query in self.fail_first:
            self.fail_first.discard(query)
            self._send(503, {"status": "error", "errorType": "unavailable", "error": "overloaded"})
        elif query in self.answers:
            self._send(*self.answers[query])
        else:
            self._send(
                400, {"status": "error", "errorType": "bad_data", "error": f"parse error in {query[:20]}"}
            )

    def _send(self, code: int, body: dict[str, object]) -> None:
        self.reply(code, json.dumps(body).encode(), {"Content-Type": "application/json"})


def vector(*values: str) -> tuple[int, dict[str, object]]:
    result = [{"metric": {"instance": f"i{i}"}, "value": [1764190000.123, v]} for i, v in enumerate(values)]
    return 200, {"status": "success", "data": {"resultType": "vector", "result": result}}


@pytest.fixture
def prometheus() -> Iterator[str]:
    FakePrometheus.answers, FakePrometheus.seen, FakePrometheus.fail_first = {}, [], set()
    with LocalServer(FakePrometheus) as server:
        yield server.url


def spec(url: str | None, query: str = 'sum(revenue{variant="$variant"})') -> dict[str, model.MetricSource]:
    return {"revenue": model.MetricSource("revenue", "prometheus", query, url)}


def test_vector_is_summed_scalar_taken_empty_is_missing(prometheus: str) -> None:
    FakePrometheus.answers = {
        'sum(revenue{variant="control"})': vector("10.5", "2"),
        'sum(revenue{variant="b"})': (
            200,
            {"status": "success", "data": {"resultType": "scalar", "result": [1764190000, "7"]}},
        ),
        'sum(revenue{variant="c"})': vector(),
    }
    source = PrometheusSource(spec(prometheus))
    try:
        assert isinstance(source, MetricSource)
        reading = source.read(["revenue", "error_rate"], ["control", "b", "c"])
    finally:
        source.close()
    assert reading.values == {"control": {"revenue": 12.5}, "b": {"revenue": 7.0}}
    assert "no data yet" in reading.missing["c"]["revenue"]
    assert not source.knows("error_rate")


def test_refused_query_is_a_per_metric_failure_and_5xx_is_retried(prometheus: str) -> None:
    FakePrometheus.answers = {'sum(revenue{variant="b"})': vector("3")}
    FakePrometheus.fail_first = {'sum(revenue{variant="b"})'}
    source = PrometheusSource(spec(prometheus), backoff=0.01)
    try:
        reading = source.read(["revenue"], ["control", "b"])
    finally:
        source.close()
    assert reading.values == {"b": {"revenue": 3.0}}
    assert "bad_data" in reading.missing["control"]["revenue"]
    assert FakePrometheus.seen.count('sum(revenue{variant="b"})') == 2


def test_unreachable_prometheus_and_missing_url() -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    source = PrometheusSource(spec(f"http://127.0.0.1:{port}"), timeout=1.0, retries=1, backoff=0.01)
    reading = source.read(["revenue"], ["b"])
    assert "unreachable" in reading.missing["b"]["revenue"]
    assert (
        "no Prometheus url" in PrometheusSource(spec(None)).read(["revenue"], ["b"]).missing["b"]["revenue"]
    )


def test_variant_name_cannot_change_the_query_shape() -> None:
    assert render_query('x{v="$variant"}', 'a"}) or vector(1) #') == 'x{v="a\\"}) or vector(1) #"}'
    assert render_query('x{v="${variant}"}', "b") == 'x{v="b"}'


def test_dealer_metrics_from_tallies() -> None:
    tallies = {
        "control": VariantTally(
            "control",
            units=100,
            activations=250,
            events={"checkout": 7},
            event_units={"checkout": 6},
            errors=5,
            latency_p95_ms=12.5,
        ),
    }
    source = DealerMetrics(lambda: tallies)
    reading = source.read(
        ["visitors", "event:checkout", "error_rate", "p95_latency_ms", "p99_latency_ms", "revenue"],
        ["control", "b"],
    )
    assert reading.values["control"] == {
        "visitors": 100.0,
        "event:checkout": 7.0,
        "error_rate": 2.0,
        "p95_latency_ms": 12.5,
    }
    assert reading.values["b"] == {"visitors": 0.0, "event:checkout": 0.0, "error_rate": 0.0}
    assert "p99_latency_ms" in reading.missing["control"]
    # an event is also a proportion of units: 6 of the 100 units sent it (7 times)
    assert reading.stats["control"]["event:checkout"] == Proportion(units=100, converters=6)
    assert reading.stats["b"]["event:checkout"] == Proportion(units=0, converters=0)
    assert not source.knows("revenue") and source.knows("event:signup")

    def broken() -> dict[str, VariantTally]:
        raise DealerError("Dealer admin at http://127.0.0.1:1 unreachable: ConnectionError")

    with pytest.raises(MetricError, match="cannot be read"):
        DealerMetrics(broken).read(["visitors"], ["b"])


def test_dealer_metrics_give_means_and_ratios_from_the_per_unit_sums() -> None:
    """Three units: requests 1, 2, 3; revenue 10 and 20 from the first two (the third paid nothing); a
    checkout count without values from the last two (1 and 2 events)."""
    tally = VariantTally(
        "b",
        units=3,
        activations=6,
        unit_activations=6,
        unit_activations_sq=1 + 4 + 9,
        event_sums={
            "revenue": EventSums(2, 2, 2, 30.0, 500.0, 30.0, 1 * 1 + 1 * 2, 10 * 1 + 20 * 2),
            "checkout": EventSums(2, 3, 5, 0.0, 0.0, 0.0, 1 * 2 + 2 * 3, 0.0),
        },
        event_units={"revenue": 2, "checkout": 2},
    )
    source = DealerMetrics(lambda: {"b": tally}, means=frozenset({"event:revenue", "event:checkout"}))
    metrics = ["event:revenue", "event:checkout", "event:revenue/activations", "activations/visitors"]
    assert all(source.knows(m) for m in metrics) and not source.knows("event:a/event:b")
    stats = source.read(metrics, ["b"]).stats["b"]
    assert stats["event:revenue"] == Mean(n=3, total=30.0, sum_squares=500.0)
    assert stats["event:checkout"] == Mean(n=3, total=3, sum_squares=5)  # no values: the count per unit
    assert stats["event:revenue/activations"] == Ratio(
        n=3, numerator=30.0, numerator_squares=500.0, denominator=6, denominator_squares=14, cross=50.0
    )
    assert stats["activations/visitors"] == Ratio(
        n=3, numerator=6, numerator_squares=14, denominator=3, denominator_squares=3, cross=6
    )
    assert source.read(["event:revenue/activations"], ["b"]).values["b"]["event:revenue/activations"] == 5.0
    assert DealerMetrics(lambda: {"b": tally}).read(["event:revenue"], ["b"]).stats["b"]["event:revenue"] == (
        Proportion(units=3, converters=2)
    )


# ------------------------------------------------------------------ the registry: every source, one contract

TALLIES = {
    "control": VariantTally(
        "control", units=40, activations=90, events={"checkout": 3}, event_units={"checkout": 2}, errors=1
    )
}
VARIANTS = ["control", "b"]


def experiment(metrics: dict[str, model.MetricSource]) -> model.Experiment:
    return model.Experiment(
        variants={v: model.Variant(v, "squals.yml") for v in VARIANTS},
        control="control",
        split={"control": 50.0, "b": 50.0},
        objective=model.Objective("conversion", "maximize", "event:checkout"),
        guardrails=(model.Guardrail("revenue", max_increase=10.0), model.Guardrail("latency_s", max=1.0)),
        metrics=metrics,
    )


def broken_tallies() -> dict[str, VariantTally]:
    raise DealerError("Dealer admin at http://127.0.0.1:1 unreachable: ConnectionError")


#: A custom metric the app emits per variant and environment (CloudWatch's metric array as the query).
CHECKOUT = {
    "checkout": model.MetricSource(
        "checkout",
        "cloudwatch",
        '["Shop", "Checkout", "Variant", "$variant", "Environment", "$environment", {"stat": "Sum"}]',
    )
}


def closed_port() -> str:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


@dataclass(frozen=True)
class Sample:
    """How to exercise one registered kind: a metric it knows (with control's value), one it does not."""

    known: str
    control_value: float
    unknown: str
    usable: Callable[[str], SourceContext]  # given the fake Prometheus' URL
    unusable: Callable[[], SourceContext]
    aws: bool = False  # reads AWS: moto's server (the aws_cloud fixture) holds its data


def _aws_context(metrics: dict[str, model.MetricSource]) -> SourceContext:
    """An experiment on AWS that started 10 minutes ago; a variant ``b`` without any data."""
    return SourceContext(
        spec=experiment(metrics),
        tallies=None,
        env={},
        aws=AwsPlace(
            region=REGION,
            listener_arn=LISTENER_ARN,
            target_groups={v: tg_arn(v) for v in VARIANTS},
            environments={v: f"exp-{v}" for v in VARIANTS},
            since=datetime.now(UTC) - timedelta(minutes=10),
        ),
    )


def _alb_context(url: str) -> SourceContext:
    put_alb(tg_arn("control"), "RequestCount", 90.0, minutes_ago=5)
    return _aws_context({})


def _cloudwatch_context(url: str) -> SourceContext:
    put_custom("Checkout", {"Environment": "exp-control", "Variant": "control"}, 3.0, minutes_ago=5)
    return _aws_context(CHECKOUT)


def _context(
    metrics: dict[str, model.MetricSource], tallies: Callable[[], dict[str, VariantTally]]
) -> SourceContext:
    return SourceContext(spec=experiment(metrics), tallies=tallies, env={})


#: One sample per registered kind; a kind registered without one fails test_every_kind_has_a_sample.
SAMPLES: dict[str, Sample] = {
    "dealer": Sample(
        known="event:checkout",
        control_value=3.0,
        unknown="revenue",
        usable=lambda url: _context({}, lambda: TALLIES),
        unusable=lambda: _context({}, broken_tallies),
    ),
    "prometheus": Sample(
        known="revenue",
        control_value=4.0,
        unknown="event:checkout",
        usable=lambda url: _context(spec(url), lambda: TALLIES),
        unusable=lambda: _context(spec(closed_port()), lambda: TALLIES),
    ),
    "alb": Sample(
        known="activations",
        control_value=90.0,
        unknown="event:checkout",
        usable=_alb_context,
        unusable=lambda: _aws_context({}),
        aws=True,
    ),
    "cloudwatch": Sample(
        known="checkout",
        control_value=3.0,
        unknown="activations",
        usable=_cloudwatch_context,
        unusable=lambda: _aws_context(CHECKOUT),
        aws=True,
    ),
}


def test_every_kind_has_a_sample() -> None:
    assert next(iter(SOURCES)) == "dealer"  # first asked: the source every experiment has
    assert set(SAMPLES) == set(SOURCES), "register a Sample for every metric source kind"


@pytest.mark.parametrize("kind", sorted(SOURCES))
def test_registered_source_reads_known_metrics_and_never_invents_unknown_ones(
    prometheus: str, kind: str, request: pytest.FixtureRequest
) -> None:
    sample = SAMPLES[kind]
    if sample.aws:
        request.getfixturevalue("aws_cloud")
    FakePrometheus.answers = {
        'sum(revenue{variant="control"})': vector("4"),
        'sum(revenue{variant="b"})': vector(),
    }
    source = SOURCES[kind](sample.usable(prometheus))
    assert source is not None
    try:
        assert isinstance(source, MetricSource)
        assert source.name == kind
        assert source.knows(sample.known) and not source.knows(sample.unknown)
        reading = source.read([sample.known, sample.unknown], VARIANTS)
    finally:
        if isinstance(source, PrometheusSource):
            source.close()
    assert reading.values["control"][sample.known] == sample.control_value
    for variant in VARIANTS:  # a known metric is measured or missing with a reason, for every variant
        measured = sample.known in reading.values.get(variant, {})
        assert measured != (sample.known in reading.missing.get(variant, {})), variant
        assert reading.missing.get(variant, {}).get(sample.known, "x"), "a missing metric says why"
        # an unknown metric gets no value: it is left out or listed missing, never made up (e.g. as 0)
        assert sample.unknown not in reading.values.get(variant, {})


@pytest.mark.parametrize("kind", sorted(SOURCES))
def test_unusable_registered_source_raises_metric_error_or_reports_missing(
    kind: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    sample = SAMPLES[kind]
    if sample.aws:  # AWS unreachable: nobody listens at the endpoint, and one attempt only
        request.getfixturevalue("aws_cloud")
        monkeypatch.setenv("AWS_ENDPOINT_URL", closed_port())
        monkeypatch.setattr(CloudWatch, "max_attempts", 1)
    source = SOURCES[kind](sample.unusable())
    assert source is not None
    try:
        reading = source.read([sample.known], VARIANTS)
    except MetricError as exc:
        assert exc.one_line()
        return
    finally:
        if isinstance(source, PrometheusSource):
            source.close()
    for variant in VARIANTS:  # nothing measured, and each variant says why
        assert sample.known not in reading.values.get(variant, {})
        assert reading.missing[variant][sample.known]


def test_build_sources_builds_in_registry_order_and_closes_connections(
    prometheus: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    closed: list[str] = []

    class Probe:
        name = "probe"

        def knows(self, metric: str) -> bool:
            return metric == "latency_s"

        def read(self, metrics: Sequence[str], variants: Sequence[str]) -> Reading:
            return Reading({v: {"latency_s": 0.25} for v in variants})

        def close(self) -> None:
            closed.append(self.name)

    monkeypatch.setitem(SOURCES, "probe", lambda ctx: Probe())
    FakePrometheus.answers = {
        'sum(revenue{variant="control"})': vector("4"),
        'sum(revenue{variant="b"})': vector(),
    }
    metrics = {**spec(prometheus), "cpu": model.MetricSource("cpu", "cloudwatch", "CPUUtilization")}
    context = SourceContext(spec=experiment(metrics), tallies=lambda: TALLIES, env={})
    with build_sources(context) as sources:
        assert [s.name for s in sources] == ["dealer", "prometheus", "probe"]
        observed = observe(context.spec, sources, VARIANTS, datetime(2026, 1, 1, tzinfo=UTC))
        assert closed == []
    assert closed == ["probe"]
    control, b = observed["control"], observed["b"]
    # conversions are the units that checked out (2 of 40), not the 3 checkout events
    assert (control.units, control.conversions, control.activations, control.errors) == (40, 2, 90, 1)
    assert control.metrics == {"activations": 90.0, "errors": 1.0, "revenue": 4.0, "latency_s": 0.25}
    assert (b.units, b.conversions) == (0, 0) and "no data yet" in b.missing["revenue"]
    # a declared kind without a registered factory measures nothing: missing, never 0
    cpu_guard = model.Guardrail("cpu", max=90.0)
    with build_sources(context) as sources:
        spec_cpu = replace(context.spec, guardrails=(cpu_guard,))
        assert observe(spec_cpu, sources, VARIANTS, datetime(2026, 1, 1, tzinfo=UTC))["b"].missing == {
            "cpu": "no metric source measures it"
        }


def test_cloudwatch_declaration_is_the_metric_array_and_a_bad_one_names_its_line() -> None:
    where = model.Location("squals.yml", 14, 7)
    good = custom_metric(
        model.MetricSource(
            "revenue",
            "cloudwatch",
            '["Shop", "Revenue", "Variant", "$variant", {"stat": "Average", "squares": "RevenueSquared"}]',
            location=where,
        )
    )
    assert (good.namespace, good.metric, good.statistic, good.squares) == (
        "Shop",
        "Revenue",
        "Average",
        "RevenueSquared",
    )
    assert good.dimensions_for("green", "exp-green") == (("Variant", "green"),)
    for query, expected in (
        ("Shop Revenue", "not JSON; expected CloudWatch's metric array"),
        ('["Shop"]', "namespace, metric, then dimension name/value pairs"),
        ('["Shop", "Revenue", "Variant"]', "namespace, metric, then dimension name/value pairs"),
        ('["Shop", "Revenue", {"period": 60}]', "unknown option 'period'"),
        ('["Shop", "Revenue", {"stat": "Median"}]', "statistic 'Median'"),
        ('["Shop", "Revenue", "Variant", "$colour"]', "unknown placeholder $colour"),
    ):
        with pytest.raises(ExperimentError) as caught:
            custom_metric(model.MetricSource("revenue", "cloudwatch", query, location=where))
        line = caught.value.one_line()
        assert line.startswith("squals.yml:14:7: experiment.metrics.revenue.query: "), line
        assert expected in line and "\n" not in line
    bad = model.MetricSource("revenue", "cloudwatch", "Shop Revenue", location=where)
    with pytest.raises(
        ExperimentError, match=r"^squals.yml:14:7: experiment.metrics.revenue.query: not JSON"
    ):
        check_declarations(experiment({"revenue": bad}))  # what a start checks before anything runs


def test_cloudwatch_reads_the_window_since_the_start_and_no_data_is_missing(aws_cloud: object) -> None:
    put_custom("Checkout", {"Environment": "exp-control", "Variant": "control"}, 5.0, minutes_ago=4)
    put_custom("Checkout", {"Environment": "exp-control", "Variant": "control"}, 2.0, minutes_ago=3)
    put_custom("Checkout", {"Environment": "exp-control", "Variant": "control"}, 9.0, minutes_ago=30)
    context = _aws_context(CHECKOUT)  # started 10 minutes ago: the datum of 30 minutes ago is not its own
    assert context.aws is not None
    source = CloudWatchMetrics(context.spec.metrics, context.aws)
    reading = source.read(["checkout"], VARIANTS)
    assert reading.values == {"control": {"checkout": 7.0}}
    assert reading.missing["b"]["checkout"].startswith("no data")
    assert source.reader().calls == 1  # every variant in one GetMetricData

    fresh = replace(context.aws, since=datetime.now(UTC))
    early = CloudWatchMetrics(context.spec.metrics, fresh)
    reading = early.read(["checkout"], VARIANTS)
    assert reading.values == {}
    assert all(reading.missing[v]["checkout"].startswith("no data yet") for v in VARIANTS)
    assert early.reader().calls == 0  # an unmatured window is answered without a call


def test_cloudwatch_gives_a_mean_its_sufficient_statistics_when_the_app_emits_squares(
    aws_cloud: object,
) -> None:
    declared = model.MetricSource(
        "revenue",
        "cloudwatch",
        '["Shop", "Revenue", "Variant", "$variant", {"stat": "Average", "squares": "RevenueSquared"}]',
    )
    for value, minutes in ((10.0, 4), (20.0, 3)):  # one value per visitor, and its square
        put_custom("Revenue", {"Variant": "control"}, value, minutes_ago=minutes)
        put_custom("RevenueSquared", {"Variant": "control"}, value * value, minutes_ago=minutes)
    context = _aws_context({"revenue": declared})
    assert context.aws is not None
    reading = CloudWatchMetrics(context.spec.metrics, context.aws).read(["revenue"], VARIANTS)
    assert reading.values == {"control": {"revenue": 15.0}}
    assert reading.stats == {"control": {"revenue": Mean(n=2.0, total=30.0, sum_squares=500.0)}}
    assert "b" not in reading.stats and reading.missing["b"]["revenue"].startswith("no data")

    prometheus_style = replace(declared, units="count(revenue)", location=model.Location("squals.yml", 9, 5))
    with pytest.raises(
        ExperimentError, match=r"^squals.yml:9:5: experiment.metrics.revenue: units and squares"
    ):
        custom_metric(prometheus_style)
