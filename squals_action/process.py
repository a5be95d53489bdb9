"""Run one user-declared shell command safely: own process group, timeout, output to a log file.

Gates, hooks, exit tests and in-flight tests all run user commands that may hang, spawn grandchildren or
print gigabytes. This module is the one place that handles those cases, so every caller gets the same
guarantees:

* the command runs as ``bash -c COMMAND`` (``sh`` when bash is missing) in a new session, so it leads its
  own process group and every descendant that does not call ``setsid`` itself is in that group;
* on timeout (or cancellation) the whole group gets SIGTERM, then SIGKILL after a grace period;
* when the command exits, processes it left behind in its group are terminated too, so nothing outlives a
  gate or a hook;
* stdout and stderr are streamed into one log file through a fixed-size buffer; past ``max_log_bytes`` the
  middle is dropped and only the head and a bounded tail are kept, so neither memory nor disk grows with
  the output;
* the result is a frozen value; nothing raises because the command failed.

Every call is independent (its own pipe, selector and file), so callers may run many from threads.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import psutil

from squals_action.errors import SqualsError

#: Output kept per log file before the middle is dropped (head + tail), in bytes.
DEFAULT_MAX_LOG_BYTES = 32 * 1024 * 1024
#: How much of the end of the output is always kept when the log is truncated.
DEFAULT_TAIL_BYTES = 1024 * 1024
#: Seconds between SIGTERM and SIGKILL.
DEFAULT_GRACE = 5.0
_CHUNK = 64 * 1024
_POLL = 0.05
#: States of a process that will never run again.
GONE_STATES = frozenset({psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD})


#: Credentials of squals itself, never handed to a command the squals file names (gates, hooks, tests, the
#: app): those commands run the PR's code. AWS keys are squals' own for its ``aws`` provider (boto3 runs in
#: squals' process); a hook that needs them names them in the squals file's ``env_passthrough``. So is the key
#: of Safety's data API, which squals' dependency gate uses.
SECRET_VARIABLES = frozenset(
    {
        "INPUT_GITHUB-TOKEN",
        "GITHUB_TOKEN",
        "GH_TOKEN",
        "ACTIONS_RUNTIME_TOKEN",
        "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_SECURITY_TOKEN",
        "SAFETY_API_KEY",
    }
)


def command_environment(
    env: Mapping[str, str] | None = None,
    *,
    passthrough: Collection[str] = (),
    inherit: bool = True,
    base: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment of a user-declared command: ``base`` (``os.environ``) with ``env`` on top, without
    :data:`SECRET_VARIABLES` except those named in ``passthrough``. The one place that builds it."""
    full = dict(os.environ if base is None else base) if inherit else {}
    full.update(env or {})
    for name in SECRET_VARIABLES.difference(passthrough):
        full.pop(name, None)
    return full


class ProcessError(SqualsError):
    """A command could not be started at all (missing working directory, no shell, unwritable log)."""


@dataclass(frozen=True)
class ProcessResult:
    """What happened to one command.

    ``exit_code`` follows :mod:`subprocess`: negative means killed by that signal. ``started_at`` and
    ``ended_at`` are epoch seconds (``time.time()``) so results from threads can be compared;
    ``duration`` comes from the monotonic clock.
    """

    exit_code: int
    timed_out: bool
    started_at: float
    ended_at: float
    duration: float
    log_path: Path
    cancelled: bool = False
    output_bytes: int = 0
    truncated: bool = False

    @property
    def ok(self) -> bool:
        """The command exited 0 on its own."""
        return self.exit_code == 0 and not self.timed_out and not self.cancelled


def _shell() -> str:
    return shutil.which("bash") or shutil.which("sh") or "/bin/sh"


def run_command(
    command: str,
    *,
    log_path: str | os.PathLike[str],
    timeout: float,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    grace: float = DEFAULT_GRACE,
    max_log_bytes: int | None = DEFAULT_MAX_LOG_BYTES,
    tail_bytes: int = DEFAULT_TAIL_BYTES,
    append: bool = False,
    cancel: threading.Event | None = None,
    inherit_env: bool = True,
    passthrough: Collection[str] = (),
) -> ProcessResult:
    """Run ``command`` through the shell and wait for it, at most ``timeout`` seconds.

    ``env`` is merged onto ``os.environ`` (or used alone with ``inherit_env=False``), without squals' own
    secrets unless named in ``passthrough`` (:func:`command_environment`); untrusted values belong there,
    never in ``command``. Output goes to ``log_path`` (created with its parent directory).
    Setting ``cancel`` stops the command like a timeout but reports ``cancelled``.
    Raises :class:`ProcessError` only when the command cannot be started.
    """
    log = Path(log_path)
    if cwd is not None and not Path(cwd).is_dir():
        raise ProcessError(f"cannot run {command!r}: working directory {os.fspath(cwd)} does not exist")
    full_env = command_environment(env, passthrough=passthrough, inherit=inherit_env)
    try:
        log.parent.mkdir(parents=True, exist_ok=True)
        sink = log.open("ab" if append else "wb")
    except OSError as exc:
        raise ProcessError(f"cannot write log file {log}: {exc.strerror or exc}") from exc
    with sink:
        writer = _BoundedWriter(sink, max_log_bytes, tail_bytes)
        started_at = time.time()
        start = time.monotonic()
        try:
            proc = subprocess.Popen(
                [_shell(), "-c", command],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                env=full_env,
                start_new_session=True,
                close_fds=True,
            )
        except OSError as exc:
            raise ProcessError(f"cannot run {command!r}: {exc.strerror or exc}") from exc
        timed_out, cancelled = _supervise(proc, writer, start + timeout, grace, cancel)
        writer.finish()
    duration = time.monotonic() - start
    return ProcessResult(
        exit_code=proc.returncode if proc.returncode is not None else -signal.SIGKILL,
        timed_out=timed_out,
        started_at=started_at,
        ended_at=started_at + duration,
        duration=duration,
        log_path=log,
        cancelled=cancelled,
        output_bytes=writer.total,
        truncated=writer.omitted > 0,
    )


