"""The decision of one tick, as a pure function: observations and the spec in, a :class:`Decision` out.

Order of judgement:

1. **Guardrails** (every tick, from the first): a variant that worsens a guardrail metric against control by
   more than ``max_increase``, or passes ``max``, is *excluded* (the engine gives it no more traffic). The
   ``error_rate`` increase is tested as a proportion (one-sided, at ``alpha``), so noise in the first requests
   does not exclude anyone; other metrics compare values once both arms saw :data:`GUARDRAIL_MIN_ACTIVATIONS`.
   When every variant but control is excluded the experiment ends with ``guardrail-stop``.
2. **Minimum duration**: no winner before ``min_duration.time`` has passed *and* ``min_duration.activations``
   activations over all variants were seen.
3. **Significance**: each remaining variant against control (mSPRT for ``sequential``, z-test for ``fixed``),
   Holm-adjusted across the variants. A variant significantly better in the objective's direction wins (the
   best of them if several); when every remaining variant is significantly worse, control wins. Otherwise a
   ``fixed`` experiment ends with ``no-difference`` (its one look is spent) and a ``sequential`` one goes on.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from squals_action.experiments import stats
from squals_action.experiments.interface import Decision, DecisionStatus, Observation, VariantFigures
from squals_action.manifest.model import Experiment, Guardrail

#: Below this many activations in either arm a value guardrail is not judged yet.
GUARDRAIL_MIN_ACTIVATIONS = 30


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86400.0), ("h", 3600.0), ("m", 60.0)):
        if seconds >= size:
            return f"{seconds / size:.3g}{unit}"
    return f"{seconds:.3g}s"


def _guardrail_breach(
    guard: Guardrail, variant: Observation, control: Observation, alpha: float
) -> tuple[str | None, str | None]:
    """(breach description, note) for one guardrail of one variant; both None when it holds."""
    metric = guard.metric
    low = min(variant.activations, control.activations) < GUARDRAIL_MIN_ACTIVATIONS
    if metric == "error_rate":
        v_rate = 100.0 * variant.errors / variant.activations if variant.activations else 0.0
        c_rate = 100.0 * control.errors / control.activations if control.activations else 0.0
        if guard.max_increase is not None and not low:
            p = stats.increase_p_value(
                control.activations,
                control.errors,
                variant.activations,
                variant.errors,
                margin=guard.max_increase / 100.0,
            )
            if p < alpha:
                return (
                    f"error_rate {v_rate:.3g}% vs control {c_rate:.3g}%: more than "
                    f"+{guard.max_increase:g} points (p={p:.2g})",
                    None,
                )
        if guard.max is not None and not low and v_rate > guard.max:
            return f"error_rate {v_rate:.3g}% > max {guard.max:g}%", None
        return None, None
    value = variant.metrics.get(metric)
    base = control.metrics.get(metric)
    if value is None:
        why = variant.missing.get(metric, "not measured")
        return None, f"guardrail {metric} of {variant.variant}: {why}"
    if low:
        return None, None
    if guard.max is not None and value > guard.max:
        return f"{metric} {value:.4g} > max {guard.max:g}", None
    if guard.max_increase is not None:
        if base is None:
            return None, f"guardrail {metric} of control: {control.missing.get(metric, 'not measured')}"
        if value - base > guard.max_increase:
            return f"{metric} {value:.4g} vs control {base:.4g}: more than +{guard.max_increase:g}", None
    return None, None


def decide(
    observations: Mapping[str, Observation], spec: Experiment, started_at: datetime, now: datetime
) -> Decision:
    """Judge the experiment now. Pure: same inputs, same decision (the tick records it)."""
    alpha = spec.significance.alpha
    method = spec.significance.method
    control_name = spec.control
    maximize = spec.objective.direction == "maximize"
    treatments = [v for v in spec.variants if v != control_name]
    control = observations.get(control_name)
    if control is None:
        return Decision(
            "continue", None, (f"control {control_name!r} was not measured",), {}, method=method, alpha=alpha
        )

    reasons: list[str] = []
    notes: list[str] = []
    excluded: dict[str, str] = {}
    for name in treatments:
        obs = observations.get(name)
        if obs is None:
            notes.append(f"{name} was not measured")
            continue
        for guard in spec.guardrails:
            breach, note = _guardrail_breach(guard, obs, control, alpha)
            if note:
                notes.append(note)
            if breach:
                excluded[name] = breach
                break

    m = max(len(treatments), 1)
    comparisons = {
        name: stats.compare(
            control.units, control.conversions, obs.units, obs.conversions, method=method, alpha=alpha / m
        )
        for name in treatments
        if (obs := observations.get(name)) is not None
    }
    remaining = [n for n in treatments if n in comparisons and n not in excluded]
    adjusted = stats.holm({n: comparisons[n].p_value for n in remaining}, total=len(treatments))

    figures: dict[str, VariantFigures] = {
        control_name: VariantFigures(
            control_name, control.units, control.conversions, control.rate, control.activations
        )
    }
    for name, cmp in comparisons.items():
        obs = observations[name]
        significant = name in adjusted and adjusted[name] <= alpha
        figures[name] = VariantFigures(
            name,
            obs.units,
            obs.conversions,
            obs.rate,
            obs.activations,
            effect=cmp.effect,
            relative_effect=cmp.effect / control.rate if control.rate else None,
            ci_low=cmp.ci_low,
            ci_high=cmp.ci_high,
            p_value=cmp.p_value,
            adjusted_p=adjusted.get(name),
            significant=significant,
            better=(cmp.effect > 0) == maximize if cmp.effect != 0 else None,
            excluded=excluded.get(name),
        )
    p_values = {n: comparisons[n].p_value for n in comparisons}

    def make(status: DecisionStatus, winner: str | None, met: bool) -> Decision:
        return Decision(
            status,
            winner,
            tuple(reasons + notes),
            figures,
            p_values=p_values,
            excluded=tuple(sorted(excluded)),
            method=method,
            alpha=alpha,
            min_duration_met=met,
        )

    for name, why in sorted(excluded.items()):
        reasons.append(f"{name} excluded by a guardrail: {why}")
    if treatments and not remaining and len(excluded) == len(treatments):
        return make("guardrail-stop", None, False)

    elapsed = (now - started_at).total_seconds()
    activations = sum(o.activations for o in observations.values())
    need = spec.min_duration
    met = elapsed >= need.seconds and activations >= need.activations
    if not met:
        reasons.insert(
            0,
            f"minimum duration not reached: {_duration(max(elapsed, 0.0))} of {_duration(need.seconds)}, "
            f"{activations} of {need.activations} activations",
        )
        return make("continue", None, False)

    better = [n for n in remaining if figures[n].significant and figures[n].better]
    word = "higher" if maximize else "lower"
    if better:
        pick = max if maximize else min
        winner = pick(better, key=lambda n: figures[n].rate)
        f = figures[winner]
        reasons.insert(
            0,
            f"{winner} converts {f.rate:.4g} vs control {figures[control_name].rate:.4g} ({word} is better; "
            f"adjusted p={f.adjusted_p:.2g} <= alpha {alpha:g}, {method})",
        )
        return make("winner", winner, True)
    if remaining and all(figures[n].significant and figures[n].better is False for n in remaining):
        reasons.insert(0, f"every variant is significantly worse than control ({word} is better)")
        return make("winner", control_name, True)
    if method == "fixed":
        reasons.insert(0, f"no variant differs significantly from control at alpha {alpha:g} (fixed test)")
        return make("no-difference", None, True)
    reasons.insert(0, f"no significant difference yet at alpha {alpha:g} (sequential: keeps testing)")
    return make("continue", None, True)
