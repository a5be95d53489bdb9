"""CloudWatch as a metric source and a stop signal: target-group KPIs, per-variant custom metrics, alarms.

**Windows, not totals.** Every read is over one :class:`Window` of whole periods that CloudWatch has had
time to complete (:mod:`squals_action.providers.cloudwatch_window`: the delay, and :class:`NotYet`, which
reads "no data yet" for every figure without calling AWS).

**One round per read.** All the queries of a read (every target group's KPIs, or every variant's custom
metrics) go into ``get_metric_data`` together: at most 500 per call (split beyond), every ``NextToken`` page
followed. Each asks for the whole window as one period where CloudWatch allows it, so one datapoint carries
the window's exact Sum, SampleCount or p95; otherwise per-period datapoints are combined (sums added,
minimum of minima...), and a percentile, which cannot be combined, reads "no data" with that reason.

**No data is explicit.** A metric without datapoints in the window is ``None`` with a reason, never 0;
``error_rate`` of a target group without requests is "no data". One rule of AWS is applied where it
belongs: the load balancer publishes its 5xx counts only when they are nonzero, so with requests present a
5xx count without datapoints enters ``errors`` and ``error_rate`` as 0 (the count itself still reads "no
data").

**Sufficient statistics.** CloudWatch keeps, per period, SampleCount, Sum, Minimum and Maximum (and
percentiles); it never keeps a sum of squares. :class:`SufficientStats` gives n = SampleCount and Sum, and
the sum of squares only when the app emits the squared value as a second metric (``squares``) whose Sum is
Σx². These are *per unit* only when the app emits one value per unit (per visitor, at the end of its visit);
CloudWatch cannot group several datapoints by unit.

**Alarms** named in the squals file are stop signals: :meth:`CloudWatch.alarms` says which are in ``ALARM``;
a name CloudWatch does not know is a misconfiguration and a one-line error, not a pass.

What is asked and what the answers mean (dimensions, queries, figures) is the pure
:mod:`squals_action.providers.cloudwatch_figures`; this module makes the calls. boto3 is imported inside
(through :mod:`squals_action.aws_api`): standard retries, bounded
timeouts, ``AWS_ENDPOINT_URL`` honoured. AWS errors become one-line :class:`CloudWatchError`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from squals_action import aws_api
from squals_action.manifest import model
from squals_action.providers.cloudwatch_figures import (
    ALB_METRICS,
    ALB_NAMESPACE,
    ALB_QUERIES,
    AlarmStates,
    CloudWatchError,
    CustomMetric,
    CustomReading,
    Query,
    Series,
    SufficientStats,
    TargetGroupFigures,
    Value,
    alb_figures,
    combine,
    custom_reading,
    load_balancer_dimension,
    target_group_dimension,
)
from squals_action.providers.cloudwatch_window import NotYet, Window, period_for, utc

#: CloudWatch's limit of queries per ``get_metric_data`` call, and of names per ``describe_alarms`` call.
MAX_QUERIES = 500
MAX_ALARM_NAMES = 100
#: A read that needs more pages than this is refused rather than looping for ever on a server's tokens.
MAX_PAGES = 1000

__all__ = [
    "ALB_METRICS",
    "ALB_NAMESPACE",
    "AlarmStates",
    "CloudWatch",
    "CloudWatchError",
    "CustomMetric",
    "CustomReading",
    "SufficientStats",
    "TargetGroupFigures",
    "load_balancer_dimension",
    "target_group_dimension",
]


# ------------------------------------------------------------------------------------------- the reader


class CloudWatch:
    """Reads CloudWatch in one region. ``calls`` counts the API requests this reader made."""

    max_attempts: int = aws_api.MAX_ATTEMPTS
    connect_timeout: float = aws_api.CONNECT_TIMEOUT
    read_timeout: float = aws_api.READ_TIMEOUT

    def __init__(self, region: str) -> None:
        self.region = region
        self.calls = 0
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = aws_api.client(
                "cloudwatch",
                self.region,
                max_attempts=self.max_attempts,
                connect_timeout=self.connect_timeout,
                read_timeout=self.read_timeout,
            )
        return self._client

    def _call(self, what: str, operation: str, **kwargs: Any) -> dict[str, Any]:
        self.calls += 1
        answer: dict[str, Any] = aws_api.call(
            CloudWatchError, what, getattr(self.client, operation), **kwargs
        )
        return answer

    def fetch(self, queries: Sequence[Query], window: Window, *, now: datetime | None = None) -> list[Value]:
        """Each query's value over ``window``, in order: one round of ``get_metric_data`` calls (at most
        :data:`MAX_QUERIES` queries each, every ``NextToken`` page followed)."""
        now = utc(now or datetime.now(UTC))
        periods = [period_for(window, now, q.resolution) for q in queries]
        series = [Series() for _ in queries]
        for first in range(0, len(queries), MAX_QUERIES):
            batch = range(first, min(first + MAX_QUERIES, len(queries)))
            ids = {f"q{i - first}": i for i in batch}
            requests = [queries[i].request(query_id, periods[i]) for query_id, i in ids.items()]
            token: str | None = None
            for _page in range(MAX_PAGES):
                extra = {"NextToken": token} if token else {}
                answer = self._call(
                    f"CloudWatch GetMetricData ({len(requests)} queries, {window.describe()})",
                    "get_metric_data",
                    MetricDataQueries=requests,
                    StartTime=window.start,
                    EndTime=window.end,
                    ScanBy="TimestampAscending",
                    **extra,
                )
                for result in answer.get("MetricDataResults", []):
                    index = ids.get(str(result.get("Id")))
                    if index is None:
                        continue
                    found = series[index]
                    found.values.extend(float(v) for v in result.get("Values", []))
                    found.status = str(result.get("StatusCode", "Complete"))
                    found.messages.extend(str(m.get("Value", m)) for m in result.get("Messages", []))
                token = answer.get("NextToken")
                if not token:
                    break
            else:
                raise CloudWatchError(
                    f"CloudWatch GetMetricData: still paging after {MAX_PAGES} pages ({window.describe()})"
                )
        return [combine(q, s, p, window) for q, s, p in zip(queries, series, periods, strict=True)]

    def target_group_kpis(
        self,
        target_groups: Mapping[str, str],
        load_balancer_arn: str,
        window: Window | NotYet,
        *,
        kpis: Iterable[str] = ALB_METRICS,
        now: datetime | None = None,
    ) -> dict[str, TargetGroupFigures]:
        """The KPIs of each target group (name -> ARN) behind the load balancer (or listener)
        ``load_balancer_arn`` over ``window``, in one round.

        Only the names of ``kpis`` that are :data:`ALB_METRICS` are read (``error_rate`` brings the counts
        it is made of): CloudWatch bills per metric asked for, and a bake watching only ``error_rate``
        needs no percentile.
        """
        lb = load_balancer_dimension(load_balancer_arn)
        dims = {name: target_group_dimension(arn) for name, arn in target_groups.items()}
        wanted = {k for k in kpis if k in ALB_METRICS}
        if wanted & {"errors", "error_rate"}:
            wanted |= {"activations", "target_5xx", "elb_5xx", "errors", "error_rate"}
        if isinstance(window, NotYet):
            return {
                name: TargetGroupFigures(
                    name, None, {}, {m: window.reason for m in ALB_METRICS if m in wanted}
                )
                for name in target_groups
            }
        plan = [
            (
                name,
                kpi,
                factor,
                Query(ALB_NAMESPACE, metric, stat, (("LoadBalancer", lb), ("TargetGroup", tg))),
            )
            for name, tg in dims.items()
            for kpi, metric, stat, factor in ALB_QUERIES
            if kpi in wanted
        ]
        answers = self.fetch([q for *_, q in plan], window, now=now)
        raw: dict[str, dict[str, Value]] = {name: {} for name in target_groups}
        for (name, kpi, factor, _), answer in zip(plan, answers, strict=True):
            scaled = answer.value * factor if answer.value is not None else None
            raw[name][kpi] = Value(scaled, answer.reason)
        return {name: alb_figures(name, window, read) for name, read in raw.items()}

    def custom_metrics(
        self,
        metrics: Mapping[str, CustomMetric],
        variants: Mapping[str, str],
        window: Window | NotYet,
        *,
        now: datetime | None = None,
    ) -> dict[str, dict[str, CustomReading]]:
        """metric name -> variant -> reading, for every variant (name -> its environment), in one round."""
        if isinstance(window, NotYet):
            return {
                name: {v: CustomReading(v, None, None, window.reason) for v in variants} for name in metrics
            }
        plan = [
            (name, variant, stat, query)
            for name, spec in metrics.items()
            for variant, environment in variants.items()
            for stat, query in spec.queries(variant, environment).items()
        ]
        answers = self.fetch([q for *_, q in plan], window, now=now)
        got: dict[tuple[str, str], dict[str, Value]] = {}
        for (name, variant, stat, _), answer in zip(plan, answers, strict=True):
            got.setdefault((name, variant), {})[stat] = answer
        return {
            name: {v: custom_reading(spec, v, got[(name, v)]) for v in variants}
            for name, spec in metrics.items()
        }

    def alarms(self, names: Sequence[str], *, location: model.Location = model.NOWHERE) -> AlarmStates:
        """The states of the named alarms (metric and composite); names CloudWatch does not know are a
        :class:`CloudWatchError` naming them."""
        wanted = list(dict.fromkeys(names))
        states: dict[str, str] = {}
        reasons: dict[str, str] = {}
        for first in range(0, len(wanted), MAX_ALARM_NAMES):
            batch = wanted[first : first + MAX_ALARM_NAMES]
            token: str | None = None
            for _page in range(MAX_PAGES):
                extra = {"NextToken": token} if token else {}
                answer = self._call(
                    f"CloudWatch DescribeAlarms ({len(batch)} names)",
                    "describe_alarms",
                    AlarmNames=batch,
                    AlarmTypes=["MetricAlarm", "CompositeAlarm"],
                    **extra,
                )
                for alarm in [*answer.get("MetricAlarms", []), *answer.get("CompositeAlarms", [])]:
                    states[str(alarm["AlarmName"])] = str(alarm.get("StateValue", ""))
                    reasons[str(alarm["AlarmName"])] = " ".join(str(alarm.get("StateReason", "")).split())
                token = answer.get("NextToken")
                if not token:
                    break
        unknown = [name for name in wanted if name not in states]
        if unknown:
            where = f"{location}: " if location != model.NOWHERE else ""
            listed = ", ".join(repr(n) for n in unknown)
            raise CloudWatchError(
                f"{where}CloudWatch in {self.region} has no alarm named {listed}: an unknown alarm is a "
                "misconfiguration, not a pass (expected the names of existing metric or composite alarms)"
            )
        return AlarmStates({n: states[n] for n in wanted}, {n: reasons[n] for n in wanted})
