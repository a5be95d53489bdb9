"""The decision of one tick, as a pure function: observations and the spec in, a :class:`Decision` out.

Order of judgement:

1. **Sample ratio** (every tick): units per variant against the declared split (chi-square); p below
   :data:`~squals_action.experiments.stats.SRM_ALPHA` halts the experiment (``halted-srm``): whatever the
   assignment broke, the comparison cannot be trusted, so nothing is promoted.
2. **Guardrails** (every tick, from the first): a variant shown to worsen a guardrail metric against control
   by more than its margin (``max_increase`` in the metric's unit, or ``max_relative_increase`` in % of
   control) is *excluded*. Metrics with sufficient statistics (``error_rate`` as errors per activation, any
   source delivering them) are tested sequentially, one-sided (:func:`stats.breach`), so looking at every tick
   excludes a healthy variant in at most ``alpha`` of experiments; values without them (percentile latencies)
   are compared once both arms saw :data:`GUARDRAIL_MIN_ACTIVATIONS`. Every variant but control excluded:
   ``guardrail-stop``.
3. **Minimum duration** (the planned horizon): nothing before ``min_duration.time`` *and*
   ``min_duration.activations``.
4. **Significance**: each remaining variant against control on the objective (any kind: mSPRT for
   ``sequential``, Welch for ``fixed``), Holm-adjusted, intervals at the Holm step's level. A variant
   significantly better in the objective's direction wins (the best if several); when every remaining variant
   is significantly worse, control wins. Otherwise a ``fixed`` experiment ends with ``no-difference`` (its one
   look is spent) -- unless an arm has fewer than :data:`~squals_action.experiments.stats.MIN_UNITS` units,
   which is no evidence of anything: it keeps running and says so -- and a ``sequential`` one goes on.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime

from squals_action.experiments import stats
from squals_action.experiments.interface import Decision, DecisionStatus, Observation, VariantFigures
from squals_action.experiments.sufficient import Proportion, Sufficient
from squals_action.manifest.model import Experiment, Guardrail

#: Below this many activations in either arm a value guardrail is not judged yet.
GUARDRAIL_MIN_ACTIVATIONS = 30


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86400.0), ("h", 3600.0), ("m", 60.0)):
        if seconds >= size:
            return f"{seconds / size:.3g}{unit}"
    return f"{seconds:.3g}s"


def objective_stats(obs: Observation, spec: Experiment) -> Sufficient:
    """The objective's sufficient statistics (units and conversions as a proportion when none were given)."""
    return obs.stats.get(spec.objective.metric) or Proportion(units=obs.units, converters=obs.conversions)


def guardrail_stats(obs: Observation, metric: str) -> Sufficient | None:
    """A guardrail's sufficient statistics: the source's, or ``error_rate`` as errors among activations."""
    if metric in obs.stats:
        return obs.stats[metric]
    if metric == "error_rate":
        return Proportion(units=obs.activations, converters=obs.errors)
    return None


def _scale(metric: str) -> float:
    """The squals file's unit per statistics unit: ``error_rate`` is written in percent."""
    return 100.0 if metric == "error_rate" else 1.0


def _sequential_breach(
    guard: Guardrail, variant: Sufficient, control: Sufficient, alpha: float
) -> str | None:
    scale = _scale(guard.metric)
    margins = []
    if guard.max_increase is not None:
        margins.append((f"+{guard.max_increase:g}", {"absolute": guard.max_increase / scale}))
    if guard.max_relative_increase is not None:
        margins.append(
            (
                f"+{guard.max_relative_increase:g}% of control",
                {"relative": guard.max_relative_increase / 100.0},
            )
        )
    for label, margin in margins:
        _, p = stats.breach(control, variant, **margin)
        if p <= alpha:
            return (
                f"{guard.metric} {scale * variant.mean:.4g} vs control {scale * control.mean:.4g}: more than "
                f"{label} (always-valid p={p:.2g} <= alpha {alpha:g})"
            )
    return None


def _guardrail_breach(
    guard: Guardrail, variant: Observation, control: Observation, alpha: float
) -> tuple[str | None, str | None]:
    """(breach description, note) for one guardrail of one variant; both None when it holds."""
    metric = guard.metric
    low = min(variant.activations, control.activations) < GUARDRAIL_MIN_ACTIVATIONS
    v_stats, c_stats = guardrail_stats(variant, metric), guardrail_stats(control, metric)
    if v_stats is not None and c_stats is not None:
        breach = _sequential_breach(guard, v_stats, c_stats, alpha)
        if breach:
            return breach, None
        mean = _scale(metric) * v_stats.mean
        if guard.max is not None and not low and mean > guard.max:
            return f"{metric} {mean:.4g} > max {guard.max:g}", None
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
    if guard.max_increase is not None or guard.max_relative_increase is not None:
        if base is None:
            return None, f"guardrail {metric} of control: {control.missing.get(metric, 'not measured')}"
        allowed = (
            (guard.max_increase or 0.0)
            if guard.max_increase is not None
            else base * (guard.max_relative_increase or 0.0) / 100.0
        )
        if value - base > allowed:
            return f"{metric} {value:.4g} vs control {base:.4g}: more than +{allowed:g}", None
    return None, None


