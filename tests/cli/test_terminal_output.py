"""Finding 7: what ``squals deploy`` prints is for people, on a real terminal (a pseudo-terminal) and in a
pipe: no PR-comment markdown unless ``--report markdown``, each failure once, a log tail line by line."""

from __future__ import annotations

import re
import sys

import pytest

from tests.support.lifecycle import Project, git
from tests.support.terminal import ANSI, in_pipes, on_terminal

#: An exit test that prints three lines and fails, and a before_preprod hook that fails.
FAIL = "import sys\nprint('line-a')\nprint('line-b')\nprint('line-c', flush=True)\nsys.exit(3)\n"
#: A command of the squals file running ``fail.py``.
RUN_FAIL = f"run: '{sys.executable} fail.py', timeout: 30s"
MARKDOWN = ("<code>", "&#58;", "###", "<details", "| :-- |")


def commit_failing(project: Project, section: str) -> Project:
    """A commit whose squals file adds ``section`` (a command running ``fail.py``: three lines, exit 3)."""
    (project.path / "fail.py").write_text(FAIL)
    (project.path / "squals.yml").write_text(
        "version: 1\nname: shop\n"
        f"app: {{start: '{sys.executable} app.py', health: /healthz, health_timeout: 30s}}\n" + section + "\n"
    )
    git(project.path, "add", "-A")
    git(project.path, "commit", "-q", "-m", "a failing command")
    return project


@pytest.fixture
def failing(project: Project) -> Project:
    return commit_failing(project, f"exit_tests: [{{name: e2e, {RUN_FAIL}}}]")


def _tail_kept(text: str) -> bool:
    """The three last lines of the failed test, each on its own line, in order."""
    return re.search(r"^\s*line-a\s*\n\s*line-b\s*\n\s*line-c\s*$", text, re.MULTILINE) is not None


def test_a_failed_deploy_on_a_terminal_is_read_once_with_its_tail_line_by_line(failing: Project) -> None:
    code, raw = on_terminal(failing.path, "deploy", "--pr", "2", "--skip-gates")
    text = ANSI.sub("", raw)
    assert code == 1, text
    assert ANSI.search(raw), "a terminal gets colours"
    assert not any(mark in text for mark in MARKDOWN), text
    assert text.count("exit test e2e failed: exit 3") == 1, text
    assert "│ ✗ │ exit-test │ exit" in text  # a table, and the failed row marked
    assert _tail_kept(text), text
    assert "line-a | line-b" not in text and "last output: line-a" not in text
    assert in_pipes(failing.path, "down").returncode == 0  # the failed island was kept for inspection


@pytest.mark.slow
def test_a_failed_deploy_in_a_pipe_is_plain_text_read_once(failing: Project) -> None:
    done = in_pipes(failing.path, "deploy", "--pr", "3", "--skip-gates")
    both = done.stdout + done.stderr
    assert done.returncode == 1, both
    assert not ANSI.search(both) and not any(mark in both for mark in MARKDOWN), both
    assert both.count("exit test e2e failed: exit 3") == 1, both
    assert "  ✗ exit test e2e failed: exit 3; log " in done.stderr  # progress on stderr, results on stdout
    assert _tail_kept(done.stdout), done.stdout

    markdown = in_pipes(failing.path, "deploy", "--pr", "3", "--skip-gates", "--report", "markdown")
    assert markdown.stdout.startswith("### ❌ Deploy of <code>pr-3</code>")
    assert "Last output of exit-test <code>e2e</code>:\n\n```\nline-a\nline-b\nline-c\n```" in markdown.stdout
    assert in_pipes(failing.path, "down").returncode == 0  # the failed island was kept for inspection


def test_a_failing_hook_is_printed_once(project: Project) -> None:
    commit_failing(project, f"hooks: {{before_preprod: [{{name: announce, {RUN_FAIL}}}]}}")
    done = in_pipes(project.path, "deploy", "--pr", "4", "--skip-gates")
    both = done.stdout + done.stderr
    assert done.returncode == 1, both
    assert both.count("before_preprod hook announce failed") == 1, both
    assert "nothing was provisioned" in done.stderr and _tail_kept(done.stdout)
