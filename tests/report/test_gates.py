"""Reports of gate results: markdown, JSON, text and GitHub workflow commands."""

from __future__ import annotations

import io
from pathlib import Path

from squals_action.gates.interface import Finding, GateResult
from squals_action.report import gates as report


def _results(tmp_path: Path) -> list[GateResult]:
    log = tmp_path / "unit.log"
    log.write_text("collected 3 items\n::error::forged by a test\nFAILED test_cart.py::test_total <b>x</b>\n")
    return [
        GateResult("build", "compile", "pass", 1.5, "exit code 0"),
        GateResult("unit | @team", "test", "fail", 2.0, "exit code 1: FAILED <b>x</b>", log_path=log),
        GateResult(
            "dependencies",
            "security",
            "fail",
            0.3,
            "1 vulnerability",
            findings=(
                Finding(
                    "vulnerability",
                    "lodash 4.17.15: GHSA-p6mc-m468-83gw (CVE-2020-8203) high 7.4",
                    "high",
                    "web/package-lock.json",
                    4601,
                    True,
                ),
                Finding("unpinned", "flask is not pinned", None, "requirements.txt", 24),
            ),
        ),
    ]


def test_markdown_table_details_and_escaping(tmp_path: Path) -> None:
    text = report.to_markdown(_results(tmp_path))
    assert text.startswith("### ❌ Gates\n\n| gate | stage | status | duration | summary |")
    assert "| build | compile | ✅ pass | 1.5 s | exit code 0 |" in text
    assert "unit \\| &#64;team" in text  # no table break, no mention
    assert "<b>" not in text.split("```")[0]  # untrusted HTML escaped outside the code block
    assert "<details>\n<summary>❌ unit \\| &#64;team: fail</summary>" in text
    assert "FAILED test_cart.py::test_total <b>x</b>" in text  # log tail verbatim inside a fence
    assert "**blocking** <code>web/package-lock.json:4601</code> lodash 4.17.15" in text


def test_json_and_text(tmp_path: Path) -> None:
    results = _results(tmp_path)
    data = report.to_json(results)
    assert data["status"] == "fail"
    gates = data["gates"]
    assert isinstance(gates, list) and gates[2]["findings"][0]["line"] == 4601
    text = report.to_text(results)
    assert "dependencies: web/package-lock.json:4601: lodash 4.17.15" in text
    assert text.endswith("gates: fail")


def test_github_groups_annotations_and_stop_commands(tmp_path: Path) -> None:
    stream = io.StringIO()
    report.emit_github(_results(tmp_path), stream=stream)
    out = stream.getvalue()
    assert out.count("::group::") == 3 and out.count("::endgroup::") == 3
    # The log's forged command is printed only while workflow commands are stopped.
    before, after = out.split("::error::forged by a test", 1)
    token = before.rsplit("::stop-commands::", 1)[1].split("\n", 1)[0]
    assert f"::{token}::" in after
    assert (
        "::error title=squals dependencies%3A vulnerability,file=web/package-lock.json,line=4601::"
        "lodash 4.17.15: GHSA-p6mc-m468-83gw (CVE-2020-8203) high 7.4"
    ) in out
    assert "::warning title=squals dependencies%3A unpinned,file=requirements.txt,line=24::" in out
    assert "::error title=squals gate unit | @team fail::unit | @team: exit code 1" in out
