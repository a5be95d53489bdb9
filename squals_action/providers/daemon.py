"""Detached, supervised processes: start a shell command that outlives us, find it again, stop it safely.

A process is remembered by a :class:`ProcessRecord`: its pid, its start time in clock ticks since boot
(psutil's creation time less the boot time, which, unlike the creation time alone, does not move when the
clock is stepped), the kernel's boot id, and a random token put in its environment. A pid alone is
not an identity: once the process is gone the kernel may give the number to anything else. So a record
whose pid is alive with another start time (or after a reboot) is *stale*: reported, never signalled. Group
members other than the leader are only signalled while the leader is verified, or when their environment
carries the token.

Process facts come from psutil; the boot id (which psutil does not expose, and its boot time moves with
clock steps) is read from ``/proc``, so a record made on another kernel never matches. Linux is where the
local provider and the Action run.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import psutil

from squals_action.process import GONE_STATES, group_members

#: Name of the environment variable that marks every process of one launch.
TOKEN_VAR = "SQUALS_INSTANCE"  # noqa: S105 - a variable name, not a secret

ProcState = Literal["running", "gone", "stale"]

# Runs in a fresh interpreter (single-threaded, so fork is safe): fork, the child becomes a session leader
# with its output on the log, records itself in the pid file (when one is named: written before the app
# exists, so no process of ours ever runs unrecorded, even if squals is killed meanwhile; a child that cannot
# write it never starts the app) and execs bash; the parent prints "pid start_ticks" (read while the child
# is still its own, even if it already exited: same formula as start_ticks()) and exits, so the app is
# re-parented away from us and is never our zombie.
_LAUNCHER = r"""
import json, os, sys
import psutil
log = os.open(sys.argv[2], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
pid = os.fork()
if pid == 0:
    try:
        os.setsid()
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(log)
        if sys.argv[3]:
            me = psutil.Process()
            ticks = round((me.create_time() - psutil.boot_time()) * os.sysconf("SC_CLK_TCK"))
            with open("/proc/sys/kernel/random/boot_id") as f:
                boot = f.read().strip()
            record = {"pid": me.pid, "start_ticks": ticks, "boot_id": boot, "token": os.environ[sys.argv[4]]}
            with open(sys.argv[3] + ".tmp", "w") as f:
                json.dump(record, f)
            os.replace(sys.argv[3] + ".tmp", sys.argv[3])
        os.execvp("bash", ["bash", "-c", sys.argv[1]])
    except (OSError, KeyError) as exc:
        os.write(2, f"squals: cannot start the app: {exc}\n".encode())
    finally:
        os._exit(127)
child = psutil.Process(pid)
print(pid, round((child.create_time() - psutil.boot_time()) * os.sysconf("SC_CLK_TCK")), flush=True)
"""


class DaemonError(Exception):
    """A process could not be started or stopped; callers wrap it in their own :class:`SqualsError`."""


@dataclass(frozen=True)
class ProcessRecord:
    """Enough to recognise a launched process group later, from any process on this machine."""

    pid: int
    start_ticks: int
    boot_id: str
    token: str

    def to_json(self) -> dict[str, Any]:
        return {
            "pid": self.pid,
            "start_ticks": self.start_ticks,
            "boot_id": self.boot_id,
            "token": self.token,
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> ProcessRecord:
        return cls(int(raw["pid"]), int(raw["start_ticks"]), str(raw["boot_id"]), str(raw["token"]))


@dataclass(frozen=True)
class StopOutcome:
    """What :func:`terminate` did: ``stopped`` pids signalled and gone; ``notes`` for anything left alone."""

    stopped: tuple[int, ...] = ()
    stale: bool = False
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Stat:
    state: str
    pgrp: int
    start_ticks: int
    comm: str


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on right now (the kernel's pick for port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def boot_id() -> str:
    """This boot's id: start times are only comparable within one boot."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def start_ticks(process: psutil.Process) -> int:
    """When ``process`` started, in clock ticks since boot (the kernel's own, exact record)."""
    return round((process.create_time() - psutil.boot_time()) * os.sysconf("SC_CLK_TCK"))


def _stat(pid: int) -> _Stat | None:
    """The facts about ``pid`` that identify it; None when there is no such process."""
    try:
        process = psutil.Process(pid)
        with process.oneshot():
            return _Stat(
                state=process.status(),
                pgrp=os.getpgid(pid),
                start_ticks=start_ticks(process),
                comm=process.name(),
            )
    except (psutil.Error, ProcessLookupError, PermissionError):
        return None


def _alive(stat: _Stat | None) -> bool:
    # Zombie and dead processes have released their sockets and will never run again.
    return stat is not None and stat.state not in GONE_STATES


def probe(record: ProcessRecord) -> ProcState:
    """Is the recorded leader still the process we started? ``stale`` when its pid now belongs to another."""
    stat = _stat(record.pid)
    if not _alive(stat):
        return "gone"
    assert stat is not None
    if stat.start_ticks != record.start_ticks or (record.boot_id and record.boot_id != boot_id()):
        return "stale"
    return "running"


def describe(pid: int) -> str:
    """A short ``pid (comm)`` for messages."""
    stat = _stat(pid)
    return f"{pid} ({stat.comm})" if stat else str(pid)


def _has_token(pid: int, token: str) -> bool:
    try:
        return psutil.Process(pid).environ().get(TOKEN_VAR) == token
    except psutil.Error:
        return False


def members(record: ProcessRecord) -> tuple[int, ...]:
    """Live processes of the recorded group that are provably ours (see the module docstring)."""
    leader_ok = probe(record) == "running"
    found: list[int] = []
    for pid in group_members(record.pid):
        if pid == record.pid:
            if leader_ok:
                found.append(pid)
            continue
        stat = _stat(pid)
        if stat is None or stat.start_ticks < record.start_ticks:
            continue
        if leader_ok or _has_token(pid, record.token):
            found.append(pid)
    return tuple(sorted(found))


def new_token() -> str:
    """A fresh launch token (the :data:`TOKEN_VAR` of one launch's processes)."""
    return secrets.token_hex(8)


def spawn(
    command: str,
    *,
    cwd: Path,
    env: Mapping[str, str],
    log_path: Path,
    timeout: float = 15.0,
    token: str | None = None,
    pid_file: Path | None = None,
) -> ProcessRecord:
    """Start ``bash -c command`` detached: new session, stdin ``/dev/null``, stdout and stderr appended to
    ``log_path``. It outlives this process; stop it with :func:`terminate`.

    With ``pid_file``, the started process writes its own :class:`ProcessRecord` there (JSON, atomically)
    before the command runs: found again by :func:`read_pid_file` even if the caller dies before it could
    record the returned value.
    """
    token = token or new_token()
    full_env = {**env, TOKEN_VAR: token}
    log_path.parent.mkdir(parents=True, exist_ok=True)
    if pid_file is not None:
        pid_file.parent.mkdir(parents=True, exist_ok=True)
    try:
        launcher = subprocess.run(
            [sys.executable, "-I", "-c", _LAUNCHER, command, str(log_path), str(pid_file or ""), TOKEN_VAR],
            cwd=cwd,
            env=full_env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DaemonError(f"could not launch {command!r}: {exc}") from exc
    try:
        pid_text, ticks_text = launcher.stdout.decode().split()
        return ProcessRecord(int(pid_text), int(ticks_text), boot_id(), token)
    except ValueError as exc:
        detail = launcher.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        raise DaemonError(f"could not launch {command!r}: {detail[0]}") from exc


def read_pid_file(path: Path) -> ProcessRecord | None:
    """The record a launched process wrote about itself; None when there is none (or it is unreadable)."""
    try:
        return ProcessRecord.from_json(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _signal_all(record: ProcessRecord, pids: tuple[int, ...], sig: signal.Signals) -> None:
    if probe(record) == "running":
        # The leader is ours, so the whole group is: one atomic signal reaches grandchildren too.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(record.pid, sig)
        return
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def _wait_gone(record: ProcessRecord, within: float) -> tuple[int, ...]:
    deadline = time.monotonic() + within
    while True:
        left = members(record)
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.05)


def terminate(record: ProcessRecord, *, grace: float = 5.0) -> StopOutcome:
    """Stop the recorded process group: TERM, up to ``grace`` seconds, then KILL.

    Harmless when everything is already gone. A stale leader pid is reported in ``notes`` and left alone.
    Raises :class:`DaemonError` only if processes survive KILL.
    """
    notes: list[str] = []
    stale = probe(record) == "stale"
    if stale:
        notes.append(
            f"pid {describe(record.pid)} is no longer the process squals started (pid reused); left alone"
        )
    targets = members(record)
    strangers = [p for p in group_members(record.pid) if p not in targets and p != record.pid]
    if strangers and not targets:
        notes.append(
            f"process group {record.pid} has {len(strangers)} process(es) squals cannot prove it started; "
            "left alone"
        )
    if not targets:
        return StopOutcome(stale=stale, notes=tuple(notes))
    _signal_all(record, targets, signal.SIGTERM)
    left = _wait_gone(record, grace)
    if left:
        notes.append(f"{len(left)} process(es) ignored SIGTERM for {grace:g}s; sent SIGKILL")
        _signal_all(record, left, signal.SIGKILL)
        left = _wait_gone(record, 5.0)
        if left:
            raise DaemonError(f"processes {', '.join(describe(p) for p in left)} survived SIGKILL")
    return StopOutcome(stopped=targets, stale=stale, notes=tuple(notes))


def kill_now(record: ProcessRecord) -> tuple[int, ...]:
    """SIGKILL to the recorded group's provable members at once (a chaos test's crash); the pids killed.

    Raises :class:`DaemonError` if any survives for 5 s.
    """
    targets = members(record)
    if targets:
        _signal_all(record, targets, signal.SIGKILL)
        left = _wait_gone(record, 5.0)
        if left:
            raise DaemonError(f"processes {', '.join(describe(p) for p in left)} survived SIGKILL")
    return targets
