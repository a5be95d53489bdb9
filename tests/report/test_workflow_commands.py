"""The workflow-command helper escapes exactly as the runner parses, and file commands survive any value."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from squals_action.report import workflow_commands as wc


def test_escape_data_and_property() -> None:
    assert wc.escape_data("50%\r\nnext") == "50%25%0D%0Anext"
    assert wc.escape_property("a:b,c%\n") == "a%3Ab%2Cc%25%0A"


def test_error_annotation_with_properties() -> None:
    line = wc.error("bad: value,\nmore", file="dir/a,b.yml", line=3, col=7, title="t:1")
    assert line == "::error title=t%3A1,file=dir/a%2Cb.yml,line=3,col=7::bad: value,%0Amore"


def test_annotation_without_properties_and_levels() -> None:
    assert wc.warning("w") == "::warning::w"
    assert wc.notice("n", line=1) == "::notice line=1::n"


def test_group_mask_and_emit() -> None:
    out = io.StringIO()
    with wc.grouped("Gate: unit", stream=out):
        wc.emit(*wc.add_mask("s3cr3t\nline2\n"), stream=out)
    assert out.getvalue().splitlines() == [
        "::group::Gate: unit",
        "::add-mask::s3cr3t",
        "::add-mask::line2",
        "::endgroup::",
    ]


def test_stop_commands_token_round_trip() -> None:
    out = io.StringIO()
    with wc.stop_commands(stream=out):
        out.write("::error::forged\n")
    lines = out.getvalue().splitlines()
    token = lines[0].removeprefix("::stop-commands::")
    assert len(token) > 20 and lines[-1] == f"::{token}::"


def _parse_output_file(text: str) -> dict[str, str]:
    """Parse GITHUB_OUTPUT the way the runner does (heredoc form only)."""
    values: dict[str, str] = {}
    lines = text.split("\n")
    i = 0
    while i < len(lines) and lines[i]:
        name, delimiter = lines[i].split("<<", 1)
        body: list[str] = []
        i += 1
        while lines[i] != delimiter:
            body.append(lines[i])
            i += 1
        values[name] = "\n".join(body)
        i += 1
    return values


def test_set_output_multiline_and_hostile(tmp_path: Path) -> None:
    target = tmp_path / "out"
    hostile = "line1\nghadelimiter_x\nstatus<<EOF\nok\nEOF"
    assert wc.set_output("status", "ok", path=target)
    assert wc.set_outputs({"summary": hostile, "empty": ""}, path=target)
    assert _parse_output_file(target.read_text()) == {"status": "ok", "summary": hostile, "empty": ""}


def test_set_output_outside_actions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GITHUB_OUTPUT", raising=False)
    assert wc.set_output("status", "ok") is False


@pytest.mark.parametrize("name", ["", "a\nb", "a=b", " a"])
def test_bad_output_names(name: str, tmp_path: Path) -> None:
    with pytest.raises(wc.WorkflowCommandError):
        wc.set_output(name, "x", path=tmp_path / "o")


def test_step_summary_appends_and_caps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(target))
    assert wc.append_step_summary("# one")
    assert wc.append_step_summary("two\n")
    assert target.read_text() == "# one\ntwo\n"
    assert wc.append_step_summary("é" * wc.STEP_SUMMARY_LIMIT)
    data = target.read_bytes()
    assert len(data) <= wc.STEP_SUMMARY_LIMIT
    assert data.decode("utf-8").endswith("1 MiB)_\n")


def test_in_github_actions() -> None:
    assert wc.in_github_actions({"GITHUB_ACTIONS": "true"})
    assert not wc.in_github_actions({})
