"""The shared markdown helpers: untrusted text shows as text, tables and sections stay intact when cut."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from squals_action.report import markdown as md


def test_escape_defuses_markdown_html_mentions_and_links() -> None:
    out = md.escape("**hi** <img src=x> @octocat [x](https://evil) | `rm` \n next")
    assert "<" not in out and ">" not in out
    assert "@" not in out
    assert "](" not in out.replace("\\](", "").replace("\\]\\(", "")
    assert "\n" not in out
    assert "https:" not in out
    assert "\\*\\*hi\\*\\*" in out
    assert "\\|" in out


def test_list_and_numbering_marks_are_escaped_only_where_they_start_a_line() -> None:
    assert md.escape("pr-1 runs v1.2, +3 !") == "pr-1 runs v1.2, +3 !"
    assert md.escape("- item") == "\\- item"
    assert md.escape("+ item") == "\\+ item"
    assert md.escape("12. item") == "12\\. item"
    assert md.escape("![x](y)").startswith("\\!\\[")
    assert md.escape("see owner/repo#1") == "see owner/repo\\#1"


def test_escape_cuts_long_input() -> None:
    assert md.escape("a" * 100, max_len=10) == "a" * 9 + "…"


def test_code_is_one_line_html_code() -> None:
    assert md.code("feat/`x`|<y>@z") == "<code>feat/&#96;x&#96;&#124;&lt;y&gt;&#64;z</code>"


def test_code_block_fence_longer_than_content() -> None:
    block = md.code_block("a ```` b")
    assert block.startswith("`````\n") and block.endswith("\n`````")


def test_code_block_keeps_tail() -> None:
    block = md.code_block("x" * 50 + "END", max_len=10)
    assert "END" in block and "(43 characters cut)" in block


def test_link_only_http() -> None:
    assert (
        md.link("run", "https://github.com/o/r/actions/runs/1")
        == "[run](https://github.com/o/r/actions/runs/1)"
    )
    assert md.link("x", "javascript:alert(1)") == "x"


def test_table_and_details() -> None:
    t = md.table(["a", "b"], [["1", "x|y\nz"], ["2"]], align="lr")
    assert t.splitlines() == ["| a | b |", "| :-- | --: |", "| 1 | x\\|y<br>z |", "| 2 |   |"]
    d = md.details("Logs", "body")
    assert d == "<details>\n<summary>Logs</summary>\n\nbody\n\n</details>"


def test_truncate_closes_open_blocks_and_points() -> None:
    body = "head\n" + md.details("big", md.code_block("line\n" * 40_000))
    out = md.truncate(body, limit=65_536, pointer="see the job summary")
    assert len(out) <= 65_536
    assert out.endswith("see the job summary")
    assert out.count("</details>") == 1
    assert out.count("```") % 2 == 0


def test_duration() -> None:
    assert md.duration(0.25) == "250 ms"
    assert md.duration(12.34) == "12.3 s"
    assert md.duration(245) == "4m 05s"
    assert md.duration(7380) == "2h 03m"
    assert md.duration(None) == ""


@given(st.text())
def test_escape_never_leaves_raw_html_or_newlines(text: str) -> None:
    out = md.escape(text)
    assert "<" not in out and ">" not in out and "\n" not in out and "@" not in out


@given(st.text(), st.integers(min_value=300, max_value=5000))
def test_truncate_respects_limit(text: str, limit: int) -> None:
    assert len(md.truncate(text * 3, limit=limit, pointer="p")) <= limit
