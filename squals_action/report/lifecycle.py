"""What a lifecycle command shows: progress lines, the terminal view of its outcome, and the PR comment.

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
from squals_action.lifecycle.load_tests import LoadTestResult
from squals_action.lifecycle.machine import Check, Env, Event, Status
from squals_action.report import markdown as md
from squals_action.report.load_tests import markdown as load_markdown
from squals_action.report.load_tests import text_lines as load_lines
from squals_action.report.terminal import cell, console, unbroken

_ICON = {True: "✅", False: "❌"}
# A bake's ``visitors`` is a difference of distinct-unit counts: the units BLUE saw for the first time during
# the bake. After a rollback BLUE's returning units are not new, so "visitors 0" next to 31 requests would
# read as no visitors at all.
_BAKE_LABEL = {"visitors": "new visitors"}
#: What an environment is, in words (the terminal) and with its mark (the PR comment).
_ROLE = {
    Status.PROD: ("🟢", "prod"),
    Status.POSTPROD: ("⚪", "postprod"),
    Status.BLUE: ("🔵", "BLUE (baking)"),
    Status.BAKED: ("🔵", "BLUE (baked)"),
    Status.READY: ("🏝️", "island, ready"),
    Status.FAILED: ("🔴", "island, failed"),
    Status.RETIRED: ("", "retired"),
}
_SHARED = (Status.PROD, Status.POSTPROD, Status.BLUE, Status.BAKED)
#: Characters of a failed command's last output the PR comment keeps (its end).
TAIL = 2000
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


def _live(fleet: Sequence[Env]) -> list[Env]:
    """The environments that still run, prod and its company first."""
    return [env for env in sorted(fleet, key=_sort_key) if env.status is not Status.RETIRED]


def _role(env: Env, marked: bool) -> str:
    mark, words = _ROLE.get(env.status, ("", env.status.value))
    return f"{mark} {words}" if marked and mark else words


def _share(env: Env) -> str:
    return f"{env.share:g} %" if env.status in _SHARED else ""


def environment_rows(fleet: Sequence[Env], public_url: str | None) -> list[list[str]]:
    rows = []
    for env in _live(fleet):
        url = md.link(env.url, env.url) if env.url else ""
        if env.status is Status.PROD and public_url:
            url = f"{md.link(public_url, public_url)} (via the Dealer); direct {url}"
        commit = md.code((env.commit or "")[:12]) if env.commit else ""
        rows.append([md.code(env.name), _role(env, marked=True), commit, _share(env), url])
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
            f"{_BAKE_LABEL.get(k, k)} {v:.3g}"
            for k, v in outcome.metrics.items()
            if v is not None and not k.startswith("p")
        )
        parts += [md.table(["", "KPI", "during the bake"], kpi_rows), ""]
        if figures:
            parts += [f"BLUE's traffic during the bake: {md.escape(figures)}", ""]
    if outcome.load_tests is not None:
        parts += [load_markdown(outcome.load_tests, heading_level + 1), ""]
    drills = [c for c in outcome.checks if c.kind == "chaos"]
    if drills:
        drill_rows = [[_icon(c), md.code(c.name), md.escape(c.detail, max_len=400)] for c in drills]
        parts += [md.table(["", "chaos test", "outcome"], drill_rows), ""]
    checks = check_rows(outcome.checks)
    if checks:
        failed = sum(1 for c in outcome.checks if not c.ok and c.kind not in ("kpi", "chaos"))
        body = md.table(["", "kind", "stage", "name", "time", "detail"], checks)
        tails = [_output_markdown(c) for c in outcome.checks if c.output and not c.ok]
        body = "\n\n".join([body, *tails])
        parts += [md.details(_checks_summary(outcome.checks), body, open_=failed > 0), ""]
    return "\n".join(parts).rstrip() + "\n"


def _output_markdown(check: Check) -> str:
    """A failed command's last lines, kept line by line in a fenced block."""
    block = md.code_block(check.output, max_len=TAIL)
    return f"Last output of {md.escape(check.kind)} {md.code(check.name)}:\n\n{block}"


def _checks_summary(checks: Sequence[Check]) -> str:
    ran = [c for c in checks if c.kind not in ("kpi", "chaos")]
    failed = sum(1 for c in ran if not c.ok)
    return f"Hooks and tests: {len(ran) - failed} passed" + (f", {failed} failed" if failed else "")


