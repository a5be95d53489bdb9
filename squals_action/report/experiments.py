"""An experiment's figures as markdown for the PR comment and the job summary (escaped, our own tables)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from squals_action.report import markdown as md


def _pct(value: Any) -> str:
    return f"{100.0 * float(value):.2f} %" if isinstance(value, int | float) else ""


def _points(value: Any) -> str:
    return f"{100.0 * float(value):+.2f} pts" if isinstance(value, int | float) else ""


def figures_markdown(decision: Mapping[str, Any]) -> str:
    """The table of a recorded decision (``Decision.to_json()``): one row per variant, then the reasons."""
    figures: Mapping[str, Mapping[str, Any]] = decision.get("figures") or {}
    rows = []
    for name, f in figures.items():
        effect = _points(f.get("effect"))
        if "ci_low" in f and "ci_high" in f:
            effect += f" [{_points(f['ci_low'])}, {_points(f['ci_high'])}]"
        p = f.get("adjusted_p")
        note = f"excluded: {f['excluded']}" if f.get("excluded") else ""
        if name == decision.get("winner"):
            note = "🏆 winner" + (f"; {note}" if note else "")
        rows.append(
            [
                md.code(name),
                str(f.get("units", 0)),
                str(f.get("conversions", 0)),
                _pct(f.get("rate")),
                effect,
                f"{p:.3g}" if isinstance(p, int | float) else "",
                md.escape(note),
            ]
        )
    table = md.table(
        ["variant", "units", "conversions", "rate", "effect vs control (CI)", "adjusted p", ""],
        rows,
        align="lrrrrrl",
    )
    method = f"{decision.get('method', '')} test, alpha {decision.get('alpha', '')}"
    reasons = "\n".join(f"- {md.escape(r)}" for r in decision.get("reasons", []))
    return f"{table}\n\n{md.escape(method)}\n\n{reasons}".strip() + "\n"
