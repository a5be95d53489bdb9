"""The sticky PR comment: cut to GitHub's limit with a pointer, the previous report a hint only, sections
folded and kept to the run that wrote them."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from squals_action.report.comment import MARKER, RunInfo, compose_comment, previous_report
from squals_action.report.markdown import GITHUB_COMMENT_LIMIT
from squals_action.report.model import Report, Step


def test_comment_is_cut_to_githubs_limit_with_a_pointer() -> None:
    huge = Report(
        intent="preview",
        status="failure",
        headline="many gates",
        gates=tuple(Step(f"g{i}", "failure", 1.0, detail="x" * 3000) for i in range(60)),
    )
    body = compose_comment(huge, RunInfo(run_url="https://github.com/o/r/actions/runs/7", sha="abc"))
    assert len(body) <= GITHUB_COMMENT_LIMIT
    assert body.startswith(MARKER)
    assert "full report is in the [job summary](https://github.com/o/r/actions/runs/7)" in body
    assert previous_report(body, "abc") is not None


def test_previous_report_is_a_hint_only() -> None:
    assert previous_report(MARKER + "\n<!-- squals:data bm90IGpzb24= -->", "abc") is None
    assert previous_report(None, "abc") is None


def test_sections_render_collapsed_and_belong_to_one_run() -> None:
    run_info = RunInfo()
    first = Report(intent="preview", status="success", headline="ok", sections=(("Env <x>", "| a |\n| - |"),))
    body = compose_comment(first, run_info)
    assert "<details>\n<summary>Env &lt;x&gt;</summary>\n\n| a |" in body
    again = compose_comment(Report(intent="promote", status="success", headline="live"), run_info, body)
    assert "Env &lt;x&gt;" not in again


SHA = "ec26c3e57ca3a959ca5aad62de7213c562f8c821"
PROMOTED = Report(intent="promote", status="success", headline="live")
GOOD_STEP = {"name": "unit", "status": "success", "duration": 1.5, "detail": "", "kind": "test", "url": None}


def hidden(data: Any) -> str:
    """A comment body carrying ``data`` as its hidden copy, as anyone could write one."""
    text = json.dumps(data).replace("Infinity", "1e400")  # the number as an attacker writes it
    encoded = base64.b64encode(text.encode()).decode()
    return f"{MARKER}\nlooks like squals\n<!-- squals:data {encoded} -->\n"


def report_data(**changes: Any) -> dict[str, Any]:
    data = {"intent": "preview", "status": "success", "headline": "ok", "gates": [GOOD_STEP], "sha": SHA}
    data.update(changes)
    return data


@pytest.mark.parametrize(
    "data",
    [
        report_data(gates=[dict(GOOD_STEP, duration=float("inf"))]),  # 1e400 in the JSON text
        report_data(gates=[dict(GOOD_STEP, duration=10**400)]),
        report_data(gates=[dict(GOOD_STEP, duration=-5)]),
        report_data(gates=[dict(GOOD_STEP, duration=True)]),
        report_data(gates=[dict(GOOD_STEP, name="x" * 100_000)]),
        report_data(gates=[GOOD_STEP] * 1000),
        report_data(gates=[dict(GOOD_STEP, status="passed")]),
        report_data(gates=[dict(GOOD_STEP, script="<img src=x>")]),
        report_data(notes=["n"] * 1000),
        report_data(admin=True),
        report_data(headline=["not", "text"]),
        report_data(sha="0" * 40),  # about another commit
        report_data(sha=None),
        [report_data()],
    ],
)
def test_hidden_data_is_checked_like_any_input(data: Any) -> None:
    body = hidden(data)
    assert previous_report(body, SHA) is None
    merged = compose_comment(PROMOTED, RunInfo(sha=SHA), body)
    assert "| Gate" not in merged


def test_deeply_nested_hidden_data_is_no_crash() -> None:
    body = f"{MARKER}\n<!-- squals:data {base64.b64encode(b'[' * 100_000).decode()} -->"
    assert previous_report(body, SHA) is None


def test_good_hidden_data_of_this_commit_is_merged() -> None:
    body = hidden(report_data())
    merged = compose_comment(PROMOTED, RunInfo(sha=SHA), body)
    assert "| Gate test · unit | ✅ passed | 1.5 s |" in merged


def test_a_refused_run_shows_no_earlier_gate() -> None:
    """A refusal saw no gate: none of an earlier comment's rows (forged or not) appear in it."""
    forged = hidden(report_data(gates=[dict(GOOD_STEP, name="FORGED-security-gate")]))
    refusal = Report(intent="promote", status="refused", headline="promote requested by mallory was refused")
    body = compose_comment(refusal, RunInfo(sha=SHA), forged)
    assert "FORGED" not in body and "| Gate" not in body
    assert "FORGED" not in base64.b64decode(body.split("squals:data ")[1].split(" ")[0]).decode()