def print_text(outcome: Outcome, out: IO[str], shown: Sequence[str] = ()) -> None:
    """The terminal view of an outcome: where users go, the environments, the checks and failed output.

    ``shown``: the lines the progress view already printed. The outcome's message is printed only if it is not
    among them, and a failed check's detail only if no shown line holds it: each failure is read once.
    """
    from rich.table import Table
    from rich.text import Text

    view = console(out)
    title = _TITLE.get(outcome.operation, outcome.operation) + (f" of {outcome.env}" if outcome.env else "")
    if outcome.message not in shown:
        mark = Text("✓ " if outcome.ok else "✗ ", style="green" if outcome.ok else "bold red")
        view.print(Text.assemble(mark, cell(f"{title}: {outcome.message}")))
    if outcome.public_url:
        view.print(cell(f"Public URL: {outcome.public_url} (the Dealer)"))
    live = _live(list(outcome.fleet.values()))
    if live:
        table = Table(title=cell(f"{title}: environments"), title_justify="left")
        table.add_column("environment", **unbroken(env.name for env in live))
        table.add_column("role", **unbroken(_role(env, marked=False) for env in live))
        table.add_column("commit")
        table.add_column("traffic", justify="right", no_wrap=True)
        table.add_column("URL", **unbroken(env.url for env in live))
        for env in live:
            table.add_row(
                *(
                    cell(value)
                    for value in (
                        env.name,
                        _role(env, marked=False),
                        (env.commit or "")[:12],
                        _share(env),
                        env.url or "",
                    )
                )
            )
        view.print(table)
    kpis = [c for c in outcome.checks if c.kind == "kpi"]
    drills = [c for c in outcome.checks if c.kind == "chaos"]
    ran = [c for c in outcome.checks if c.kind not in ("kpi", "chaos")]
    groups = (("KPIs during the bake", kpis), ("Chaos tests", drills), (_checks_summary(outcome.checks), ran))
    for heading, rows in groups:
        if not rows:
            continue
        table = Table(title=cell(heading), title_justify="left")
        for column in ("", "kind", "stage", "name", "time", "detail"):
            table.add_column(column)
        for c in rows:
            said = any(c.detail and c.detail in line for line in shown)
            table.add_row(
                _mark(c),
                cell(c.kind),
                cell(c.stage),
                cell(c.name),
                cell(md.duration(c.duration) if c.duration else ""),
                cell("" if said else c.detail),
            )
        view.print(table)
    for c in ran:
        if c.output and not c.ok:
            view.print(cell(f"last output of {c.kind} {c.name}:"))
            view.print(cell("\n".join(f"    {line}" for line in c.output.splitlines())))


def _mark(check: Check) -> Any:
    from rich.text import Text

    if check.no_data:
        return Text("no data", style="yellow")
    return Text("✓", style="green") if check.ok else Text("✗", style="bold red")


class TextProgress(Progress):
    """Plain lines for logs and pipes: one per step, one per bake check; ``shown`` keeps the ended steps."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stdout
        self.shown: list[str] = []

    def step(self, text: str) -> None:
        print(f"  … {text}", file=self.stream, flush=True)

    def done(self, text: str, ok: bool = True) -> None:
        self.shown.append(text)
        print(f"  {'✓' if ok else '✗'} {text}", file=self.stream, flush=True)

    def tick(self, tick: BakeTick) -> None:
        print(
            f"    bake {tick.elapsed:5.1f}/{tick.bake:g} s  {_tick_text(tick)}", file=self.stream, flush=True
        )

    def load_test(self, result: LoadTestResult) -> None:
        for line in load_lines(result):
            print(f"    {line}", file=self.stream, flush=True)


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
        self.shown: list[str] = []

    def step(self, text: str) -> None:
        self.console.print(f"  [dim]…[/dim] {_rich_escape(text)}")

    def done(self, text: str, ok: bool = True) -> None:
        self.shown.append(text)
        mark = "[green]✓[/green]" if ok else "[bold red]✗[/bold red]"
        self.console.print(f"  {mark} {_rich_escape(text)}")

    def tick(self, tick: BakeTick) -> None:
        bad = any(not r.ok for r in tick.readings)
        colour = "red" if bad else "cyan"
        head = f"[{colour}]bake {tick.elapsed:5.1f}/{tick.bake:g} s[/{colour}]"
        self.console.print(f"    {head}  {_rich_escape(_tick_text(tick))}")

    def load_test(self, result: LoadTestResult) -> None:
        for line in load_lines(result):
            self.console.print(f"    {_rich_escape(line)}")


def _rich_escape(text: str) -> str:
    from rich.markup import escape

    return str(escape(text))


def progress_for(stream: IO[str] | None = None) -> Progress:
    """Rich on a terminal, plain lines otherwise."""
    target = stream or sys.stdout
    return RichProgress(target) if target.isatty() else TextProgress(target)
