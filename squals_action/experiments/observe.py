"""From metric sources to one :class:`~squals_action.experiments.interface.Observation` per variant.

The objective's numerator and denominator become the counts the statistics test; ``activations`` and
``errors`` feed the minimum duration and the ``error_rate`` guardrail; every guardrail metric is read too.
A metric no source measures, or one whose source failed, is listed as missing with the reason (never 0).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from squals_action.experiments.interface import MetricError, MetricSource, Observation
from squals_action.manifest.model import Experiment


def observe(
    spec: Experiment, sources: Sequence[MetricSource], variants: Sequence[str], now: datetime
) -> dict[str, Observation]:
    """One :class:`Observation` per variant from the sources (first source that knows a metric wins)."""
    objective = spec.objective
    wanted = [objective.numerator, objective.denominator, "activations", "errors"]
    wanted += [g.metric for g in spec.guardrails if g.metric not in wanted]
    values: dict[str, dict[str, float]] = {v: {} for v in variants}
    missing: dict[str, dict[str, str]] = {v: {} for v in variants}
    for metric in wanted:
        source = next((s for s in sources if s.knows(metric)), None)
        if source is None:
            for v in variants:
                missing[v][metric] = "no metric source measures it"
            continue
        try:
            reading = source.read([metric], variants)
        except MetricError as exc:
            for v in variants:
                missing[v][metric] = exc.one_line()
            continue
        for v in variants:
            if metric in reading.values.get(v, {}):
                values[v][metric] = reading.values[v][metric]
            elif metric in reading.missing.get(v, {}):
                missing[v][metric] = reading.missing[v][metric]
    out: dict[str, Observation] = {}
    for v in variants:
        got = values[v]
        extra = {k: x for k, x in got.items() if k not in (objective.numerator, objective.denominator)}
        out[v] = Observation(
            variant=v,
            units=int(got.get(objective.denominator, 0)),
            conversions=round(got.get(objective.numerator, 0)),
            activations=int(got.get("activations", 0)),
            errors=int(got.get("errors", 0)),
            collected_at=now,
            metrics=extra,
            missing=missing[v],
        )
    return out
