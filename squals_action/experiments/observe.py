"""From metric sources to one :class:`~squals_action.experiments.interface.Observation` per variant.

The objective becomes its sufficient statistics (:mod:`~.sufficient`) under the objective's metric name: a
``proportion`` from the numerator and denominator counts (or the statistics a source gives), a ``mean``
from the statistics a source gives for the numerator, a ``ratio`` from those a source gives for the metric
``<numerator>/<denominator>`` (sums per unit and their cross-product). ``activations`` and ``errors`` feed the
minimum duration and the ``error_rate`` guardrail; every guardrail metric is read too, with its statistics
when its source has them. A metric no source measures, or one whose source failed, is listed as missing
with the reason (never 0).

Bad data never decides: NaN, infinity, negative counts, converters above units or sums that cannot be
statistics raise :class:`~.interface.BadDataError` "bad data from <source> for <variant>: <what>".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime

from squals_action.experiments.interface import BadDataError, MetricError, MetricSource, Observation
from squals_action.experiments.sufficient import Mean, Proportion, Ratio, Sufficient, problem
from squals_action.manifest.model import Experiment, Objective

_KIND_OF: dict[str, type[Proportion] | type[Mean] | type[Ratio]] = {
    "proportion": Proportion,
    "mean": Mean,
    "ratio": Ratio,
}


def ratio_metric(numerator: str, denominator: str) -> str:
    """The name a source is asked for a ratio's per-unit statistics: ``<numerator>/<denominator>``."""
    return f"{numerator}/{denominator}"


def stats_metric(objective: Objective) -> str:
    """The metric whose sufficient statistics the objective needs from a source."""
    return (
        ratio_metric(objective.numerator, objective.denominator)
        if objective.kind == "ratio"
        else objective.numerator
    )


def _bad(source: str, variant: str, what: str) -> BadDataError:
    return BadDataError(f"bad data from {source} for {variant}: {what}")


def observe(
    spec: Experiment, sources: Sequence[MetricSource], variants: Sequence[str], now: datetime
) -> dict[str, Observation]:
    """One :class:`Observation` per variant from the sources (first source that knows a metric wins).

    Raises :class:`BadDataError` on the first number that cannot be a statistic.
    """
    objective = spec.objective
    wanted_stats = stats_metric(objective)
    wanted = [objective.numerator, objective.denominator, "activations", "errors"]
    if wanted_stats not in wanted:
        wanted.append(wanted_stats)
    wanted += [g.metric for g in spec.guardrails if g.metric not in wanted]
    values: dict[str, dict[str, float]] = {v: {} for v in variants}
    sufficient: dict[str, dict[str, Sufficient]] = {v: {} for v in variants}
    missing: dict[str, dict[str, str]] = {v: {} for v in variants}
    origin: dict[str, str] = {}
    for metric in wanted:
        source = next((s for s in sources if s.knows(metric)), None)
        if source is None:
            for v in variants:
                missing[v][metric] = "no metric source measures it"
            continue
        origin[metric] = source.name
        try:
            reading = source.read([metric], variants)
        except MetricError as exc:
            for v in variants:
                missing[v][metric] = exc.one_line()
            continue
        for v in variants:
            if metric in reading.values.get(v, {}):
                value = reading.values[v][metric]
                if not isinstance(value, (int, float)) or not math.isfinite(value):
                    raise _bad(source.name, v, f"{metric} is {value!r}")
                if value < 0 and metric in (
                    objective.numerator,
                    objective.denominator,
                    "activations",
                    "errors",
                ):
                    raise _bad(source.name, v, f"negative count {metric} = {value:g}")
                values[v][metric] = value
            elif metric in reading.missing.get(v, {}):
                missing[v][metric] = reading.missing[v][metric]
            given = reading.stats.get(v, {}).get(metric)
            if given is not None:
                why = problem(given)
                if why:
                    raise _bad(source.name, v, f"{metric}: {why}")
                sufficient[v][metric] = given
    return {v: _observation(spec, v, values[v], sufficient[v], missing[v], origin, now) for v in variants}


def _observation(
    spec: Experiment,
    variant: str,
    got: dict[str, float],
    given: dict[str, Sufficient],
    missing: dict[str, str],
    origin: dict[str, str],
    now: datetime,
) -> Observation:
    objective = spec.objective
    key = stats_metric(objective)
    stats: dict[str, Sufficient] = {g.metric: given[g.metric] for g in spec.guardrails if g.metric in given}
    target = given.get(key)
    if objective.kind == "proportion" and objective.denominator not in ("visitors", "units"):
        target = None  # a source's proportion is among its units; this one divides by another count
    if target is None and objective.kind == "proportion" and objective.denominator in got:
        target = Proportion(units=got[objective.denominator], converters=got.get(objective.numerator, 0.0))
        why = problem(target)
        if why:
            raise _bad(origin.get(objective.numerator, origin[objective.denominator]), variant, why)
    if target is not None and not isinstance(target, _KIND_OF[objective.kind]):
        raise _bad(
            origin[key], variant, f"{key} has {target.kind} statistics, the objective is a {objective.kind}"
        )
    if "errors" in got and "activations" in got:
        why = problem(Proportion(units=got["activations"], converters=got["errors"]))
        if why:
            raise _bad(origin["errors"], variant, f"errors against activations: {why}")
    if target is not None:
        stats[objective.metric] = target
    elif objective.kind != "proportion" and key not in missing:
        missing[key] = f"no sufficient statistics for a {objective.kind} (its source gives single values)"
    units = target.n if target is not None else got.get(objective.denominator, 0.0)
    extra = {k: x for k, x in got.items() if k not in (objective.numerator, objective.denominator)}
    return Observation(
        variant=variant,
        units=int(units),
        conversions=round(target.converters)
        if isinstance(target, Proportion)
        else round(got.get(objective.numerator, 0.0)),
        activations=int(got.get("activations", 0)),
        errors=int(got.get("errors", 0)),
        collected_at=now,
        metrics=extra,
        missing=missing,
        stats=stats,
    )
