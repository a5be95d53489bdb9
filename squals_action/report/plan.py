"""An experiment's plan for people: a table per design as markdown, or a rich table on a terminal.

Variant names come from the squals file or the command line: escaped in markdown, plain text (never
markup) in rich. ``rich`` is imported only when a terminal view is printed.
"""

from __future__ import annotations

import math
from typing import TextIO

from squals_action.experiments.plan import TAG, DesignPlan, Plan
from squals_action.report import markdown as md

_LABELS = {
    "fixed": "fixed (Welch's test, one look at the horizon)",
    "sequential": "sequential (mSPRT, a look per tick)",
}


def _value(plan: Plan, value: float) -> str:
    """A rate in percent, a mean in its own unit."""
    return f"{100 * value:.2f} %" if plan.design.kind == "proportion" else f"{value:.4g}"


def _days(days: float | None) -> str:
    return "" if days is None else f"{days:,.1f}"


def _horizon(days: float) -> str:
    """The ``min_duration.time`` that covers ``days`` (whole days, or hours below one)."""
    return f"{math.ceil(days - 1e-9)}d" if days >= 1 else f"{max(1, math.ceil(24 * days - 1e-9))}h"


def headline(plan: Plan) -> str:
    """What is planned, in one sentence of our words and numbers (variant names excluded: the table shows
    them, escaped), so markdown shows it as is."""
    d = plan.design
    per = d.comparison_alpha
    level = f"alpha {d.alpha:g}" + (f" ({per:.3g} per comparison, Holm)" if len(d.variants) > 1 else "")
    spread = f", sd {d.sd:.4g}" if d.sd is not None else ""
    return (
        f"{d.kind} from {_value(plan, d.baseline)}{spread} to {_value(plan, d.baseline + d.effect)} "
        f"({100 * d.effect / d.baseline:+.1f} %), {level}, power {100 * d.power:.0f} %, "
        f"{d.daily_units:,.0f} units a day, {d.ticks_per_day:g} ticks a day"
    )


def _cells(plan: Plan, design: DesignPlan) -> list[str]:
    """A design's numbers, after its label and the units per variant."""
    short = " (capped)" if design.power < plan.design.power else ""
    return [
        f"{design.total_units:,}",
        _days(design.days),
        f"{design.looks:,}",
        f"{100 * design.power:.1f} %{short}",
        _days(design.expected_days),
    ]


_HEAD = ["units in all", "days", "looks", "power", "expected days to a decision"]


def notes(plan: Plan) -> list[str]:
    """What the numbers mean and what to set in the squals file: our text, numbers only, shown as is in
    markdown too (nothing in it comes from the squals file)."""
    tag = (
        []
        if plan.experiment_id is not None
        else [
            f"`{TAG}`: 8 hex digits of the experiment id's sha256, known at its start (default id "
            "`<name>-<commit[:12]>`); `--id ID` prints the exact names"
        ]
    )
    return [
        f"fixed design: set `min_duration.time` to {_horizon(plan.fixed.days)}; the test decides once, at "
        "the first tick after it",
        "sequential: the power is a seeded simulation of the mSPRT at every tick; it may stop earlier "
        "(expected days, when the effect is there)",
        *tag,
    ]


def markdown(plan: Plan) -> str:
    """The plan as GitHub markdown (``squals experiment plan --format markdown``)."""
    variants = list(plan.design.split)
    rows = [
        [_LABELS[p.method], *(f"{p.units[v]:,}" for v in variants), *_cells(plan, p)]
        for p in (plan.fixed, plan.sequential)
    ]
    table = md.table(
        ["design", *(f"{md.code(v)} units" for v in variants), *_HEAD],
        rows,
        align="l" + "r" * (len(variants) + len(_HEAD)),
    )
    islands = ", ".join(md.code(i) for i in plan.islands)
    lines = "\n".join(f"- {n}" for n in notes(plan))
    return f"{headline(plan)}\n\n{table}\n\nIslands (one per variant): {islands}\n\n{lines}\n"


def print_terminal(plan: Plan, out: TextIO) -> None:
    """The plan as a rich table (plain text when ``out`` is not a terminal)."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console(file=out, highlight=False, soft_wrap=False, width=None if out.isatty() else 160)
    variants = list(plan.design.split)
    table = Table(title=Text(headline(plan)))
    table.add_column("design")
    for v in variants:
        table.add_column(Text(f"{v} units"), justify="right")
    for head in _HEAD:
        table.add_column(head, justify="right")
    for p in (plan.fixed, plan.sequential):
        table.add_row(_LABELS[p.method], *(f"{p.units[v]:,}" for v in variants), *_cells(plan, p))
    console.print(table)
    console.print(Text("islands (one per variant): " + ", ".join(plan.islands)))
    for line in notes(plan):
        console.print(Text(line))
