"""CloudWatch as an experiment's metric sources on AWS, where no Dealer counts anything.

* ``alb`` -- what the load balancer measures for each variant's target group (``AWS/ApplicationELB``):
  ``activations`` (requests), ``errors``, ``error_rate`` (percent) and the latency percentiles.
* ``cloudwatch`` -- the metrics ``experiment.metrics`` declares with ``source: cloudwatch``: custom metrics
  the app emits per variant (``SQUALS_VARIANT`` in its environment). The ``query`` is CloudWatch's own
  metric array, as a dashboard's source shows it:
  ``["Shop", "Checkout", "Variant", "$variant", {"stat": "Sum"}]`` -- namespace, metric name, dimension
  name/value pairs (``$variant`` and ``$environment`` substituted per variant), and optionally ``stat``
  (default ``Sum``), ``unit``, ``resolution`` and ``squares`` (the metric, same namespace and dimensions,
  carrying each value squared).

The ``cloudwatch`` source delivers a declared metric's value (its ``stat``) and, when the declaration names
``squares``, its sufficient statistics as a mean per datum (:class:`~.sufficient.Mean`: n = SampleCount,
Sum, Σx² = the squares metric's Sum): statistics per unit when the app emits one value per
unit. Counts (``stat: Sum`` of 1 per unit) need none: the objective's proportion is made of two of them.
CloudWatch cannot give a ratio's per-unit cross-product, so a ``ratio`` objective has no CloudWatch source.

Both read the experiment's whole window since its start (whole periods that began after the start and ended
CloudWatch's delay before now: :func:`~squals_action.providers.cloudwatch_window.read_window`), so the
figures are cumulative, as the statistics want. Before the first period has matured, and for a variant
without datapoints, a metric is missing with CloudWatch's reason ("no data ..."), never 0. boto3 is
imported on the first read.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from squals_action.errors import SqualsError
from squals_action.experiments.interface import ExperimentError, MetricError, Reading
from squals_action.experiments.sufficient import Mean, Sufficient
from squals_action.manifest.model import MetricSource as MetricSpec

if TYPE_CHECKING:
    from squals_action.providers.cloudwatch import CloudWatch
    from squals_action.providers.cloudwatch_figures import CustomMetric

#: What the load balancer measures per target group, by the squals file's names.
ALB_KNOWN = frozenset(
    {"activations", "errors", "error_rate", "p50_latency_ms", "p95_latency_ms", "p99_latency_ms"}
)
_OPTIONS = ("stat", "unit", "resolution", "squares")
_EXAMPLE = '["Shop", "Checkout", "Variant", "$variant", {"stat": "Sum"}]'


@dataclass(frozen=True, kw_only=True)
class AwsPlace:
    """Where an experiment runs on AWS: the region, the front door's listener, and per variant its island's
    environment name and target group ARN; ``since`` is the experiment's start (the window's beginning)."""

    region: str
    listener_arn: str
    target_groups: Mapping[str, str]
    environments: Mapping[str, str]
    since: datetime


def custom_metric(spec: MetricSpec) -> CustomMetric:
    """The CloudWatch custom metric a ``source: cloudwatch`` declaration names; a malformed ``query`` is an
    :class:`ExperimentError` naming the squals file's line and what was expected."""
    from squals_action.providers.cloudwatch_figures import CustomMetric

    where = f"{spec.location}: experiment.metrics.{spec.name}.query"
    expected = f"expected CloudWatch's metric array, e.g. {_EXAMPLE}"
    try:
        parsed = json.loads(spec.query)
    except ValueError:
        raise ExperimentError(f"{where}: not JSON; {expected}") from None
    options: Any = parsed[-1] if isinstance(parsed, list) and parsed and isinstance(parsed[-1], dict) else {}
    names = parsed[:-1] if options else parsed
    if (
        not isinstance(names, list)
        or len(names) < 2
        or len(names) % 2
        or not all(isinstance(x, str) and x for x in names)
    ):
        raise ExperimentError(
            f"{where}: {expected} (namespace, metric, then dimension name/value pairs, all strings)"
        )
    if spec.units or spec.squares:
        raise ExperimentError(
            f"{where[: -len('.query')]}: units and squares are Prometheus queries; a CloudWatch metric names "
            'its squared metric in its array\'s options, e.g. {"stat": "Sum", "squares": "RevenueSquared"}'
        )
    unknown = sorted(set(options) - set(_OPTIONS))
    if unknown:
        raise ExperimentError(f"{where}: unknown option {unknown[0]!r}; expected {', '.join(_OPTIONS)}")
    try:
        return CustomMetric(
            namespace=names[0],
            metric=names[1],
            statistic=str(options.get("stat", "Sum")),
            dimensions=dict(zip(names[2::2], names[3::2], strict=True)),
            squares=options.get("squares"),
            unit=options.get("unit"),
            resolution=int(options.get("resolution", 60)),
            location=spec.location,
        )
    except (SqualsError, TypeError, ValueError) as exc:
        text = exc.one_line() if isinstance(exc, SqualsError) else str(exc)
        raise ExperimentError(f"{where}: {text}") from None


