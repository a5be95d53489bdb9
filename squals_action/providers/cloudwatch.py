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

boto3 is imported inside (through :mod:`squals_action.providers.aws_api`): standard retries, bounded
timeouts, ``AWS_ENDPOINT_URL`` honoured. AWS errors become one-line :class:`CloudWatchError`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from squals_action.manifest import model
from squals_action.providers import aws_api
from squals_action.providers.cloudwatch_window import (
    RESOLUTIONS,
    NotYet,
    Window,
    period_for,
    utc,
)
from squals_action.providers.interface import ProviderError

ALB_NAMESPACE = "AWS/ApplicationELB"
#: CloudWatch's limit of queries per ``get_metric_data`` call, and of names per ``describe_alarms`` call.
MAX_QUERIES = 500
MAX_ALARM_NAMES = 100
#: A read that needs more pages than this is refused rather than looping for ever on a server's tokens.
MAX_PAGES = 1000
#: Statistics whose per-period values combine into the window's value, and how.
COMBINE: dict[str, Callable[[list[float]], float]] = {
    "Sum": math.fsum,
    "SampleCount": math.fsum,
    "Minimum": min,
    "Maximum": max,
}
STATISTIC = re.compile(
    r"^(SampleCount|Average|Sum|Minimum|Maximum|IQM"
    r"|(p|tm|wm|tc|ts)\d{1,2}(\.\d{1,10})?|p100|(TM|WM|TC|TS|PR)\([0-9.:%]*\))$"
)
PLACEHOLDER = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?")
PLACEHOLDERS = ("variant", "environment")

#: The KPI names a target group's figures carry (the squals file's ``rollout.kpis`` metric names).
ALB_METRICS = (
    "activations",
    "target_5xx",
    "elb_5xx",
    "errors",
    "error_rate",
    "p50_latency_ms",
    "p95_latency_ms",
    "p99_latency_ms",
)
#: (KPI name, CloudWatch metric, statistic, factor) read per target group; latencies are seconds -> ms.
_ALB_QUERIES = (
    ("activations", "RequestCount", "Sum", 1.0),
    ("target_5xx", "HTTPCode_Target_5XX_Count", "Sum", 1.0),
    ("elb_5xx", "HTTPCode_ELB_5XX_Count", "Sum", 1.0),
    ("p50_latency_ms", "TargetResponseTime", "p50", 1000.0),
    ("p95_latency_ms", "TargetResponseTime", "p95", 1000.0),
    ("p99_latency_ms", "TargetResponseTime", "p99", 1000.0),
)


class CloudWatchError(ProviderError):
    """A CloudWatch call failed, or what it was asked for is misconfigured; one line quoting AWS's code."""


# --------------------------------------------------------------------------------------------------- ARNs

_ELB_ARN = re.compile(r"^arn:aws[a-z-]*:elasticloadbalancing:[a-z0-9-]+:\d{12}:(?P<resource>.+)$")
_TG = re.compile(r"^targetgroup/[A-Za-z0-9-]{1,32}/[0-9a-f]+$")
_LB = re.compile(r"^(?:loadbalancer|listener)/(?P<lb>app/[A-Za-z0-9-]{1,32}/[0-9a-f]+)(?:/[0-9a-f]+)?$")


def target_group_dimension(arn: str) -> str:
    """The ``TargetGroup`` dimension of a target group ARN: ``targetgroup/<name>/<id>``."""
    match = _ELB_ARN.match(arn)
    if match and _TG.match(match["resource"]):
        return match["resource"]
    raise CloudWatchError(
        f"not a target group ARN: {arn!r}: expected "
        "arn:aws:elasticloadbalancing:<region>:<account>:targetgroup/<name>/<id>"
    )


def load_balancer_dimension(arn: str) -> str:
    """The ``LoadBalancer`` dimension (``app/<name>/<id>``) of an Application Load Balancer's ARN, or of
    one of its listeners' ARN (the front door may be named by its listener)."""
    match = _ELB_ARN.match(arn)
    found = _LB.match(match["resource"]) if match else None
    if found:
        return found["lb"]
    raise CloudWatchError(
        f"not an Application Load Balancer or listener ARN: {arn!r}: expected "
        "arn:aws:elasticloadbalancing:<region>:<account>:loadbalancer/app/<name>/<id> "
        "(or .../listener/app/<name>/<id>/<listener id>)"
    )


# -------------------------------------------------------------------------------------------- the queries


