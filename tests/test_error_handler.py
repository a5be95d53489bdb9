"""The exit place: an unexpected exception is one line plus a crash log; under GitHub Actions the
traceback is also folded into the job log and the log lands in RUNNER_TEMP. Real subprocesses."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from squals_action import error_handler
from squals_action.error_handler import redact_argv

#: Runs the real guard around a body that crashes with a message that tries to forge a workflow command.
CRASH = (
    "import sys\n"
    "from squals_action.error_handler import run_guarded\n"
    "def body() -> int:\n"
    "    raise RuntimeError('boom\\n::error::forged')\n"
    "sys.exit(run_guarded(body, 'squals'))\n"
)


def crash(tmp_path: Path, extra_env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "RUNNER_"))}
    env.update({"TMPDIR": str(tmp_path / "tmp"), **extra_env})
    (tmp_path / "tmp").mkdir(exist_ok=True)
    return subprocess.run(
        [sys.executable, "-c", CRASH, *argv], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def log_of(stderr: str) -> Path:
    return Path(stderr.strip().splitlines()[-1].rsplit("traceback written to ", 1)[1].rstrip(")"))


def test_outside_actions_a_crash_is_one_line_and_a_temp_log(tmp_path: Path) -> None:
    done = crash(
        tmp_path, {}, "validate", "--token", "ghp_secret", "--api-key=k1", "https://u:pw@example.com/r"
    )
    assert done.returncode == 70
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert lines == [lines[0]]
    assert lines[0].startswith(
        "squals: internal error: RuntimeError: boom ::error::forged (traceback written to "
    )
    log = log_of(done.stderr)
    assert log.parent == tmp_path / "tmp"
    text = log.read_text()
    assert "Traceback (most recent call last)" in text and "RuntimeError: boom" in text
    assert f"python: {sys.version.split()[0]}" in text
    assert "squals (squals-action) 0.1.0" in text
    assert "pyyaml: " in text.lower() and "requests: " in text and "git: git version" in text
    assert "validate --token *** --api-key=*** https://***@example.com/r" in text
    assert "ghp_secret" not in text and "k1" not in text and "pw@" not in text


def test_under_actions_the_traceback_is_folded_and_the_log_is_in_runner_temp(tmp_path: Path) -> None:
    runner_temp = tmp_path / "runner-temp"
    runner_temp.mkdir()
    done = crash(tmp_path, {"GITHUB_ACTIONS": "true", "RUNNER_TEMP": str(runner_temp)})
    assert done.returncode == 70
    lines = done.stderr.strip().splitlines()
    assert lines[0] == "::group::squals: internal error traceback"
    assert lines[1].startswith("::stop-commands::squals-")
    token = lines[1].removeprefix("::stop-commands::")
    assert lines[2] == "Traceback (most recent call last):"
    assert "::error::forged" in lines  # quoted inside the fold while commands are stopped
    assert lines.index("::error::forged") < lines.index(f"::{token}::") == len(lines) - 3
    assert lines[-2] == "::endgroup::"
    assert lines[-1].startswith(
        "squals: internal error: RuntimeError: boom ::error::forged (traceback written to "
    )
    log = log_of(done.stderr)
    assert log.parent == runner_temp and log.name.startswith("squals-crash-")
    assert "RuntimeError: boom" in log.read_text()


def test_under_actions_without_a_usable_runner_temp_the_log_goes_to_home(tmp_path: Path) -> None:
    home = tmp_path / "github-home"
    home.mkdir()
    done = crash(
        tmp_path, {"GITHUB_ACTIONS": "true", "RUNNER_TEMP": str(tmp_path / "host-only"), "HOME": str(home)}
    )
    assert done.returncode == 70
    assert log_of(done.stderr).parent == home


def test_usage_errors_stay_one_line_without_a_fold() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "RUNNER_"))}
    env["GITHUB_ACTIONS"] = "true"
    done = subprocess.run(
        [sys.executable, "-m", "squals_action.cli", "validate", "--nope"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1
    assert "::group::" not in done.stderr


def test_redact_argv_keeps_ordinary_arguments() -> None:
    assert redact_argv(["squals", "state", "show", "--remote", "origin", "--json"]) == [
        "squals",
        "state",
        "show",
        "--remote",
        "origin",
        "--json",
    ]
    assert redact_argv(["x", "--github-token", "t", "--secret=s"]) == [
        "x",
        "--github-token",
        "***",
        "--secret=***",
    ]


def test_a_log_that_cannot_be_written_still_ends_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    monkeypatch.setattr(error_handler, "_crash_log_path", lambda *_: tmp_path / "gone" / "x.log")

    def body() -> int:
        raise ValueError("bad")

    assert error_handler.run_guarded(body, "squals") == 70
    assert capsys.readouterr().err.splitlines() == [
        "squals: internal error: ValueError: bad (crash log not written: No such file or directory)"
    ]
