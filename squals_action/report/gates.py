"""Gate results as JSON, markdown (PR comment / job summary), plain text, and GitHub Actions log commands.

Gate names, summaries, findings and log tails come from user commands and advisories: they are escaped with
:mod:`squals_action.report.markdown` in markdown and with :mod:`squals_action.report.workflow_commands` in
workflow commands; a log tail is printed between ``stop-commands`` markers so it cannot forge commands.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TextIO

from squals_action.gates.checks import NEEDS_GITHUB
from squals_action.gates.interface import Finding, GateResult
from squals_action.process import read_log_tail
from squals_action.report import workflow_commands as wc
from squals_action.report.markdown import code, code_block, details, duration, escape, table
from squals_action.report.model import Problem, Status, Step

STATUS_ICONS = {"pass": "✅", "fail": "❌", "skip": "⏭️", "error": "⚠️", "timeout": "⏱️"}
LOG_TAIL_LINES = 40
MAX_FINDINGS_SHOWN = 30
#: A gate's status as a report step's (a check run's conclusion)
_STEP_STATUS: dict[str, Status] = {
    "pass": "success",
    "skip": "skipped",
    "fail": "failure",
    "error": "failure",
    "timeout": "failure",
}


def overall(results: Sequence[GateResult]) -> str:
    """``pass`` when every gate passed or was skipped, else ``fail``."""
    return "pass" if all(r.ok for r in results) else "fail"


def to_json(results: Sequence[GateResult]) -> dict[str, object]:
    return {"status": overall(results), "gates": [r.to_json() for r in results]}


def to_json_text(results: Sequence[GateResult]) -> str:
    return json.dumps(to_json(results), indent=2, sort_keys=False)


def to_text(results: Sequence[GateResult]) -> str:
    """A terminal summary: one line per gate, then blocking findings with their file:line."""
    width = max((len(r.name) for r in results), default=4)
    lines = [
        f"{r.stage:<8} {r.name:<{width}}  {r.status:<7} {duration(r.duration):>9}  {r.summary}"
        for r in results
    ]
    for r in results:
        for f in r.findings:
            if f.blocking:
                where = f"{f.file}:{f.line}: " if f.file and f.line else (f"{f.file}: " if f.file else "")
                lines.append(f"  {r.name}: {where}{f.message}")
    unchecked = sum(1 for r in results if r.summary == NEEDS_GITHUB)
    note = f" ({unchecked} not checked: needs GitHub)" if unchecked else ""
    lines.append(f"gates: {overall(results)}{note}")
    return "\n".join(lines)


def _finding_line(f: Finding) -> str:
    where = code(f"{f.file}:{f.line}" if f.line else f.file) + " " if f.file else ""
    flag = "**blocking** " if f.blocking else ""
    return f"- {flag}{where}{escape(f.message, max_len=400)}"


def to_markdown(results: Sequence[GateResult], *, title: str = "Gates", with_logs: bool = True) -> str:
    """A table (gate, stage, status, duration, summary) and, per gate with something to show, a collapsed
    ``<details>`` holding its findings and the tail of its log."""
    icon = "✅" if overall(results) == "pass" else "❌"
    rows = [
        (
            escape(r.name, max_len=60),
            r.stage,
            f"{STATUS_ICONS.get(r.status, '')} {r.status}",
            duration(r.duration),
            escape(r.summary, max_len=200),
        )
        for r in results
    ]
    parts = [
        f"### {icon} {escape(title)}",
        "",
        table(["gate", "stage", "status", "duration", "summary"], rows),
    ]
    for r in results:
        body: list[str] = []
        shown = sorted(r.findings, key=lambda f: not f.blocking)[:MAX_FINDINGS_SHOWN]
        body.extend(_finding_line(f) for f in shown)
        if len(r.findings) > len(shown):
            body.append(f"- … and {len(r.findings) - len(shown)} more (see the JSON report)")
        if with_logs and r.log_path is not None and r.status not in ("pass", "skip"):
            tail = read_log_tail(r.log_path, max_lines=LOG_TAIL_LINES)
            if tail:
                body.append("")
                body.append(f"Last {LOG_TAIL_LINES} lines of the log:")
                body.append("")
                body.append(code_block(tail, max_len=6000))
        if body:
            summary = f"{STATUS_ICONS.get(r.status, '')} {escape(r.name, max_len=60)}: {r.status}"
            parts.extend(["", details(summary, "\n".join(body))])
    return "\n".join(parts) + "\n"


def emit_github(results: Sequence[GateResult], stream: TextIO | None = None) -> None:
    """Under Actions: a folded ``::group::`` per gate with its log tail, and an annotation per finding
    that points at a file (errors for blocking findings, warnings otherwise)."""
    for r in results:
        with wc.grouped(f"{r.stage}: {r.name} — {r.status} ({r.summary[:120]})", stream=stream):
            if r.log_path is not None:
                tail = read_log_tail(r.log_path, max_lines=LOG_TAIL_LINES * 5, max_bytes=64 * 1024)
                if tail:
                    with wc.stop_commands(stream=stream):
                        wc.emit(tail, stream=stream)
        for f in r.findings:
            if not f.file:
                continue
            build = wc.error if f.blocking else wc.warning
            wc.emit(
                build(f.message, file=f.file, line=f.line, title=f"squals {r.name}: {f.kind}"), stream=stream
            )
        if not r.ok and not any(f.file and f.blocking for f in r.findings):
            wc.emit(
                wc.error(f"{r.name}: {r.summary}", title=f"squals gate {r.name} {r.status}"), stream=stream
            )


def gate_steps(results: Sequence[GateResult]) -> tuple[tuple[Step, ...], tuple[Problem, ...]]:
    """The gates' results as rows of the action's report (a failed gate's row ends with its log's tail, a
    check's row links to it) and their findings as problems (annotations)."""
    steps = []
    problems: list[Problem] = []
    for r in results:
        detail = r.summary
        if not r.ok and r.log_path is not None:
            detail = f"{r.summary}\n{read_log_tail(r.log_path, max_bytes=4000, max_lines=None)}"
        steps.append(
            Step(r.name, _STEP_STATUS.get(r.status, "failure"), r.duration, detail, kind=r.stage, url=r.url)
        )
        problems.extend(
            Problem(
                f.message,
                file=f.file,
                line=f.line,
                level="failure" if f.blocking else "warning",
                title=f"gate {r.name}",
            )
            for f in r.findings
        )
    return tuple(steps), tuple(problems)
