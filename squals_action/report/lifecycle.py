"""What a lifecycle command shows: a concise progress view on a terminal, and the PR comment's markdown.

The markdown is built from an :class:`~squals_action.lifecycle.engine.Outcome` alone (the fleet after the
command, the checks it ran, the KPI readings), so the Action's reporter and ``squals demo`` print the same
text. Every value that may come from a user (hook names, failure output, URLs) goes through
:mod:`squals_action.report.markdown`. ``rich`` is imported only when a terminal view is actually built.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import IO, Any

from squals_action.lifecycle.bake import BakeTick
from squals_action.lifecycle.engine import Outcome, Progress
from squals_action.lifecycle.machine import Check, Env, Event, Status
from squals_action.report import markdown as md

_ICON = {True: "✅", False: "❌"}
_ROLE = {
    Status.PROD: "🟢 prod",
    Status.POSTPROD: "⚪ postprod",
    Status.BLUE: "🔵 BLUE (baking)",
    Status.BAKED: "🔵 BLUE (baked)",
    Status.READY: "🏝️ island, ready",
    Status.FAILED: "🔴 island, failed",
    Status.RETIRED: "retired",
}
_TITLE = {
    "deploy": "Deploy",
    "promote": "Promotion",
    "rollback": "Rollback",
    "teardown": "Teardown",
    "down": "Down",
}


def _icon(check: Check) -> str:
    """✅ or ❌, and for a reading that had nothing to judge "no data": never a pass mark."""
    return "⚪ no data" if check.no_data else _ICON[check.ok]


def _sort_key(env: Env) -> tuple[int, str]:
    order = [Status.PROD, Status.BLUE, Status.BAKED, Status.POSTPROD]
    return (order.index(env.status) if env.status in order else len(order), env.name)


def environment_rows(fleet: Sequence[Env], public_url: str | None) -> list[list[str]]:
    rows = []
    for env in sorted(fleet, key=_sort_key):
        if env.status is Status.RETIRED:
            continue
        role = _ROLE.get(env.status, env.status.value)
        url = md.link(env.url, env.url) if env.url else ""
        if env.status is Status.PROD and public_url:
            url = f"{md.link(public_url, public_url)} (via the Dealer); direct {url}"
        share = (
            f"{env.share:g} %"
            if env.status in (Status.PROD, Status.POSTPROD, Status.BLUE, Status.BAKED)
            else ""
        )
        rows.append(
            [md.code(env.name), role, md.code((env.commit or "")[:12]) if env.commit else "", share, url]
        )
    return rows


def check_rows(checks: Sequence[Check]) -> list[list[str]]:
    return [
        [
            _icon(c),
            md.escape(c.kind),
            md.escape(c.stage),
            md.code(c.name),
            md.duration(c.duration) if c.duration else "",
            md.escape(c.detail, max_len=300),
        ]
        for c in checks
        if c.kind not in ("kpi", "chaos")
    ]


def markdown(outcome: Outcome, heading_level: int = 3) -> str:
    """The PR comment's lifecycle section for one command's outcome."""
    hashes = "#" * heading_level
    title = _TITLE.get(outcome.operation, outcome.operation)
    target = f" of {md.code(outcome.env)}" if outcome.env else ""
    icon = _ICON[outcome.ok]
    env = outcome.fleet.get(outcome.env) if outcome.env else None
    if not outcome.ok and env is not None and env.last_event is Event.BAKE_INCONCLUSIVE:
        icon, target = "⚪", f"{target}: inconclusive"  # not a failure of BLUE: nothing was proved
    parts = [f"{hashes} {icon} {title}{target}", "", md.escape(outcome.message, max_len=600), ""]
    rows = environment_rows(list(outcome.fleet.values()), outcome.public_url)
    if rows:
        parts += [md.table(["environment", "role", "commit", "traffic", "URL"], rows), ""]
    kpis = [c for c in outcome.checks if c.kind == "kpi"]
    if kpis:
        kpi_rows = [[_icon(c), md.code(c.name), md.escape(c.detail, max_len=200)] for c in kpis]
        figures = ", ".join(
            f"{k} {v:.3g}" for k, v in outcome.metrics.items() if v is not None and not k.startswith("p")
        )
        parts += [md.table(["", "KPI", "during the bake"], kpi_rows), ""]
        if figures:
            parts += [f"BLUE's traffic during the bake: {md.escape(figures)}", ""]
    drills = [c for c in outcome.checks if c.kind == "chaos"]
    if drills:
        drill_rows = [[_icon(c), md.code(c.name), md.escape(c.detail, max_len=400)] for c in drills]
        parts += [md.table(["", "chaos test", "outcome"], drill_rows), ""]
    checks = check_rows(outcome.checks)
    if checks:
        failed = sum(1 for c in outcome.checks if not c.ok and c.kind not in ("kpi", "chaos"))
        summary = f"Hooks and tests: {len(checks) - failed} passed" + (f", {failed} failed" if failed else "")
        body = md.table(["", "kind", "stage", "name", "time", "detail"], checks)
        parts += [md.details(summary, body, open_=failed > 0), ""]
    return "\n".join(parts).rstrip() + "\n"


class TextProgress(Progress):
    """Plain lines for logs and pipes: one per step, one per bake check."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stdout

    def step(self, text: str) -> None:
        print(f"  … {text}", file=self.stream, flush=True)

    def done(self, text: str, ok: bool = True) -> None:
        print(f"  {'✓' if ok else '✗'} {text}", file=self.stream, flush=True)

    def tick(self, tick: BakeTick) -> None:
        print(
            f"    bake {tick.elapsed:5.1f}/{tick.bake:g} s  {_tick_text(tick)}", file=self.stream, flush=True
        )


def _tick_text(tick: BakeTick) -> str:
    acts = tick.metrics.get("activations")
    shown = [f"{acts:.0f} requests" if acts is not None else ""]
    shown += [r.describe() for r in tick.readings]
    return "; ".join(s for s in shown if s)


class RichProgress(Progress):
    """The same lines, coloured, on a terminal (``rich`` imported here, not at start-up)."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        from rich.console import Console

        self.console: Any = Console(file=stream or sys.stdout, highlight=False)

    def step(self, text: str) -> None:
        self.console.print(f"  [dim]…[/dim] {_rich_escape(text)}")

    def done(self, text: str, ok: bool = True) -> None:
        mark = "[green]✓[/green]" if ok else "[bold red]✗[/bold red]"
        self.console.print(f"  {mark} {_rich_escape(text)}")

    def tick(self, tick: BakeTick) -> None:
        bad = any(not r.ok for r in tick.readings)
        colour = "red" if bad else "cyan"
        head = f"[{colour}]bake {tick.elapsed:5.1f}/{tick.bake:g} s[/{colour}]"
        self.console.print(f"    {head}  {_rich_escape(_tick_text(tick))}")


def _rich_escape(text: str) -> str:
    from rich.markup import escape

    return str(escape(text))


def progress_for(stream: IO[str] | None = None) -> Progress:
    """Rich on a terminal, plain lines otherwise."""
    target = stream or sys.stdout
    return RichProgress(target) if target.isatty() else TextProgress(target)
