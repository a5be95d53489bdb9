"""Command words: the quick split for plain commands is shlex's, character for character."""

from __future__ import annotations

import shlex

from hypothesis import example, given
from hypothesis import strategies as st

from squals_action.manifest.paths import script_of, shell_words


def _shlex(run: str) -> list[str] | None:
    try:
        return shlex.split(run, comments=True)
    except ValueError:
        return None


@given(st.text(alphabet=" \t\r\n\x0b\x0c\x85\u00a0ab/=.$~-'\"\\#", max_size=40))
@example("./scripts/x.sh 1")
@example("A=1 ./run.sh 'two words' # note")
@example("echo 'open")
@example("trailing \\")
def test_shell_words_are_shlex_words(run: str) -> None:
    assert shell_words(run) == _shlex(run)


def test_script_of() -> None:
    assert script_of("./scripts/x.sh 1") == "./scripts/x.sh"
    assert script_of("A=1 B=2 scripts/run.sh --fast") == "scripts/run.sh"
    assert script_of("'./my script.sh' arg") == "./my script.sh"
    assert script_of("pytest tests -q") is None
    assert script_of("/usr/bin/env x") is None
    assert script_of("./x.sh 'open") is None
