"""Metric sources by kind: ``dealer`` (every experiment has one) and those ``experiment.metrics`` declares.

:data:`SOURCES` maps a kind (the squals file's ``experiment.metrics.<name>.source``) to a factory taking
what the engine knows at a tick (:class:`SourceContext`); :func:`build_sources` builds every registered
source for one tick. Adding a kind means registering its factory here, not editing the
engine. Order matters: the first source that knows a metric measures it, so the Dealer comes first.

A factory returns ``None`` where its source cannot exist: the ``dealer`` on AWS (the ALB listener splits the
traffic; no Dealer counts anything), ``alb`` and ``cloudwatch`` off AWS (no region, no target groups: a
declared CloudWatch metric is then reported as measured by no source). On AWS the load balancer's figures
come from ``alb``, units and conversions from the app's custom metrics (``cloudwatch``).

Factories must be cheap and must not fail on an unreachable service: a source opens its connections (and
imports its heavy libraries) on its first read, and reports what it cannot measure per metric. A declared
metric whose kind has no factory is reported missing as "no metric source measures it".
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from squals_action.dealer.interface import VariantTally
from squals_action.experiments.cloudwatch_source import AlbMetrics, AwsPlace, CloudWatchMetrics, custom_metric
from squals_action.experiments.dealer_metrics import DealerMetrics
from squals_action.experiments.interface import MetricSource
from squals_action.experiments.prometheus import PrometheusSource
from squals_action.manifest.model import Experiment


@dataclass(frozen=True, kw_only=True)
class SourceContext:
    """What a factory may build its source from.

    ``tallies`` reads the experiment's Dealer (``None`` on AWS: there is none); ``aws`` says where the
    experiment runs on AWS (``None`` with the local Dealer); ``prometheus_url`` serves declared Prometheus
    metrics without a ``url`` of their own; ``env`` is the process environment.
    """

    spec: Experiment
    tallies: Callable[[], Mapping[str, VariantTally]] | None
    env: Mapping[str, str]
    prometheus_url: str | None = None
    aws: AwsPlace | None = None


SourceFactory = Callable[[SourceContext], MetricSource | None]


@runtime_checkable
class _Closeable(Protocol):
    def close(self) -> None: ...


def _dealer(ctx: SourceContext) -> MetricSource | None:
    if ctx.tallies is None:
        return None
    objective = ctx.spec.objective
    means = frozenset({objective.numerator} if objective.kind == "mean" else ())
    return DealerMetrics(ctx.tallies, means)


def _alb(ctx: SourceContext) -> MetricSource | None:
    return AlbMetrics(ctx.aws) if ctx.aws is not None else None


def _prometheus(ctx: SourceContext) -> MetricSource:
    return PrometheusSource(ctx.spec.metrics, default_url=ctx.prometheus_url)


def _cloudwatch(ctx: SourceContext) -> MetricSource | None:
    return CloudWatchMetrics(ctx.spec.metrics, ctx.aws) if ctx.aws is not None else None


#: Every metric source kind, in the order the engine asks them.
SOURCES: dict[str, SourceFactory] = {
    "dealer": _dealer,
    "alb": _alb,
    "prometheus": _prometheus,
    "cloudwatch": _cloudwatch,
}


def check_declarations(spec: Experiment) -> None:
    """Refuse, before anything starts, a declared metric its source could never read (one line naming the
    squals file's line): today the CloudWatch metric arrays."""
    for declared in spec.metrics.values():
        if declared.source == "cloudwatch":
            custom_metric(declared)


@contextmanager
def build_sources(ctx: SourceContext) -> Iterator[list[MetricSource]]:
    """Every registered source that exists here, in registry order; those holding connections are closed
    after."""
    with ExitStack() as stack:
        sources = []
        for factory in SOURCES.values():
            source = factory(ctx)
            if source is None:
                continue
            if isinstance(source, _Closeable):
                stack.callback(source.close)
            sources.append(source)
        yield sources