@dataclass(frozen=True)
class Query:
    """One ``MetricStat``: a metric (namespace, name, dimensions as (name, value) pairs) and a statistic."""

    namespace: str
    metric: str
    stat: str
    dimensions: tuple[tuple[str, str], ...] = ()
    unit: str | None = None
    resolution: int = 60

    def request(self, query_id: str, period: int) -> dict[str, Any]:
        stat: dict[str, Any] = {
            "Metric": {
                "Namespace": self.namespace,
                "MetricName": self.metric,
                "Dimensions": [{"Name": k, "Value": v} for k, v in self.dimensions],
            },
            "Period": period,
            "Stat": self.stat,
        }
        if self.unit:
            stat["Unit"] = self.unit
        return {"Id": query_id, "MetricStat": stat, "ReturnData": True}

    def describe(self) -> str:
        """``Shop Revenue Sum [Variant=green]``: which series a reason is about."""
        dims = ", ".join(f"{k}={v}" for k, v in self.dimensions)
        return f"{self.namespace} {self.metric} {self.stat}" + (f" [{dims}]" if dims else "")


@dataclass(frozen=True)
class Value:
    """What one query gave over the window: a number, or ``None`` and why."""

    value: float | None
    reason: str = ""


@dataclass
class _Series:
    values: list[float] = field(default_factory=list)
    status: str = "Complete"
    messages: list[str] = field(default_factory=list)


def _combine(query: Query, series: _Series, period: int, window: Window) -> Value:
    where = f"{query.describe()} in {window.describe()}"
    if series.status in ("InternalError", "Forbidden"):
        detail = "; ".join(series.messages)
        return Value(
            None, f"CloudWatch answered {series.status} for {where}" + (f": {detail}" if detail else "")
        )
    if any(math.isnan(v) or math.isinf(v) for v in series.values):
        return Value(None, f"bad data: CloudWatch answered a non-finite value for {where}")
    if not series.values:
        return Value(None, f"no data: no datapoints for {where}")
    combine = COMBINE.get(query.stat)
    if combine is not None:
        return Value(float(combine(series.values)))
    if len(series.values) == 1:
        return Value(series.values[0])
    return Value(
        None,
        f"no data: {where} came in {len(series.values)} periods of {period} s and a {query.stat} "
        "cannot be combined across periods (read a window that is one valid period)",
    )


# ------------------------------------------------------------------------------------------- the results


@dataclass(frozen=True)
class TargetGroupFigures:
    """One target group's KPIs over a window; a name in ``missing`` has no value, only the reason."""

    target_group: str
    window: Window | None
    values: Mapping[str, float]
    missing: Mapping[str, str]

    def get(self, metric: str) -> float | None:
        return self.values.get(metric)

    def metrics(self) -> dict[str, float | None]:
        """Every KPI read, ``None`` where there is no data: what ``lifecycle.kpi.evaluate`` reads."""
        return {
            name: self.values.get(name) for name in ALB_METRICS if name in self.values or name in self.missing
        }


@dataclass(frozen=True)
class SufficientStats:
    """What CloudWatch can give for a mean: n (SampleCount), the Sum, and Σx² when the app emits the
    squared value as a second metric; minimum and maximum come free."""

    n: float
    total: float
    sum_squares: float | None = None
    minimum: float | None = None
    maximum: float | None = None

    @property
    def mean(self) -> float | None:
        return self.total / self.n if self.n else None

    @property
    def variance(self) -> float | None:
        """The sample variance, when the sum of squares is known and n > 1."""
        if self.sum_squares is None or self.n < 2:
            return None
        return max(0.0, (self.sum_squares - self.total * self.total / self.n) / (self.n - 1))


@dataclass(frozen=True)
class CustomReading:
    """One custom metric for one variant over a window: the declared statistic, the sufficient statistics,
    and, for whatever is ``None``, the reason."""

    variant: str
    value: float | None
    stats: SufficientStats | None
    missing: str = ""


