"""Bad data never decides: a tick reading NaN, infinity, a negative count, converters above units or a sum of
squares that cannot belong to its sum says "bad data from <source> for <variant>: <what>", exits 1 and leaves
the experiment's state document (and the state branch) exactly as it was.

A real experiment (real islands behind the real Dealer, state on a bare origin) whose objective's converters
and a latency guardrail's sufficient statistics come from a scripted Prometheus on 127.0.0.1; ``squals
experiment tick`` runs as a subprocess, as a schedule would run it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.support.experiments import Shop, git, make_shop, squals_experiment, stop_everything, visit
from tests.support.local_http import LocalServer, QuietHandler

#: The rest of make_shop's experiment from its objective on (its variants, split and unit stay): converters
#: and a latency guardrail read from Prometheus at ``url``.
EXPERIMENT = """\
  objective: {{maximize: conversion, numerator: buyers, denominator: visitors}}
  guardrails: [{{metric: latency, max_relative_increase: 20%}}]
  min_duration: {{time: 0s, activations: 100000}}
  significance: {{alpha: 0.05, method: sequential}}
  metrics:
    buyers: {{source: prometheus, query: 'buyers{{v="$variant"}}', url: "{url}"}}
    latency:
      source: prometheus
      url: "{url}"
      query: 'latency_sum{{v="$variant"}}'
      units: 'latency_units{{v="$variant"}}'
      squares: 'latency_squares{{v="$variant"}}'
"""


class Prometheus(LocalServer):
    """Answers instant queries from ``answers`` (query -> sample value as Prometheus writes it)."""

    def __init__(self) -> None:
        self.answers: dict[str, str] = {}
        answers = self.answers

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                query = parse_qs(urlsplit(self.path).query)["query"][0]
                value = answers[query]
                body = json.dumps(
                    {
                        "status": "success",
                        "data": {"resultType": "vector", "result": [{"metric": {}, "value": [0, value]}]},
                    }
                ).encode()
                self.reply(200, body, {"Content-Type": "application/json"})

        super().__init__(Handler)
        self.start()

    def healthy(self) -> None:
        """Plausible figures for both variants: 10 of the visitors buy, latency 100 ms +- 10 per unit."""
        for v in ("control", "green"):
            self.answers.update(
                {
                    f'buyers{{v="{v}"}}': "10",
                    f'latency_sum{{v="{v}"}}': "5000",
                    f'latency_units{{v="{v}"}}': "50",
                    f'latency_squares{{v="{v}"}}': str(50 * (100**2 + 10**2)),
                }
            )


@pytest.fixture
def bad_shop(tmp_path: Path) -> Iterator[tuple[Shop, Prometheus]]:
    prometheus = Prometheus()
    shop = make_shop(tmp_path)
    text = (shop.path / "squals.yml").read_text()
    text = text[: text.index("  objective:")] + EXPERIMENT.format(url=prometheus.url)
    (shop.path / "squals.yml").write_text(text)
    git(shop.path, "commit", "-q", "-am", "converters and latency from Prometheus")
    yield shop, prometheus
    prometheus.stop()
    leftovers, _ = stop_everything(shop.path)
    assert leftovers == []


def _state(shop: Shop, eid: str) -> tuple[str, str]:
    """The state branch's head on origin and the experiment's document there."""
    head = git(shop.origin, "rev-parse", "refs/heads/squals/state")
    return head, git(shop.origin, "show", f"squals/state:experiments/{eid}.json")


CASES = [
    ('buyers{v="green"}', "NaN", "bad data from prometheus for green: buyers is nan"),
    ('buyers{v="green"}', "+Inf", "bad data from prometheus for green: buyers is inf"),
    ('buyers{v="green"}', "-3", "bad data from prometheus for green: negative count buyers = -3"),
    ('buyers{v="green"}', "100000", "bad data from prometheus for green: 100000 converters above"),
    (
        'latency_units{v="control"}',
        "-50",
        "bad data from prometheus for control: latency: negative count of units",
    ),
    (
        'latency_squares{v="green"}',
        "1000",
        "bad data from prometheus for green: latency: sum of squares 1000 cannot belong to 50 values "
        "summing to 5000",
    ),
]


@pytest.mark.slow
def test_bad_data_is_named_exits_1_and_changes_no_state(bad_shop: tuple[Shop, Prometheus]) -> None:
    shop, prometheus = bad_shop
    prometheus.healthy()
    started = squals_experiment(shop, "start", "--format", "json")
    assert started.returncode == 0, started.stderr
    info = json.loads(started.stdout)
    visit(info["url"], 200)  # ~100 visitors per variant
    for query, value, line in CASES:
        prometheus.healthy()
        prometheus.answers[query] = value
        before = _state(shop, info["id"])
        tick = squals_experiment(shop, "tick", info["id"])
        assert tick.returncode == 1, (query, value, tick.stdout, tick.stderr)
        assert f"{info['id']}: {line}" in tick.stdout, tick.stdout
        assert "Traceback" not in tick.stderr
        assert _state(shop, info["id"]) == before, f"{query} = {value} changed the state"
    prometheus.healthy()
    before = _state(shop, info["id"])
    good = squals_experiment(shop, "tick", info["id"])  # the same tick with sound numbers is recorded
    assert good.returncode == 0, good.stdout + good.stderr
    after = _state(shop, info["id"])
    assert after[0] != before[0] and json.loads(after[1])["extra"]["stats"]["green"]["latency"] == {
        "kind": "mean",
        "n": 50.0,
        "total": 5000.0,
        "sum_squares": 505000.0,
    }
    assert squals_experiment(shop, "stop", info["id"]).returncode == 0
