"""Cost reports as a terminal table, markdown (the PR comment, the job summary) and JSON.

Every figure is printed with its measure; "no data" where a cost could not be measured, never a zero. The
last line shows that the parts add up to the total.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from squals_action.costs.interface import CostReport
from squals_action.experiments.records import island_names_of
from squals_action.report.markdown import escape, table
from squals_action.state.interface import ExperimentState

NO_DATA = "no data"


def _amount(value: float | None, measure: str) -> str:
    if value is None:
        return NO_DATA
    return f"{value:,.2f} {measure}" if measure == "USD" else f"{value:,.3f}"


def _requests(value: int | None) -> str:
    return NO_DATA if value is None else f"{value:,}"


def environment_rows(report: CostReport) -> list[tuple[str, str, str, str, str]]:
    """(environment, direct, share of shared, total, requests) per environment, natural order."""
    shares = report.allocation.shares
    rows = []
    for env in report.names():
        share = sum(shares.get(env, {}).values())
        rows.append(
            (
                env,
                _amount(report.environments.get(env), report.measure),
                _amount(share, report.measure) if report.shared else "-",
                _amount(report.with_shares(env), report.measure),
                _requests(report.traffic.get(env)),
            )
        )
    return rows


def shared_rows(report: CostReport) -> list[tuple[str, str, str]]:
    """(resource, cost, allocated to) per shared resource."""
    allocation = report.allocation
    rows = []
    for name, cost in sorted(report.shared.items()):
        users = sorted(env for env, parts in allocation.shares.items() if parts.get(name))
        to = ", ".join(users) if users else "unallocated (no traffic data)"
        rows.append((name, _amount(cost, report.measure), to))
    return rows


def balance(report: CostReport) -> str:
    """``total = direct + shared + untagged``, the sums written out."""
    direct = sum(v for v in report.environments.values() if v is not None)
    parts = [f"environments {_amount(direct, report.measure)}"]
    if report.shared:
        parts.append(f"shared {_amount(sum(report.shared.values()), report.measure)}")
    if report.untagged:
        parts.append(f"untagged {_amount(report.untagged, report.measure)}")
    return f"total {_amount(report.total(), report.measure)} = " + " + ".join(parts)


ENV_HEADERS = ("environment", "direct", "share of shared", "total", "requests")


def text(reports: tuple[CostReport, ...]) -> str:
    """Plain aligned columns for a terminal."""
    out: list[str] = []
    for report in reports:
        out.append(f"{report.measure} ({report.period})")
        rows = [ENV_HEADERS, *environment_rows(report)]
        widths = [max(len(row[i]) for row in rows) for i in range(len(ENV_HEADERS))]
        out.extend(
            "  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
        )
        if len(rows) == 1:
            out.append("  (no environments)")
        for name, cost, to in shared_rows(report):
            out.append(f"  shared {name}: {cost}, allocated to {to}")
        out.append("  " + balance(report))
        out.extend(f"  note: {note}" for note in report.notes)
    return "\n".join(out) + "\n"


def markdown(reports: tuple[CostReport, ...]) -> str:
    """A section per measure: the environments table, the shared resources, the balance and the notes."""
    parts: list[str] = []
    for report in reports:
        parts.append(f"#### Costs in {escape(report.measure)} ({escape(report.period)})")
        rows = [[escape(c) for c in row] for row in environment_rows(report)]
        parts.append(table(ENV_HEADERS, rows, align="lrrrr"))
        shared = [[escape(c) for c in row] for row in shared_rows(report)]
        if shared:
            parts.append(table(("shared resource", "cost", "allocated to"), shared, align="lrl"))
        parts.append(escape(balance(report)))
        parts.extend(f"> {escape(note)}" for note in report.notes)
    return "\n\n".join(parts) + "\n"


def as_json(reports: tuple[CostReport, ...]) -> list[dict[str, Any]]:
    """Plain JSON: the figures, the allocation and the total."""
    return [
        {
            "measure": r.measure,
            "period": r.period,
            "environments": dict(r.environments),
            "shared": dict(r.shared),
            "traffic": dict(r.traffic),
            "untagged": r.untagged,
            "allocation": {env: dict(parts) for env, parts in r.allocation.shares.items()},
            "unallocated": dict(r.allocation.unallocated),
            "total": r.total(),
            "notes": list(r.notes),
        }
        for r in reports
    ]


def island_markdown(reports: tuple[CostReport, ...], env: str) -> str:
    """One environment's cost so far, a line per measure (its share of the shared costs included, said so):
    what the PR comment shows for the island."""
    lines = []
    for report in reports:
        direct = report.environments.get(env)
        share = sum(report.allocation.shares.get(env, {}).values())
        figure = _amount(report.with_shares(env), report.measure)
        if share:
            figure += f" (of which {_amount(share, report.measure)} share of shared resources)"
        if direct is None and not share:
            figure = NO_DATA
        lines.append(f"- {escape(report.measure)} ({escape(report.period)}): {escape(figure)}")
    return "\n".join(lines) + "\n"


def direct_costs(reports: tuple[CostReport, ...], environments: Mapping[str, str]) -> dict[str, str]:
    """Each key's environment's own cost (no share of shared resources), every measure in one cell:
    ``{"green": "1.234 CPU-seconds · 0.001 memory-hours"}`` — what an experiment's table shows per variant."""
    cells: dict[str, str] = {}
    for key, env in environments.items():
        parts = [
            f"{_amount(value, report.measure)}{'' if report.measure == 'USD' else ' ' + report.measure}"
            for report in reports
            if (value := report.environments.get(env)) is not None
        ]
        cells[key] = " · ".join(parts) if parts else NO_DATA
    return cells


def variant_cells(
    measured: Mapping[str, tuple[CostReport, ...] | str], docs: Mapping[str, ExperimentState]
) -> dict[str, dict[str, str]]:
    """Per experiment measured (``experiments.costs.running_costs``), each variant's island cost cell:
    "no data: <why>" for every variant of an experiment that could not be measured."""
    cells: dict[str, dict[str, str]] = {}
    for eid, reports in measured.items():
        islands = island_names_of(docs[eid])
        if isinstance(reports, str):
            cells[eid] = {v: f"{NO_DATA}: {reports}" for v in islands}
        else:
            cells[eid] = direct_costs(reports, islands)
    return cells
