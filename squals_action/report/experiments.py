"""An experiment as markdown for the PR comment, the job summary and ``squals experiment status --format
markdown``: a table per variant and a Mermaid ``xychart-beta`` of each variant's objective over the ticks.

Everything comes from the experiment's document on the state branch (the recorded decision, the declared
split and spec, the last observations, the ticks). Variant and metric names come from the squals file: they
are escaped in the table and reduced to plain characters inside the chart's quoted labels.

Values are shown in the objective's own unit: a proportion in percent (its difference in points), a mean or
a ratio as the number itself; the relative lift is a percentage for every kind.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from squals_action.report import markdown as md
from squals_action.state.interface import ExperimentState

#: What a Mermaid label may hold: anything else (quotes, brackets, newlines, backticks) is dropped.
_MERMAID_UNSAFE = re.compile(r"[^A-Za-z0-9 _.:%/+-]")


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


class _Units:
    """The objective's formatting: percent and points for a proportion, the number itself otherwise."""

    def __init__(self, kind: str) -> None:
        self.percent = kind == "proportion"

    def value(self, x: float) -> str:
        return f"{100 * x:.2f} %" if self.percent else f"{x:.4g}"

    def change(self, x: float) -> str:
        return f"{100 * x:+.2f} pts" if self.percent else f"{x:+.4g}"

    def chart(self, x: float) -> float:
        return float(f"{100 * x if self.percent else x:.4g}")


def _interval(show: Callable[[float], str], estimate: Any, low: Any, high: Any) -> str:
    got = [_number(v) for v in (estimate, low, high)]
    if got[0] is None:
        return ""
    text = show(got[0])
    if got[1] is not None and got[2] is not None:
        text += f" [{show(got[1])}, {show(got[2])}]"
    return text


def _lift(x: float) -> str:
    return f"{100 * x:+.1f} %"


def _p(f: Mapping[str, Any]) -> str:
    raw, adjusted = _number(f.get("p_value")), _number(f.get("adjusted_p"))
    if raw is None:
        return ""
    return f"{raw:.3g}" + (f" (Holm {adjusted:.3g})" if adjusted is not None and adjusted != raw else "")


def _verdict(name: str, f: Mapping[str, Any], decision: Mapping[str, Any], control: str) -> str:
    if name == decision.get("winner"):
        return "🏆 winner"
    if name == control:
        return "control"
    if decision.get("status") == "halted-srm":
        return "halted: sample-ratio mismatch"
    if f.get("excluded"):
        return "excluded by a guardrail"
    if f.get("significant"):
        return "significantly better" if f.get("better") else "significantly worse"
    return "not significant"


def _srm(name: str, units: Mapping[str, float], split: Mapping[str, float], excluded: Sequence[str]) -> str:
    """Observed share of units against the declared one (among the variants still served)."""
    served = [v for v in split if v not in excluded and split[v] > 0]
    if name not in served:
        return "not served"
    total_units = sum(units.get(v, 0.0) for v in served)
    total_weight = sum(split[v] for v in served)
    declared = 100 * split[name] / total_weight
    if total_units <= 0:
        return f"no units of {declared:.1f} %"
    return f"{100 * units.get(name, 0.0) / total_units:.1f} % of {declared:.1f} %"


def _guardrails(name: str, doc: ExperimentState, f: Mapping[str, Any]) -> str:
    guards = [g for g in (doc.extra.get("spec") or {}).get("guardrails", []) if isinstance(g, Mapping)]
    measured = doc.observations.get(name, {})
    parts = []
    for g in guards:
        metric = str(g.get("metric", ""))
        value = _number(measured.get(metric))
        shown = f"{value:.4g}" if value is not None else "not measured"
        parts.append(f"{md.escape(metric)} {shown}")
    text = ", ".join(parts)
    if f.get("excluded"):
        text = "✗ " + md.escape(f["excluded"]) + (f" ({text})" if text else "")
    elif parts and name != doc.extra.get("control"):
        text = "✓ " + text
    return text


