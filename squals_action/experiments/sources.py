"""Metric sources by kind: ``dealer`` (every experiment has one) and those ``experiment.metrics`` declares.

:data:`SOURCES` maps a kind (the squals file's ``experiment.metrics.<name>.source``) to a factory taking
what the engine knows at a tick (:class:`SourceContext`); :func:`build_sources` builds every registered
source for one tick. Adding a kind (CloudWatch next) means registering its factory here, not editing the
engine. Order matters: the first source that knows a metric measures it, so the Dealer comes first.

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
from squals_action.experiments.dealer_metrics import DealerMetrics
from squals_action.experiments.interface import MetricSource
from squals_action.experiments.prometheus import PrometheusSource
from squals_action.manifest.model import Experiment


@dataclass(frozen=True, kw_only=True)
class SourceContext:
    """What a factory may build its source from.

    ``tallies`` reads the experiment's Dealer; ``prometheus_url`` serves declared Prometheus metrics without
    a ``url`` of their own; ``env`` is the process environment (endpoints, regions, credentials' names).
    """

    spec: Experiment
    tallies: Callable[[], Mapping[str, VariantTally]]
    env: Mapping[str, str]
    prometheus_url: str | None = None


SourceFactory = Callable[[SourceContext], MetricSource]


@runtime_checkable
class _Closeable(Protocol):
    def close(self) -> None: ...


def _dealer(ctx: SourceContext) -> MetricSource:
    return DealerMetrics(ctx.tallies)


def _prometheus(ctx: SourceContext) -> MetricSource:
    return PrometheusSource(ctx.spec.metrics, default_url=ctx.prometheus_url)


#: Every metric source kind, in the order the engine asks them.
SOURCES: dict[str, SourceFactory] = {"dealer": _dealer, "prometheus": _prometheus}


@contextmanager
def build_sources(ctx: SourceContext) -> Iterator[list[MetricSource]]:
    """Every registered source for one tick, in registry order; those holding connections are closed after."""
    with ExitStack() as stack:
        sources = []
        for factory in SOURCES.values():
            source = factory(ctx)
            if isinstance(source, _Closeable):
                stack.callback(source.close)
            sources.append(source)
        yield sources
