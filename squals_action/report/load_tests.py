"""The load test's results table: each Locust figure of the island against its limit, prod's beside it.

Built from a :class:`~squals_action.lifecycle.load_tests.LoadTestResult` alone, for the PR comment and the
markdown the CLI prints. A run without data shows "⚪ no data" with the reason, never a pass mark.
"""

from __future__ import annotations

from squals_action.lifecycle.load_tests import LIMITS, LimitReading, LoadFigures, LoadTestResult, fmt
from squals_action.report import markdown as md


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
        return "⚪ no data" if reading.value is None else "⚪ not judged"
    return "✅" if reading.ok else "❌"


def markdown(result: LoadTestResult, heading_level: int = 4) -> str:
    """The results table (requests, requests/s, failure ratio, p95, p99), or why there are no figures."""
    hashes = "#" * heading_level
    if result.island is None:
        reason = md.escape(result.error or "no figures", max_len=400)
        return f"{hashes} ⚪ Load test: no data\n\n{reason}\n"
    icon = "✅" if result.ok else "❌"
    island, baseline = result.island, result.baseline
    headers = ["", "figure", md.code(island.env), "limit"]
    if baseline is not None:
        headers.append(f"prod {md.code(baseline.env)}")
    readings = {r.key: r for r in result.readings}
    rows = []
    for key, label, unit, _ in (("requests", "requests", "", False), *LIMITS):
        reading = readings.get(key)
        row = [
            _verdict(reading),
            md.escape(label),
            _figure(island, key, unit),
            md.escape(reading.bound_text()) if reading else "",
        ]
        if baseline is not None:
            row.append(_figure(baseline, key, unit))
        rows.append(row)
    return f"{hashes} {icon} Load test (Locust)\n\n{md.table(headers, rows, align='llrlr')}\n"
