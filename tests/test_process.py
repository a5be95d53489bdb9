"""The shared command runner with real subprocesses: timeouts kill the whole group, output stays bounded."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from squals_action.process import ProcessError, group_members, read_log_tail, run_command


def _alive(pid: int) -> bool:
    """A pid runs (zombies waiting for PID 1 to reap them do not count)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat[stat.rfind(")") + 2 :].split()[0] not in ("Z", "X")


def test_exit_code_env_cwd_and_log(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    result = run_command(
        'echo "out $GREETING"; pwd; echo err >&2; exit 3',
        log_path=tmp_path / "logs" / "a.log",
        timeout=10,
        env={"GREETING": "hi; rm -rf /"},
        cwd=work,
    )
    assert result.exit_code == 3
    assert not result.timed_out and not result.ok
    assert result.ended_at >= result.started_at
    text = result.log_path.read_text()
    assert "out hi; rm -rf /" in text
    assert str(work) in text
    assert "err" in text
    assert read_log_tail(result.log_path, max_lines=1) == "err"


def test_success_is_ok(tmp_path: Path) -> None:
    result = run_command("true", log_path=tmp_path / "t.log", timeout=10)
    assert result.ok and result.exit_code == 0 and result.output_bytes == 0


def test_timeout_kills_grandchildren(tmp_path: Path) -> None:
    pidfile = tmp_path / "grandchild.pid"
    script = f"sleep 60 & echo $! > {pidfile}; bash -c 'sleep 61' & sleep 60"
    result = run_command(script, log_path=tmp_path / "t.log", timeout=1.0, grace=1.0)
    assert result.timed_out
    assert result.exit_code < 0
    grandchild = int(pidfile.read_text())
    assert not _alive(grandchild)
    assert group_members(grandchild) == []


def test_sigterm_ignored_gets_sigkill(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    script = f"trap '' TERM; (trap '' TERM; sleep 60) & echo $! > {pidfile}; while true; do sleep 0.1; done"
    result = run_command(script, log_path=tmp_path / "t.log", timeout=0.5, grace=0.5)
    assert result.timed_out
    assert not _alive(int(pidfile.read_text()))


def test_leftover_background_process_is_ended_with_the_command(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    script = f"sleep 60 & echo $! > {pidfile}; echo done"
    result = run_command(script, log_path=tmp_path / "t.log", timeout=10)
    assert result.exit_code == 0 and not result.timed_out
    assert not _alive(int(pidfile.read_text()))
    assert "done" in result.log_path.read_text()


def test_cancel_stops_the_command(tmp_path: Path) -> None:
    cancel = threading.Event()
    timer = threading.Timer(0.3, cancel.set)
    timer.start()
    try:
        result = run_command("sleep 30", log_path=tmp_path / "t.log", timeout=30, cancel=cancel, grace=1)
    finally:
        timer.cancel()
    assert result.cancelled and not result.timed_out and not result.ok


def test_missing_workdir_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ProcessError, match="does not exist"):
        run_command("true", log_path=tmp_path / "t.log", timeout=5, cwd=tmp_path / "nope")


@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss is KiB on Linux")
def test_500_mb_of_output_keeps_memory_and_log_bounded(tmp_path: Path) -> None:
    """Runs in a fresh interpreter so its peak RSS belongs to this run alone."""
    probe = f"""
import resource, sys
from squals_action.process import run_command
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
r = run_command("head -c 500M /dev/zero | tr '\\\\0' x", log_path={str(tmp_path / "big.log")!r},
                timeout=120, max_log_bytes=4 * 1024 * 1024, tail_bytes=1024 * 1024)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(r.exit_code, r.output_bytes, r.truncated, before, after)
"""
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True
    )
    code, total, truncated, before_kib, after_kib = out.stdout.split()
    assert code == "0"
    assert int(total) == 500 * 1024 * 1024
    assert truncated == "True"
    # Peak RSS of the runner grows by a few MiB at most (the tail buffer), not with the 500 MB of output.
    growth = int(after_kib) - int(before_kib)
    assert growth < 32 * 1024, f"runner peak RSS grew by {growth} KiB ({before_kib} -> {after_kib})"
    size = (tmp_path / "big.log").stat().st_size
    assert size < 5 * 1024 * 1024
    assert "bytes of output omitted" in (tmp_path / "big.log").read_text()
    assert read_log_tail(tmp_path / "big.log", max_bytes=100).endswith("x")


def test_usable_from_threads(tmp_path: Path) -> None:
    results = {}

    def work(i: int) -> None:
        results[i] = run_command(f"echo {i}; exit {i}", log_path=tmp_path / f"{i}.log", timeout=10)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, res in results.items():
        assert res.exit_code == i
        assert res.log_path.read_text().strip() == str(i)


def test_read_log_tail_of_missing_file_is_empty(tmp_path: Path) -> None:
    assert read_log_tail(tmp_path / "missing.log") == ""