def _srm(
    observations: Mapping[str, Observation], spec: Experiment, excluded: Mapping[str, str]
) -> tuple[float | None, str | None]:
    """(p-value, reason if it halts): units of the variants still served against their declared weights."""
    weights = {v: w for v, w in spec.split.items() if v not in excluded and v in observations}
    units = {v: float(observations[v].units) for v in weights}
    got = stats.srm(units, weights)
    if got is None:
        return None, None
    _, p = got
    if p >= stats.SRM_ALPHA:
        return p, None
    counts = ", ".join(f"{v} {units[v]:.0f}" for v in weights)
    split = "/".join(f"{weights[v]:g}" for v in weights)
    return p, (
        f"sample-ratio mismatch: units {counts} against the declared split {split} "
        f"(chi-square p={p:.2g} < {stats.SRM_ALPHA:g}); the assignment is broken, nothing is promoted"
    )


def decide(
    observations: Mapping[str, Observation],
    spec: Experiment,
    started_at: datetime,
    now: datetime,
    excluded_before: Collection[str] = (),
) -> Decision:
    """Judge the experiment now. Pure: same inputs, same decision (the tick records it).

    ``excluded_before`` names variants earlier ticks excluded (they get no traffic any more, so the sample
    ratio is checked without them, and they stay out of the running).
    """
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
    excluded: dict[str, str] = {n: "excluded by an earlier tick" for n in excluded_before if n in treatments}
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

    base = objective_stats(control, spec)
    comparisons = {
        name: stats.compare(base, objective_stats(obs, spec), method=method)
        for name in treatments
        if (obs := observations.get(name)) is not None
    }
    remaining = [n for n in treatments if n in comparisons and n not in excluded]
    raw = {n: comparisons[n].p_value for n in remaining}
    adjusted = stats.holm(raw, total=len(treatments))
    levels = stats.holm_levels(raw, alpha, total=len(treatments))
    fallback_level = alpha / max(len(treatments), 1)

    figures: dict[str, VariantFigures] = {
        control_name: VariantFigures(
            control_name, int(base.n), control.conversions, base.mean, control.activations
        )
    }
    for name, cmp in comparisons.items():
        obs = observations[name]
        level = levels.get(name, fallback_level)
        interval = cmp.interval(level)
        rel = cmp.relative_interval(level)
        significant = name in adjusted and adjusted[name] <= alpha
        figures[name] = VariantFigures(
            name,
            int(cmp.diff.n_b),
            obs.conversions,
            cmp.diff.mean_b,
            obs.activations,
            effect=cmp.diff.effect,
            relative_effect=cmp.diff.relative,
            ci_low=interval[0] if interval else None,
            ci_high=interval[1] if interval else None,
            p_value=cmp.p_value,
            adjusted_p=adjusted.get(name),
            significant=significant,
            better=(cmp.diff.effect > 0) == maximize if cmp.diff.effect != 0 else None,
            excluded=excluded.get(name),
            relative_ci_low=rel[0] if rel else None,
            relative_ci_high=rel[1] if rel else None,
            interval_alpha=level,
        )
    p_values = {n: comparisons[n].p_value for n in comparisons}
    srm_p, srm_halt = _srm(observations, spec, excluded)

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
            srm_p=srm_p,
            kind=spec.objective.kind,
        )

    if srm_halt:
        reasons.append(srm_halt)
        return make("halted-srm", None, False)
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
    kind = spec.objective.kind
    if better:
        pick = max if maximize else min
        winner = pick(better, key=lambda n: figures[n].rate)
        f = figures[winner]
        reasons.insert(
            0,
            f"{winner} {kind} {f.rate:.4g} vs control {figures[control_name].rate:.4g} ({word} is better; "
            f"adjusted p={f.adjusted_p:.2g} <= alpha {alpha:g}, {method})",
        )
        return make("winner", winner, True)
    if remaining and all(figures[n].significant and figures[n].better is False for n in remaining):
        reasons.insert(0, f"every variant is significantly worse than control ({word} is better)")
        return make("winner", control_name, True)
    unjudged = [n for n in [control_name, *remaining] if figures[n].units < stats.MIN_UNITS]
    if unjudged:
        reasons.insert(
            0,
            f"too few units to judge {', '.join(unjudged)} (fewer than {stats.MIN_UNITS}): "
            f"nothing is concluded, the experiment keeps running",
        )
        return make("continue", None, True)
    if method == "fixed":
        reasons.insert(0, f"no variant differs significantly from control at alpha {alpha:g} (fixed test)")
        return make("no-difference", None, True)
    reasons.insert(0, f"no significant difference yet at alpha {alpha:g} (sequential: keeps testing)")
    return make("continue", None, True)
