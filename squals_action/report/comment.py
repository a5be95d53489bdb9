"""The sticky PR comment and the job summary: one status table, rendered from a :class:`Report`.

The comment carries a hidden marker so every later run finds and edits it instead of posting a new one, and a
hidden copy of the report so a promote or rollback run keeps the gates table of the preview that built the
island. That copy is read like any input: only from the comment squals itself wrote (the client checks the
author), only for the commit this run is about, and only when this run did work (a refusal shows nothing of
earlier runs), checked by :meth:`Report.from_json`. Bodies over GitHub's limit are cut with a pointer to the
job summary, which has room for everything.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass, replace

from squals_action.report import markdown as md
from squals_action.report.model import Report, Status, Step

MARKER = "<!-- squals:comment -->"
_DATA = re.compile(r"<!-- squals:data ([A-Za-z0-9+/=]{0,200000}) -->")

ICONS: dict[Status, str] = {
    "success": "✅ passed",
    "failure": "❌ failed",
    "skipped": "⏭️ skipped",
    "running": "⏳ running",
    "refused": "🚫 refused",
    "locked": "🔒 waiting for lock",
    "neutral": "· neutral",
}
_DETAIL_TAIL = 4000


@dataclass(frozen=True)
class RunInfo:
    """Where this run lives: its URL (for links), the commit it ran on and the event that started it."""

    run_url: str | None = None
    sha: str | None = None
    event: str | None = None
    actor: str | None = None


def run_url_from_env(env: dict[str, str] | None = None) -> str | None:
    """``$GITHUB_SERVER_URL/$GITHUB_REPOSITORY/actions/runs/$GITHUB_RUN_ID`` (with the attempt when > 1)."""
    import os

    e = env if env is not None else dict(os.environ)
    server, repo, run = e.get("GITHUB_SERVER_URL"), e.get("GITHUB_REPOSITORY"), e.get("GITHUB_RUN_ID")
    if not (server and repo and run):
        return None
    url = f"{server.rstrip('/')}/{repo}/actions/runs/{run}"
    attempt = e.get("GITHUB_RUN_ATTEMPT", "1")
    return f"{url}/attempts/{attempt}" if attempt not in ("", "1") else url


def render(report: Report, run: RunInfo, *, heading: str = "### Squals") -> str:
    """The status table and collapsed details; shared by the comment and the job summary."""
    icon = ICONS.get(report.status, report.status)
    lines = [f"{heading} · {icon}", "", f"**{md.escape(report.headline)}**"]
    if report.lock_holder:
        holder = md.escape(report.lock_holder)
        lines += ["", f"🔒 The environment is locked by {holder}; this run changed nothing."]
    lines.append("")
    rows: list[list[str]] = []
    if report.validation:
        rows.append(_row("Validation", report.validation))
    for gate in report.gates:
        rows.append(
            _row(
                f"Gate {md.escape(gate.kind)} · {md.escape(gate.name)}"
                if gate.kind
                else f"Gate {md.escape(gate.name)}",
                gate,
            )
        )
    if report.environment:
        where = md.url_link(report.url) if report.url else "—"
        rows.append([f"Environment {md.code(report.environment)}", where, ""])
    for test in report.exit_tests:
        label = {"hook": "Hook", "inflight-test": "In-flight test", "load-test": "Load test"}.get(
            test.kind, "Exit test"
        )
        rows.append(_row(f"{label} {md.escape(test.name)}", test))
    if report.rollout:
        rows.append(["Rollout", md.escape(report.rollout), ""])
    if report.experiment:
        rows.append(["Experiment", md.escape(report.experiment), ""])
    if rows:
        lines += [md.table(["Step", "Status", "Duration"], rows, align="llr"), ""]
    for note in report.notes:
        lines.append(f"- {md.escape(note)}")
    if report.notes:
        lines.append("")
    for title, section in report.sections:
        lines += [md.details(md.escape(title), section), ""]
    for step in (report.validation, *report.gates, *report.exit_tests):
        if step is not None and step.detail and step.status in ("failure", "refused"):
            block = md.code_block(step.detail, max_len=_DETAIL_TAIL)
            lines += [md.details(f"{md.escape(step.name)}: output", block), ""]
    footer = []
    if run.run_url:
        footer.append(md.link("workflow run", run.run_url))
    if run.sha:
        footer.append(f"commit {md.code(run.sha[:12])}")
    if run.event:
        footer.append(f"event {md.code(run.event)}")
    if run.actor:
        footer.append(f"by {md.escape(run.actor)}")
    if footer:
        lines.append("<sub>" + " · ".join(footer) + "</sub>")
    return "\n".join(lines).rstrip() + "\n"


def _row(label: str, step: Step) -> list[str]:
    status = ICONS.get(step.status, step.status)
    if step.url:  # a check of gates.checks: its conclusion, linked to its page
        status = f"{status} {md.link(step.detail.splitlines()[0] if step.detail else 'details', step.url)}"
    return [label, status, md.duration(step.duration)]


def previous_report(body: str | None, sha: str | None) -> Report | None:
    """The report hidden in an earlier sticky comment about commit ``sha``, or None when there is none, it
    is about another commit, or it does not pass :meth:`Report.from_json`'s checks."""
    if not body or not sha:
        return None
    match = _DATA.search(body)
    if match is None:
        return None
    try:
        data = json.loads(base64.b64decode(match.group(1), validate=True))
    except (binascii.Error, ValueError, RecursionError):
        return None
    if not isinstance(data, dict) or data.pop("sha", None) != sha:
        return None
    return Report.from_json(data)


def compose_comment(
    report: Report, run: RunInfo, previous_body: str | None = None, limit: int = md.GITHUB_COMMENT_LIMIT
) -> str:
    """The sticky comment's body: marker, table merged over the last run's, hidden data; at most ``limit``."""
    acted = report.status not in ("refused", "locked")
    merged = report.over(previous_report(previous_body, run.sha)) if acted else report
    tail = _data_comment(merged, run.sha)
    if len(tail) > limit // 4:  # never let the hint crowd out the visible table: keep it without logs
        tail = _data_comment(_without_details(merged), run.sha)
    if len(tail) > limit // 4:
        tail = "\n"
    head = MARKER + "\n"
    pointer = (
        "✂️ This comment was cut to fit GitHub's size limit; the full report is in the "
        + (md.link("job summary", run.run_url) if run.run_url else "job summary")
        + "."
    )
    body = md.truncate(render(merged, run), limit=limit - len(head) - len(tail), pointer=pointer)
    return head + body + tail


def _data_comment(report: Report, sha: str | None) -> str:
    payload = json.dumps({**report.to_json(), "sha": sha}, separators=(",", ":"), sort_keys=True)
    data = base64.b64encode(payload.encode("utf-8")).decode("ascii")
    return f"\n<!-- squals:data {data} -->\n"


def _without_details(report: Report) -> Report:
    def bare(steps: tuple[Step, ...]) -> tuple[Step, ...]:
        return tuple(replace(s, detail="") for s in steps)

    validation = replace(report.validation, detail="") if report.validation else None
    gates, tests = bare(report.gates), bare(report.exit_tests)
    return replace(report, validation=validation, gates=gates, exit_tests=tests)


def compose_summary(report: Report, run: RunInfo) -> str:
    """The job summary: the same table as the comment, with no marker and no hidden data."""
    return render(report, run, heading="## Squals")
