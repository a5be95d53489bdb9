"""What the experiments concern reads and decides: metric sources, their observations, the decision.

A :class:`MetricSource` measures named metrics per variant (the Dealer's tallies, a Prometheus query). The
engine turns what the sources measured into one frozen :class:`Observation` per variant (the objective's
numerator and denominator as counts, the activations and every guardrail metric), and the pure
:func:`squals_action.experiments.decide.decide` turns observations into a :class:`Decision`.

Nothing here imports numpy, scipy or requests: the CLI imports this module at start-up.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol, runtime_checkable

from squals_action.errors import SqualsError
from squals_action.experiments.sufficient import Sufficient
from squals_action.experiments.sufficient import to_json as stats_to_json

#: What a tick concluded: keep going, promote a winner, no difference (fixed test), every variant breached, or
#: the units do not follow the declared split (sample-ratio mismatch: nothing measured can be trusted).
DecisionStatus = Literal["continue", "winner", "no-difference", "guardrail-stop", "halted-srm"]
DECISION_STATUSES: tuple[DecisionStatus, ...] = (
    "continue",
    "winner",
    "no-difference",
    "guardrail-stop",
    "halted-srm",
)


class ExperimentError(SqualsError):
    """Base of every failure of the experiments concern (starting, measuring, deciding, promoting)."""


class MetricError(ExperimentError):
    """A metric source could not be read (unreachable, bad answer, unknown metric)."""


class BadDataError(ExperimentError):
    """A source delivered numbers that cannot be statistics: the tick decides and records nothing."""


@dataclass(frozen=True)
class Reading:
    """What one source measured: variant -> metric -> value, and variant -> metric -> why it is missing.

    ``stats`` holds, for the metrics a test compares (the objective, guardrails), variant -> metric -> the
    :mod:`~squals_action.experiments.sufficient` statistics (proportion, mean or ratio, per unit); a source
    that can only give a single value leaves them out, and such a metric can be compared by value only.
    """

    values: Mapping[str, Mapping[str, float]]
    missing: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    stats: Mapping[str, Mapping[str, Sufficient]] = field(default_factory=dict)


@runtime_checkable
class MetricSource(Protocol):
    """Measures metrics per variant; each implementation knows a set of metric names.

    A metric it knows but cannot measure right now goes to :attr:`Reading.missing` with the reason (a
    per-item failure as a value); a source that cannot be used at all raises :class:`MetricError`. A metric
    it does not know gets no value (it is left out; the engine asks the next source). Sources are built per
    tick through the registry in :mod:`squals_action.experiments.sources`.
    """

    name: str

    def knows(self, metric: str) -> bool:
        """Whether this source measures ``metric`` (e.g. ``event:checkout``, ``error_rate``)."""
        ...

    def read(self, metrics: Sequence[str], variants: Sequence[str]) -> Reading:
        """The metrics this source knows, for every variant."""
        ...


@dataclass(frozen=True)
class Observation:
    """Everything measured for one variant at one moment; counts are cumulative since the start.

    ``units`` is the objective's denominator (visitors or activations), ``conversions`` its numerator (a
    count of units). ``activations`` feeds the minimum duration; ``errors`` with ``activations`` lets the
    ``error_rate`` guardrail be tested as a proportion. ``metrics`` holds every other measured value
    (guardrail metrics in their squals-file unit: ``error_rate`` in percent, latencies in ms); a metric that
    could not be measured is listed in ``missing`` with the reason.

    ``stats`` holds metric -> sufficient statistics (:mod:`~squals_action.experiments.sufficient`) for the
    metrics the statistics test: the objective under its metric name, guardrails under theirs. ``units`` is
    also what the sample-ratio check compares with the declared split.
    """

    variant: str
    units: int
    conversions: int
    activations: int
    collected_at: datetime
    errors: int = 0
    metrics: Mapping[str, float] = field(default_factory=dict)
    missing: Mapping[str, str] = field(default_factory=dict)
    stats: Mapping[str, Sufficient] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        """conversions / units (0.0 before any unit)."""
        return self.conversions / self.units if self.units else 0.0

    def to_json(self) -> dict[str, float]:
        """The numbers as the experiment document keeps them (variant -> metric -> value)."""
        out: dict[str, float] = {
            "units": float(self.units),
            "conversions": float(self.conversions),
            "activations": float(self.activations),
            "errors": float(self.errors),
        }
        out.update({k: float(v) for k, v in self.metrics.items()})
        return out

    def stats_json(self) -> dict[str, dict[str, Any]]:
        """The sufficient statistics as the document keeps them (metric -> kind and sums)."""
        return {k: stats_to_json(v) for k, v in self.stats.items()}


@dataclass(frozen=True)
class VariantFigures:
    """One variant's figures in a decision; ``effect`` is the rate difference vs control (absolute).

    ``rate`` is the objective's value (a proportion, a mean per unit or a ratio); ``units`` its units.
    ``p_value`` is the raw p-value of the test against control (always-valid for ``sequential``), and
    ``adjusted_p`` the Holm-adjusted one across the variants; both ``None`` for the control itself. The
    intervals (absolute ``ci_*`` and relative ``relative_ci_*``) are at level ``1 - interval_alpha``, the
    Holm step's level, so a significant variant's interval excludes 0.
    ``excluded`` names the guardrail breach that took the variant out of the running.
    """

    variant: str
    units: int
    conversions: int
    rate: float
    activations: int
    effect: float | None = None
    relative_effect: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    p_value: float | None = None
    adjusted_p: float | None = None
    significant: bool = False
    better: bool | None = None
    excluded: str | None = None
    relative_ci_low: float | None = None
    relative_ci_high: float | None = None
    interval_alpha: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass(frozen=True)
class Decision:
    """What one tick concluded. ``winner`` is set only for ``status == "winner"``."""

    status: DecisionStatus
    winner: str | None
    reasons: tuple[str, ...]
    figures: Mapping[str, VariantFigures]
    p_values: Mapping[str, float] = field(default_factory=dict)
    excluded: tuple[str, ...] = ()
    method: str = "sequential"
    alpha: float = 0.05
    min_duration_met: bool = False
    srm_p: float | None = None
    #: the objective's kind: a figure's ``rate`` is a proportion, a mean per unit or a ratio of sums
    kind: str = "proportion"

    @property
    def final(self) -> bool:
        """Whether the experiment ends with this decision."""
        return self.status != "continue"

    def summary(self) -> str:
        """One line for a report."""
        head = {
            "continue": "running",
            "winner": f"winner: {self.winner}",
            "no-difference": "no significant difference",
            "guardrail-stop": "stopped by a guardrail",
            "halted-srm": "halted: sample-ratio mismatch",
        }[self.status]
        return f"{head} ({self.reasons[0]})" if self.reasons else head

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "winner": self.winner,
            "reasons": list(self.reasons),
            "figures": {k: v.to_json() for k, v in self.figures.items()},
            "p_values": dict(self.p_values),
            "excluded": list(self.excluded),
            "method": self.method,
            "alpha": self.alpha,
            "min_duration_met": self.min_duration_met,
            "kind": self.kind,
            **({"srm_p": self.srm_p} if self.srm_p is not None else {}),
        }