@dataclass(frozen=True)
class CustomMetric:
    """A metric the app emits: ``$variant`` / ``$environment`` in dimension values are substituted per read.

    ``statistic`` is the figure the squals file judges (``Sum`` for counts, ``Average``, ``p95``...);
    ``squares`` names the metric (same namespace and dimensions) that carries each value squared.
    """

    namespace: str
    metric: str
    statistic: str = "Sum"
    dimensions: Mapping[str, str] = field(default_factory=dict)
    squares: str | None = None
    unit: str | None = None
    resolution: int = 60
    location: model.Location = model.NOWHERE

    def __post_init__(self) -> None:
        where = f"{self.location}: " if self.location != model.NOWHERE else ""
        what = f"CloudWatch metric {self.namespace} {self.metric}"
        if not STATISTIC.match(self.statistic):
            raise CloudWatchError(
                f"{where}{what}: statistic {self.statistic!r}: expected SampleCount, Average, Sum, Minimum, "
                "Maximum or a percentile such as p95"
            )
        if self.resolution not in RESOLUTIONS:
            raise CloudWatchError(
                f"{where}{what}: resolution {self.resolution}: expected one of "
                f"{', '.join(map(str, RESOLUTIONS))} (seconds)"
            )
        if len(self.dimensions) > 30:
            raise CloudWatchError(f"{where}{what}: {len(self.dimensions)} dimensions: CloudWatch allows 30")
        for name, value in self.dimensions.items():
            unknown = sorted({m for m in PLACEHOLDER.findall(value) if m not in PLACEHOLDERS})
            if unknown:
                raise CloudWatchError(
                    f"{where}{what}: dimension {name}: unknown placeholder ${unknown[0]}: expected "
                    "$variant or $environment"
                )

    def dimensions_for(self, variant: str, environment: str) -> tuple[tuple[str, str], ...]:
        """The dimensions with the placeholders replaced, sorted by name."""
        names = {"variant": variant, "environment": environment}
        return tuple(
            (name, PLACEHOLDER.sub(lambda m: names[m.group(1)], value))
            for name, value in sorted(self.dimensions.items())
        )

    def queries(self, variant: str, environment: str) -> dict[str, Query]:
        """The statistics read for one variant: n, Sum, Minimum, Maximum, the declared one, Σx²."""
        dims = self.dimensions_for(variant, environment)

        def query(stat: str, metric: str = self.metric) -> Query:
            return Query(self.namespace, metric, stat, dims, self.unit, self.resolution)

        wanted = {stat: query(stat) for stat in ("SampleCount", "Sum", "Minimum", "Maximum")}
        if self.statistic not in wanted and self.statistic != "Average":
            wanted[self.statistic] = query(self.statistic)
        if self.squares:
            wanted["squares"] = query("Sum", self.squares)
        return wanted


@dataclass(frozen=True)
class AlarmStates:
    """The named alarms' states (``OK``, ``ALARM``, ``INSUFFICIENT_DATA``) and CloudWatch's reasons."""

    states: Mapping[str, str]
    reasons: Mapping[str, str] = field(default_factory=dict)

    @property
    def firing(self) -> tuple[str, ...]:
        """The alarms in ``ALARM``: each is a stop signal."""
        return tuple(sorted(name for name, state in self.states.items() if state == "ALARM"))

    def stop_reason(self) -> str | None:
        """The sentence a report shows when an alarm fired, or ``None``."""
        if not self.firing:
            return None
        return "CloudWatch alarm in ALARM: " + "; ".join(
            f"{name} ({self.reasons.get(name, 'no reason given')})" for name in self.firing
        )


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
        series = [_Series() for _ in queries]
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
        return [_combine(q, s, p, window) for q, s, p in zip(queries, series, periods, strict=True)]

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
            for kpi, metric, stat, factor in _ALB_QUERIES
            if kpi in wanted
        ]
        answers = self.fetch([q for *_, q in plan], window, now=now)
        raw: dict[str, dict[str, Value]] = {name: {} for name in target_groups}
        for (name, kpi, factor, _), answer in zip(plan, answers, strict=True):
            scaled = answer.value * factor if answer.value is not None else None
            raw[name][kpi] = Value(scaled, answer.reason)
        return {name: _alb_figures(name, window, read) for name, read in raw.items()}

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
            name: {v: _custom_reading(spec, v, got[(name, v)]) for v in variants}
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


def _alb_figures(name: str, window: Window, read: Mapping[str, Value]) -> TargetGroupFigures:
    """The read values plus ``errors`` and ``error_rate`` (percent), with the nonzero-reporting rule."""
    values = {k: v.value for k, v in read.items() if v.value is not None}
    missing = {k: v.reason for k, v in read.items() if v.value is None}
    if not {"activations", "target_5xx", "elb_5xx"} <= read.keys():
        return TargetGroupFigures(name, window, values, missing)  # the error figures were not asked for
    requests = values.get("activations")
    if requests is None or requests <= 0:
        why = missing.get("activations") or f"no data: no requests reached {name} in {window.describe()}"
        missing["errors"] = missing["error_rate"] = why
    else:
        errors = values.get("target_5xx", 0.0) + values.get("elb_5xx", 0.0)
        values["errors"] = errors
        values["error_rate"] = 100.0 * errors / requests
    return TargetGroupFigures(name, window, values, missing)


def _custom_reading(spec: CustomMetric, variant: str, got: Mapping[str, Value]) -> CustomReading:
    count, total = got["SampleCount"], got["Sum"]
    if count.value is None or total.value is None or count.value <= 0:
        return CustomReading(variant, None, None, count.reason or total.reason or "no data: SampleCount 0")
    squares = got.get("squares")
    stats = SufficientStats(
        n=count.value,
        total=total.value,
        sum_squares=squares.value if squares is not None else None,
        minimum=got["Minimum"].value,
        maximum=got["Maximum"].value,
    )
    notes = [squares.reason] if squares is not None and squares.value is None else []
    if spec.statistic == "Average":
        value: float | None = stats.mean
    else:
        answer = got[spec.statistic]
        value = answer.value
        if value is None:
            notes.insert(0, answer.reason)
    return CustomReading(variant, value, stats, "; ".join(notes))