def _supervise(
    proc: subprocess.Popen[bytes],
    writer: _BoundedWriter,
    deadline: float,
    grace: float,
    cancel: threading.Event | None,
) -> tuple[bool, bool]:
    """Pump output until EOF while enforcing the deadline; returns (timed_out, cancelled)."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    pgid = proc.pid
    timed_out = cancelled = False
    kill_at: float | None = None  # when SIGKILL is due, once SIGTERM was sent
    leader_exited_at: float | None = None
    eof = False
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while True:
            now = time.monotonic()
            if kill_at is None:
                if now >= deadline:
                    timed_out = True
                elif cancel is not None and cancel.is_set():
                    cancelled = True
                if timed_out or cancelled:
                    _signal_group(pgid, signal.SIGTERM)
                    kill_at = now + grace
            elif now >= kill_at:
                _signal_group(pgid, signal.SIGKILL)
                kill_at = float("inf")
            if proc.poll() is not None and leader_exited_at is None:
                leader_exited_at = now
                # Whatever the command left behind in its group ends with it.
                if _group_alive(pgid):
                    _signal_group(pgid, signal.SIGTERM)
                    if kill_at is None:
                        kill_at = now + min(grace, 1.0)
            if eof and leader_exited_at is not None:
                break
            # A descendant that escaped the group may hold the pipe open forever: stop reading then.
            if leader_exited_at is not None and now - leader_exited_at > grace + 1.0:
                break
            if not eof:
                wait = _POLL
                if kill_at is None:
                    wait = max(0.0, min(_POLL, deadline - now))
                for _key, _mask in sel.select(timeout=wait):
                    try:
                        data = os.read(fd, _CHUNK)
                    except BlockingIOError:
                        continue
                    if data:
                        writer.write(data)
                    else:
                        eof = True
                        sel.unregister(fd)
            else:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=_POLL)
    proc.stdout.close()
    if proc.returncode is None:  # only when the pipe closed early and the leader ignores signals
        _signal_group(pgid, signal.SIGKILL)
        proc.wait()
    _reap_group(pgid, grace)
    return timed_out, cancelled


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of process group ``pgid``.

    Zombies are ignored: an orphan's zombie waits for PID 1 to reap it and cannot run any more.
    """
    members: list[int] = []
    for pid in psutil.pids():
        try:
            if os.getpgid(pid) == pgid and psutil.Process(pid).status() not in GONE_STATES:
                members.append(pid)
        except (psutil.Error, ProcessLookupError, PermissionError):
            continue
    return members


def _group_alive(pgid: int) -> bool:
    return bool(group_members(pgid))


def _reap_group(pgid: int, grace: float) -> None:
    """Make sure no process of the group survives: SIGTERM was sent already where needed; SIGKILL the rest."""
    if not _group_alive(pgid):
        return
    _signal_group(pgid, signal.SIGTERM)
    end = time.monotonic() + grace
    while time.monotonic() < end:
        if not _group_alive(pgid):
            return
        time.sleep(_POLL)
    _signal_group(pgid, signal.SIGKILL)
    end = time.monotonic() + 2.0
    while time.monotonic() < end and _group_alive(pgid):
        time.sleep(_POLL)


class _BoundedWriter:
    """Writes the head of the output straight to the file and keeps only a bounded tail in memory."""

    def __init__(self, sink: BinaryIO, max_bytes: int | None, tail_bytes: int) -> None:
        self._sink = sink
        self.total = 0
        self.omitted = 0
        if max_bytes is None:
            self._head_limit: int | None = None
            self._tail_limit = 0
        else:
            self._tail_limit = max(0, min(tail_bytes, max_bytes // 2))
            self._head_limit = max(0, max_bytes - self._tail_limit)
        self._written = 0
        self._tail = bytearray()

    def write(self, data: bytes) -> None:
        self.total += len(data)
        if self._head_limit is None:
            self._sink.write(data)
            return
        room = self._head_limit - self._written
        if room > 0:
            head = data[:room]
            self._sink.write(head)
            self._written += len(head)
            data = data[room:]
        if not data:
            return
        self._tail += data
        if len(self._tail) > 2 * self._tail_limit + _CHUNK:
            drop = len(self._tail) - self._tail_limit
            del self._tail[:drop]
            self.omitted += drop

    def finish(self) -> None:
        if self._tail and len(self._tail) > self._tail_limit:
            drop = len(self._tail) - self._tail_limit
            del self._tail[:drop]
            self.omitted += drop
        if self.omitted:
            self._sink.write(f"\n[squals: {self.omitted} bytes of output omitted]\n".encode())
        self._sink.write(bytes(self._tail))
        self._tail = bytearray()
        self._sink.flush()


def read_log_tail(log_path: str | os.PathLike[str], max_bytes: int = 8192, max_lines: int | None = 50) -> str:
    """The last lines of a log (at most ``max_bytes`` read from its end), decoded leniently for reports."""
    path = Path(log_path)
    try:
        with path.open("rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            start = max(0, size - max_bytes)
            fh.seek(start)
            data = fh.read()
    except OSError:
        return ""
    text = data.decode("utf-8", errors="replace")
    if start > 0 and "\n" in text:
        text = text.split("\n", 1)[1]  # drop the partial first line
    lines = text.splitlines()
    if max_lines is not None:
        lines = lines[-max_lines:]
    return "\n".join(lines)
