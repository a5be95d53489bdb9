"""The load test's results table: each Locust figure of the island against its limit, prod's beside it.

Built from a :class:`~squals_action.lifecycle.load_tests.LoadTestResult` alone: one set of rows, rendered as
markdown for the PR comment and as aligned text for the terminal's progress view. A run without data shows
"no data" with the reason, never a pass mark.
"""

from __future__ import annotations

from collections.abc import Callable

from squals_action.lifecycle.load_tests import LIMITS, LimitReading, LoadFigures, LoadTestResult, fmt
from squals_action.report import markdown as md

#: Verdict marks: (markdown, terminal) for kept, broken, not judged (no prod yet), not measured.
_MARKS = {
    "kept": ("✅", "✓"),
    "broken": ("❌", "✗"),
    "unjudged": ("⚪ not judged", "not judged"),
    "none": ("⚪ no data", "no data"),
}


def _figure(figures: LoadFigures | None, key: str, unit: str) -> str:
    if figures is None:
        return ""
    value = figures.requests if key == "requests" else figures.figure(key)
    if value is None:
        return "no data"
    return f"{value:,}" if isinstance(value, int) else f"{fmt(value)}{unit}"


def _verdict(reading: LimitReading | None) -> str:
    if reading is None:
        return ""
    if not reading.judged:
        return "none" if reading.value is None else "unjudged"
    return "kept" if reading.ok else "broken"


def rows(result: LoadTestResult, island: LoadFigures, mark: Callable[[str], str]) -> list[list[str]]:
    """Requests, requests/s, failure ratio, p95, p99: verdict, figure, island, limit (and prod's figure)."""
    readings = {r.key: r for r in result.readings}
    out = []
    for key, label, unit, _ in (("requests", "requests", "", False), *LIMITS):
        reading = readings.get(key)
        verdict = _verdict(reading)
        row = [mark(verdict) if verdict else "", label, _figure(island, key, unit)]
        row.append(reading.bound_text() if reading else "")
        if result.baseline is not None:
            row.append(_figure(result.baseline, key, unit))
        out.append(row)
    return out


def markdown(result: LoadTestResult, heading_level: int = 4) -> str:
    """The results table for the PR comment, or why there are no figures."""
    hashes = "#" * heading_level
    if result.island is None:
        reason = md.escape(result.error or "no figures", max_len=400)
        return f"{hashes} ⚪ Load test: no data\n\n{reason}\n"
    headers = ["", "figure", md.code(result.island.env), "limit"]
    if result.baseline is not None:
        headers.append(f"prod {md.code(result.baseline.env)}")
    cells = [[md.escape(cell) for cell in row] for row in rows(result, result.island, lambda v: _MARKS[v][0])]
    icon = "✅" if result.ok else "❌"
    return f"{hashes} {icon} Load test (Locust)\n\n{md.table(headers, cells, align='llrlr')}\n"


def text_lines(result: LoadTestResult) -> list[str]:
    """The same table as aligned plain text for the terminal (nothing when there are no figures: the
    progress line says why)."""
    if result.island is None:
        return []
    headers = ["", "figure", result.island.env, "limit"]
    if result.baseline is not None:
        headers.append(f"prod {result.baseline.env}")
    table = [headers, *rows(result, result.island, lambda v: _MARKS[v][1])]
    widths = [max(len(row[i]) for row in table) for i in range(len(headers))]
    right = {2, 4}  # the figures

    def line(row: list[str]) -> str:
        pairs = enumerate(zip(row, widths, strict=True))
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in pairs).rstrip()

    return [line(row) for row in table]
