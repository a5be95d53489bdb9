"""Metric sources: Prometheus' HTTP API served by a real tiny server on 127.0.0.1; the Dealer's tallies."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar
from urllib.parse import parse_qs, urlsplit

import pytest

from squals_action.dealer.interface import DealerError, VariantTally
from squals_action.experiments.dealer_metrics import DealerMetrics
from squals_action.experiments.interface import MetricError, MetricSource
from squals_action.experiments.prometheus import PrometheusSource, render_query
from squals_action.manifest import model


class FakePrometheus(BaseHTTPRequestHandler):
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
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


def vector(*values: str) -> tuple[int, dict[str, object]]:
    result = [{"metric": {"instance": f"i{i}"}, "value": [1764190000.123, v]} for i, v in enumerate(values)]
    return 200, {"status": "success", "data": {"resultType": "vector", "result": result}}


@pytest.fixture
def prometheus() -> Iterator[str]:
    FakePrometheus.answers, FakePrometheus.seen, FakePrometheus.fail_first = {}, [], set()
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakePrometheus)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


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
            "control", units=100, activations=250, events={"checkout": 7}, errors=5, latency_p95_ms=12.5
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
    assert not source.knows("revenue") and source.knows("event:signup")

    def broken() -> dict[str, VariantTally]:
        raise DealerError("Dealer admin at http://127.0.0.1:1 unreachable: ConnectionError")

    with pytest.raises(MetricError, match="cannot be read"):
        DealerMetrics(broken).read(["visitors"], ["b"])
