"""The sticky PR comment: cut to GitHub's limit with a pointer, the previous report a hint only, sections
folded and kept to the run that wrote them."""

from __future__ import annotations

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
    body = compose_comment(huge, RunInfo(run_url="https://github.com/o/r/actions/runs/7"))
    assert len(body) <= GITHUB_COMMENT_LIMIT
    assert body.startswith(MARKER)
    assert "full report is in the [job summary](https://github.com/o/r/actions/runs/7)" in body
    assert previous_report(body) is not None


def test_previous_report_is_a_hint_only() -> None:
    assert previous_report(MARKER + "\n<!-- squals:data bm90IGpzb24= -->") is None
    assert previous_report(None) is None


def test_sections_render_collapsed_and_belong_to_one_run() -> None:
    run_info = RunInfo()
    first = Report(intent="preview", status="success", headline="ok", sections=(("Env <x>", "| a |\n| - |"),))
    body = compose_comment(first, run_info)
    assert "<details>\n<summary>Env &lt;x&gt;</summary>\n\n| a |" in body
    again = compose_comment(Report(intent="promote", status="success", headline="live"), run_info, body)
    assert "Env &lt;x&gt;" not in again
