"""What the CloudWatch reader asks for and what the answers mean, without I/O: ARNs to dimensions, one
query per statistic, datapoints combined over a window, a target group's KPIs, a custom metric's sufficient
statistics, alarm states. :mod:`squals_action.providers.cloudwatch` does the calls.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from squals_action.manifest import model
from squals_action.providers.cloudwatch_window import RESOLUTIONS, Window
from squals_action.providers.interface import ProviderError

ALB_NAMESPACE = "AWS/ApplicationELB"
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
ALB_QUERIES = (
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
class Series:
    """One query's datapoints as the pages of an answer bring them, with its last status."""

    values: list[float] = field(default_factory=list)
    status: str = "Complete"
    messages: list[str] = field(default_factory=list)


def combine(query: Query, series: Series, period: int, window: Window) -> Value:
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


def alb_figures(name: str, window: Window, read: Mapping[str, Value]) -> TargetGroupFigures:
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


def custom_reading(spec: CustomMetric, variant: str, got: Mapping[str, Value]) -> CustomReading:
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
