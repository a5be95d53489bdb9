"""The kill points themselves: named, counted per process, traced, and deadly only where asked."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from squals_action.faults import FAULT_AT_ENV, FAULT_TRACE_ENV

ROOT = Path(__file__).resolve().parents[2]
STEPS = "from squals_action.faults import point; point('a'); point('a'); point('b'); print('done')"


def _run(**env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in (FAULT_AT_ENV, FAULT_TRACE_ENV)}
    return subprocess.run(
        [sys.executable, "-c", STEPS],
        env={**clean, "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_unset_variables_change_nothing() -> None:
    done = _run()
    assert (done.returncode, done.stdout) == (0, "done\n")


def test_every_step_reached_is_traced_and_a_repeated_one_is_numbered(tmp_path: Path) -> None:
    trace = tmp_path / "trace"
    done = _run(**{FAULT_TRACE_ENV: str(trace)})
    assert done.returncode == 0
    assert trace.read_text().split() == ["a", "a#2", "b"]


def test_the_process_kills_itself_at_the_named_step_and_not_before(tmp_path: Path) -> None:
    trace = tmp_path / "trace"
    done = _run(**{FAULT_AT_ENV: "a#2", FAULT_TRACE_ENV: str(trace)})
    assert done.returncode == -signal.SIGKILL and done.stdout == ""
    assert trace.read_text().split() == ["a", "a#2"]