class _Reader:
    """One CloudWatch reader per source and tick, built on the first read (boto3 is imported then)."""

    def __init__(self, place: AwsPlace) -> None:
        self.place = place
        self._cloudwatch: CloudWatch | None = None

    def reader(self) -> CloudWatch:
        if self._cloudwatch is None:
            from squals_action.providers.cloudwatch import CloudWatch

            self._cloudwatch = CloudWatch(self.place.region)
        return self._cloudwatch


def _now() -> datetime:
    from squals_action.state.interface import utc_now

    return utc_now()


class AlbMetrics(_Reader):
    """The load balancer's figures per variant target group, over the experiment's window."""

    name = "alb"

    def knows(self, metric: str) -> bool:
        return metric in ALB_KNOWN

    def read(self, metrics: Sequence[str], variants: Sequence[str]) -> Reading:
        from squals_action.providers.cloudwatch import CloudWatchError
        from squals_action.providers.cloudwatch_window import read_window

        wanted = [m for m in metrics if self.knows(m)]
        if not wanted:
            return Reading({})
        cloudwatch, place = self.reader(), self.place
        now = _now()
        groups = {v: place.target_groups[v] for v in variants if v in place.target_groups}
        try:
            figures = cloudwatch.target_group_kpis(
                groups, place.listener_arn, read_window(now, place.since), kpis=wanted, now=now
            )
        except CloudWatchError as exc:
            raise MetricError(exc.one_line()) from exc
        values: dict[str, dict[str, float]] = {}
        missing: dict[str, dict[str, str]] = {}
        for variant in variants:
            found = figures.get(variant)
            for metric in wanted:
                if found is None:
                    missing.setdefault(variant, {})[metric] = f"no target group recorded for {variant}"
                elif metric in found.values:
                    values.setdefault(variant, {})[metric] = float(found.values[metric])
                else:
                    reason = found.missing.get(metric) or f"no data: {metric} was not read"
                    missing.setdefault(variant, {})[metric] = reason
        return Reading(values, missing)


class CloudWatchMetrics(_Reader):
    """The declared ``source: cloudwatch`` metrics, per variant, over the experiment's window."""

    name = "cloudwatch"

    def __init__(self, declared: Mapping[str, MetricSpec], place: AwsPlace) -> None:
        super().__init__(place)
        self.metrics = {n: custom_metric(s) for n, s in declared.items() if s.source == "cloudwatch"}

    def knows(self, metric: str) -> bool:
        return metric in self.metrics

    def read(self, metrics: Sequence[str], variants: Sequence[str]) -> Reading:
        from squals_action.providers.cloudwatch import CloudWatchError
        from squals_action.providers.cloudwatch_window import read_window

        wanted = {m: self.metrics[m] for m in metrics if m in self.metrics}
        if not wanted:
            return Reading({})
        cloudwatch, place = self.reader(), self.place
        now = _now()
        environments = {v: place.environments.get(v, v) for v in variants}
        values: dict[str, dict[str, float]] = {}
        missing: dict[str, dict[str, str]] = {}
        stats: dict[str, dict[str, Sufficient]] = {}
        for resolution in sorted({spec.resolution for spec in wanted.values()}):
            batch = {n: s for n, s in wanted.items() if s.resolution == resolution}
            window = read_window(now, place.since, resolution=resolution)
            try:  # one round of GetMetricData for every metric of this resolution
                got = cloudwatch.custom_metrics(batch, environments, window, now=now)
            except CloudWatchError as exc:
                for name in batch:
                    for variant in variants:
                        missing.setdefault(variant, {})[name] = exc.one_line()
                continue
            for name in batch:
                for variant in variants:
                    reading = got[name][variant]
                    if reading.value is None:
                        missing.setdefault(variant, {})[name] = reading.missing or "no data"
                        continue
                    values.setdefault(variant, {})[name] = float(reading.value)
                    found = reading.stats
                    if batch[name].squares and found is not None and found.sum_squares is not None:
                        stats.setdefault(variant, {})[name] = Mean(
                            n=found.n, total=found.total, sum_squares=found.sum_squares
                        )
        return Reading(values, missing, stats)
