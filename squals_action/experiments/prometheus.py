"""Metrics from Prometheus' HTTP API (``GET /api/v1/query``), for names declared under ``experiment.metrics``.

Each declared query may use ``$variant``, replaced by the variant's name (quoted for a PromQL string, so a
name cannot change the query's shape). The instant query's answer is summed over its series (a ``scalar``
answer is taken as is); an empty vector means "no data yet" and is reported missing, not as zero.

Every request has a timeout; connection failures and 429/502/503/504 answers are retried twice with backoff
(queries are reads) by :mod:`squals_action.http_session`, honouring ``Retry-After`` up to 5 s. A query
Prometheus refuses (``status: error``) is a per-metric failure, not an exception.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import requests

from squals_action.experiments.interface import MetricError, Reading
from squals_action.experiments.sufficient import Mean, Sufficient
from squals_action.http_session import retrying_session
from squals_action.manifest.model import MetricSource as MetricSpec

RETRY_STATUSES = frozenset({429, 502, 503, 504})
#: An experiment reads every interval; a longer Retry-After than this is better met by the next reading.
RETRY_AFTER_CAP = 5.0


def promql_string(text: str) -> str:
    """``text`` as the inside of a double-quoted PromQL string literal."""
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render_query(query: str, variant: str) -> str:
    """The declared query for one variant: ``$variant`` (or ``${variant}``) becomes its quoted name."""
    quoted = promql_string(variant)
    return query.replace("${variant}", quoted).replace("$variant", quoted)


def parse_result(payload: Any) -> float | None:
    """The value of a successful instant query's ``data``: a sum over a vector, a scalar, or None if empty."""
    if not isinstance(payload, Mapping):
        raise ValueError("data is not an object")
    kind = payload.get("resultType")
    result = payload.get("result")
    if kind == "scalar":
        if not isinstance(result, list) or len(result) != 2:
            raise ValueError("scalar result is not [time, value]")
        return _number(result[1])
    if kind == "vector":
        if not isinstance(result, list):
            raise ValueError("vector result is not a list")
        if not result:
            return None
        return sum(_number(series["value"][1]) for series in result)
    raise ValueError(f"result type {kind!r} is not an instant vector or scalar")


def _number(text: Any) -> float:
    """A sample value as Prometheus writes it (``"NaN"`` and ``"+Inf"`` included: the tick refuses them as
    bad data, naming the source and variant, instead of hiding them as missing)."""
    return float(text)


class PrometheusSource:
    """Reads declared metrics whose source is ``prometheus``; ``default_url`` serves those without one."""

    name = "prometheus"

    def __init__(
        self,
        metrics: Mapping[str, MetricSpec],
        *,
        default_url: str | None = None,
        timeout: float = 10.0,
        retries: int = 2,
        backoff: float = 0.2,
    ) -> None:
        self.metrics = {k: v for k, v in metrics.items() if v.source == "prometheus"}
        self.default_url = default_url
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self._session: requests.Session | None = None

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    def knows(self, metric: str) -> bool:
        return metric in self.metrics

    def query(self, base_url: str, promql: str) -> float | None:
        """One instant query; raises :class:`MetricError` with the reason when it cannot be answered."""
        if self._session is None:
            self._session = retrying_session(
                attempts=self.retries + 1,
                backoff=self.backoff,
                statuses=RETRY_STATUSES,
                retry_after_cap=RETRY_AFTER_CAP,
            )
        url = base_url.rstrip("/") + "/api/v1/query"
        try:
            response = self._session.get(url, params={"query": promql}, timeout=self.timeout)
        except requests.RequestException as exc:
            raise MetricError(f"Prometheus at {base_url} unreachable: {type(exc).__name__}") from exc
        try:
            body = response.json()
        except ValueError:
            raise MetricError(
                f"Prometheus at {base_url} answered HTTP {response.status_code} without JSON"
            ) from None
        if not isinstance(body, Mapping) or body.get("status") != "success":
            error = body.get("error") if isinstance(body, Mapping) else None
            kind = body.get("errorType") if isinstance(body, Mapping) else None
            raise MetricError(
                f"Prometheus refused the query (HTTP {response.status_code}, {kind or 'error'}): "
                f"{str(error or 'no reason given')[:200]}"
            )
        try:
            return parse_result(body.get("data"))
        except (ValueError, TypeError, KeyError, IndexError) as exc:
            raise MetricError(f"Prometheus answered an unexpected shape: {exc}") from None

    def _stats(self, base: str, spec: MetricSpec, variant: str, total: float) -> Mean | str:
        """A mean's sufficient statistics from the ``units`` and ``squares`` queries, or why not."""
        assert spec.units is not None and spec.squares is not None
        got = []
        for promql in (spec.units, spec.squares):
            try:
                value = self.query(base, render_query(promql, variant))
            except MetricError as exc:
                return exc.one_line()
            if value is None:
                return "no data yet (empty result)"
            got.append(value)
        return Mean(n=got[0], total=total, sum_squares=got[1])

    def read(self, metrics: Sequence[str], variants: Sequence[str]) -> Reading:
        values: dict[str, dict[str, float]] = {}
        missing: dict[str, dict[str, str]] = {}
        stats: dict[str, dict[str, Sufficient]] = {}
        for metric in metrics:
            spec = self.metrics.get(metric)
            if spec is None:
                continue
            base = spec.url or self.default_url
            for variant in variants:
                if not base:
                    missing.setdefault(variant, {})[metric] = "no Prometheus url declared"
                    continue
                try:
                    value = self.query(base, render_query(spec.query, variant))
                except MetricError as exc:
                    missing.setdefault(variant, {})[metric] = exc.one_line()
                    continue
                if value is None:
                    missing.setdefault(variant, {})[metric] = "no data yet (empty result)"
                    continue
                values.setdefault(variant, {})[metric] = value
                if spec.units and spec.squares:
                    got = self._stats(base, spec, variant, value)
                    if isinstance(got, str):
                        missing.setdefault(variant, {})[metric] = got
                    else:
                        stats.setdefault(variant, {})[metric] = got
        return Reading(values, missing, stats)
