"""What the experiment engine's steps report: a start's and a tick's outcome, and the words for a tick that
could not measure its objective (no data is said, never shown as a measured "running")."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from squals_action.experiments.interface import Decision, Observation
from squals_action.manifest.model import Experiment
from squals_action.state.interface import ExperimentState

if TYPE_CHECKING:
    from squals_action.lifecycle.engine import Outcome


@dataclass(frozen=True, kw_only=True)
class StartOutcome:
    """What a start did: the experiment's document, its traffic URL, and whether this call started it."""

    experiment: ExperimentState
    url: str | None
    message: str
    started: bool


@dataclass(frozen=True, kw_only=True)
class TickOutcome:
    """What one tick did to one experiment; ``ok`` is False when it could not measure or promote."""

    experiment: str
    status: str
    ok: bool
    message: str
    decision: Decision | None = None
    promoted: str | None = None
    lifecycle: Outcome | None = None


def no_data(spec: Experiment, observations: Mapping[str, Observation]) -> str:
    """``"; no data: <why>"`` when the objective is unmeasured for a variant (else empty): a tick that
    continues for want of data says so instead of looking like a measured "running"."""
    wanted = (spec.objective.numerator, spec.objective.denominator)
    for variant, seen in observations.items():
        for metric in wanted:
            if metric in seen.missing:
                return f"; no data: {metric} for {variant}: {seen.missing[metric]}"
    return ""