def table(doc: ExperimentState, costs: Mapping[str, str] | None = None) -> str:
    """A row per variant: units, objective, difference and lift (intervals), p, decision, SRM, guardrails,
    and with ``costs`` (variant -> its island's cost so far, rendered) the cost next to them."""
    decision = doc.decision or {}
    figures: Mapping[str, Mapping[str, Any]] = decision.get("figures") or {}
    control = str(doc.extra.get("control") or next(iter(figures), ""))
    units_fmt = _Units(str(decision.get("kind", "proportion")))
    units = {v: float(f.get("units", 0)) for v, f in figures.items()}
    excluded = [str(v) for v in decision.get("excluded", [])]
    rows = []
    for name in [v for v in doc.split if v in figures] + [v for v in figures if v not in doc.split]:
        f = figures[name]
        rate = _number(f.get("rate"))
        rows.append(
            [
                md.code(name),
                f"{int(units[name]):,}",
                units_fmt.value(rate) if rate is not None else "",
                _interval(units_fmt.change, f.get("effect"), f.get("ci_low"), f.get("ci_high")),
                _interval(
                    _lift, f.get("relative_effect"), f.get("relative_ci_low"), f.get("relative_ci_high")
                ),
                _p(f),
                _verdict(name, f, decision, control),
                _srm(name, units, doc.split, excluded),
                _guardrails(name, doc, f),
                *([md.escape(costs.get(name, "no data"))] if costs is not None else []),
            ]
        )
    metric = str(((doc.extra.get("spec") or {}).get("objective") or {}).get("metric", "objective"))
    return md.table(
        [
            "variant",
            "units",
            md.escape(metric),
            "vs control [interval]",
            "lift [interval]",
            "p-value",
            "decision",
            "units share (SRM)",
            "guardrails",
            *(["island cost so far"] if costs is not None else []),
        ],
        rows,
        align="lrrrrrlrl" + ("r" if costs is not None else ""),
    )


def _label(text: str) -> str:
    return _MERMAID_UNSAFE.sub("", " ".join(text.split()))[:60] or "objective"


def chart(doc: ExperimentState) -> str:
    """A Mermaid ``xychart-beta`` with one line per variant over the recorded ticks ("" before two ticks).

    Ticks recorded before the objective was kept per tick fall back to conversions over units for a
    proportion and are left out otherwise.
    """
    decision = doc.decision or {}
    kind = str(decision.get("kind", "proportion"))
    fmt = _Units(kind)
    variants = [v for v in doc.split if v in (decision.get("figures") or {})]
    series: list[list[float]] = []
    for tick in doc.extra.get("ticks", []):
        values = dict(tick.get("objective") or {})
        if not values and kind == "proportion":
            units, conv = tick.get("units") or {}, tick.get("conversions") or {}
            values = {v: conv.get(v, 0) / units[v] for v in variants if units.get(v)}
        if variants and all(_number(values.get(v)) is not None for v in variants):
            series.append([fmt.chart(float(values[v])) for v in variants])
    if len(series) < 2:
        return ""
    metric = _label(str(((doc.extra.get("spec") or {}).get("objective") or {}).get("metric", "objective")))
    low, high = min(min(s) for s in series), max(max(s) for s in series)
    pad = (high - low) * 0.1 or abs(high) * 0.1 or 1.0
    lines = [
        "```mermaid",
        "xychart-beta",
        f'    title "{metric} per variant over the ticks"',
        f'    x-axis "tick" 1 --> {len(series)}',
        f'    y-axis "{metric}{" (%)" if fmt.percent else ""}" {low - pad:.4g} --> {high + pad:.4g}',
    ]
    for i, _ in enumerate(variants):
        lines.append("    line [" + ", ".join(f"{s[i]:g}" for s in series) + "]")
    lines.append("```")
    legend = ", ".join(f"{i + 1}. {md.code(v)}" for i, v in enumerate(variants))
    return "\n".join(lines) + f"\n\nLines in order: {legend}."


def experiment_markdown(
    doc: ExperimentState, costs: Mapping[str, str] | None = None, *, placement: str | None = None
) -> str:
    """The experiment's report: where it splits among others (``placement``, :func:`.records.placement`),
    the table (with each variant's island cost when ``costs`` is given), the sample-ratio check, the chart
    and the decision's reasons (a document without figures, stopped before any tick, says so instead of an
    empty table)."""
    decision = doc.decision or {}
    placed = f"Placement: {md.escape(placement)}.\n\n" if placement else ""
    if not decision.get("figures"):
        why = decision.get("reason") or decision.get("outcome") or doc.status
        return f"{placed}No tick was judged: {md.escape(why)}.\n"
    parts = [placed.rstrip("\n")] if placed else []
    parts.append(table(doc, costs))
    srm_p = _number(decision.get("srm_p"))
    alpha = _number(decision.get("alpha"))
    test = f"{md.escape(decision.get('method', ''))} test"
    if alpha is not None:
        test += f", alpha {alpha:g}"
    if srm_p is not None:
        halted = " — **halted**: the assignment is broken" if decision.get("status") == "halted-srm" else ""
        test += f"; sample ratio: chi-square p={srm_p:.2g} (halts below 0.001){halted}"
    parts.append(test)
    drawn = chart(doc)
    if drawn:
        parts.append(drawn)
    reasons = "\n".join(f"- {md.escape(r)}" for r in decision.get("reasons", []))
    if reasons:
        parts.append(reasons)
    return "\n\n".join(parts) + "\n"
