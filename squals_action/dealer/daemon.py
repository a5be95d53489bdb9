"""Run the Dealer as a detached process that outlives the CLI command that started it.

``start_dealer`` writes the config into a state directory, launches ``python -m squals_action.dealer``
in its own session (logs to ``dealer.log``), and waits for it to publish its pid and bound ports.
``stop_dealer`` sends SIGTERM to the pid only after checking that the process really is this state
directory's Dealer; a pid file naming a dead or foreign process is reported as stale and its files cleaned,
the process is never signalled. ``connect_dealer`` restarts a running Dealer that speaks an older admin
protocol than this squals (``restart_dealer``: same config, routing, tallies and public port) and refuses a
newer one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import psutil

from squals_action import filelock
from squals_action.dealer.client import ADMIN_PROTOCOL, DealerClient
from squals_action.dealer.config import (
    CONFIG_FILE,
    ENDPOINT_FILE,
    LOG_FILE,
    PID_FILE,
    RECOVERY_BYTES_PER_S,
    ROUTING_FILE,
    WORKERS_ENV,
    atomic_write,
    load_config,
    read_json,
    tally_bytes,
    write_config,
)
from squals_action.dealer.interface import DealerConfig, DealerError, DealerStatus
from squals_action.process import GONE_STATES

MODULE = "squals_action.dealer"
#: Held while a Dealer is started, stopped or restarted on a newer squals, so that two commands never both
#: restart it, a command that finds it stopped meanwhile waits for it to come back, and a stop (``squals
#: down``) or a start racing a restart waits for the restart to end instead of colliding with it.
RESTART_LOCK = "dealer.lock"
#: How long an upgrade's restart waits for the old Dealer to stop, and then for the new one to come up.
_RESTART_TIMEOUT = 15.0
_log = logging.getLogger("squals.dealer")
# Popen objects of Dealers this process started, so that stopping one also reaps it (no zombies in tests).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def _cmdline(pid: int) -> str | None:
    """The command line of a live, non-zombie process, or None when there is no such process."""
    try:
        process = psutil.Process(pid)
        with process.oneshot():
            if process.status() in GONE_STATES:
                return None
            return " ".join(process.cmdline()).strip()
    except psutil.Error:
        return None


def _reap(pid: int) -> None:
    child = _CHILDREN.get(pid)
    if child is not None:
        child.poll()
        return
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _alive(pid: int) -> bool:
    _reap(pid)
    return _cmdline(pid) is not None


def dealer_status(state_dir: Path) -> DealerStatus:
    """Read the state directory's pid file and check, without signalling anything, what it names."""
    state_dir = Path(state_dir).resolve()
    pid_path = state_dir / PID_FILE
    try:
        pid = int(pid_path.read_text().strip())
    except FileNotFoundError:
        return DealerStatus("stopped")
    except (OSError, ValueError) as exc:
        return DealerStatus("stale", detail=f"{pid_path}: unreadable pid file: {exc}")
    _reap(pid)
    cmdline = _cmdline(pid)
    if cmdline is None:
        return DealerStatus("stale", pid=pid, detail=f"{pid_path}: pid {pid} is not running")
    if MODULE not in cmdline or str(state_dir) not in cmdline:
        return DealerStatus(
            "stale", pid=pid, detail=f"{pid_path}: pid {pid} is another process ({cmdline[:120]}), left alone"
        )
    url = admin_url = protocol = None
    detail = ""
    with contextlib.suppress(DealerError, KeyError, TypeError, AttributeError):
        endpoint = read_json(state_dir / ENDPOINT_FILE)
        if endpoint.get("pid") == pid:
            url, admin_url = str(endpoint["url"]), str(endpoint["admin_url"])
            raw = endpoint.get("protocol", 1)  # published since protocol 2
            if isinstance(raw, int) and not isinstance(raw, bool) and raw >= 1:
                protocol = raw
            else:
                detail = f"{state_dir / ENDPOINT_FILE}: expected a protocol number >= 1, got {raw!r}"
    return DealerStatus("running", pid=pid, url=url, admin_url=admin_url, detail=detail, protocol=protocol)


def _clear_pid_files(state_dir: Path) -> None:
    for name in (PID_FILE, ENDPOINT_FILE):
        (state_dir / name).unlink(missing_ok=True)


#: The public port a directory's last Dealer bound, kept when it stops: the next one takes it again if free.
PORT_FILE = "dealer.port"


def _port_free(host: str, port: int) -> bool:
    """Whether ``host:port`` binds now as the server binds it (with address reuse: TIME_WAIT is free)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _remembered_port(state_dir: Path, host: str) -> int:
    """The public port this directory's Dealer last had when it is free again, else 0 (any free port).

    A config asking for any port gets it (:func:`start_dealer`), so the public URL people were given survives
    a ``squals down`` and the next start.
    """
    try:
        port = int((state_dir / PORT_FILE).read_text().strip())
    except (OSError, ValueError):
        return 0
    return port if 0 < port < 65536 and _port_free(host, port) else 0


def start_dealer(config: DealerConfig, state_dir: Path, *, timeout: float = 15.0) -> DealerClient:
    """Start a detached Dealer for ``state_dir`` (tallies there are kept) and return its admin client.

    The given config's upstreams and weights are authoritative: a routing saved by an earlier run is dropped.
    Raises DealerError if a Dealer already runs from this directory or the new one does not come up in time:
    ``timeout`` seconds, plus one per RECOVERY_BYTES_PER_S of tallies it must read back first.
    """
    state_dir = Path(state_dir).resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    with _restart_lock(state_dir):
        status = dealer_status(state_dir)
        if status.state == "running":
            raise DealerError(f"a Dealer already runs from {state_dir} (pid {status.pid}); stop it first")
        if status.state == "stale":
            _clear_pid_files(state_dir)
        (state_dir / ROUTING_FILE).unlink(missing_ok=True)
        return _start(config, state_dir, timeout)


def _start(
    config: DealerConfig, state_dir: Path, timeout: float, env: dict[str, str] | None = None
) -> DealerClient:
    """Launch on the port the directory's Dealer last had when the config asks for any and it is free."""
    remembered = _remembered_port(state_dir, config.host) if config.port == 0 else 0
    if remembered:
        try:
            return _launch(dataclasses.replace(config, port=remembered), state_dir, timeout, env)
        except DealerError:
            if _port_free(config.host, remembered):
                raise  # not the port: the same failure would follow on any
    return _launch(config, state_dir, timeout, env)


def _launch(
    config: DealerConfig, state_dir: Path, timeout: float, env: dict[str, str] | None = None
) -> DealerClient:
    """Write the config, start the daemon (``env``: variables it gets beyond this process's), wait for its
    endpoint and remember its public port."""
    config = dataclasses.replace(config, token=config.token or secrets.token_urlsafe(32))
    config_path = state_dir / CONFIG_FILE
    write_config(config_path, config)
    log_path = state_dir / LOG_FILE
    with open(log_path, "ab") as log:
        child = subprocess.Popen(
            [sys.executable, "-m", MODULE, "--config", str(config_path), "--state", str(state_dir)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            env={**os.environ, **env} if env else None,
        )
    _CHILDREN[child.pid] = child
    timeout += tally_bytes(state_dir) / RECOVERY_BYTES_PER_S
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.poll() is not None:
            _CHILDREN.pop(child.pid, None)
            raise DealerError(f"the Dealer exited with code {child.returncode}: {_last_line(log_path)}")
        with contextlib.suppress(DealerError, KeyError, TypeError):
            endpoint = read_json(state_dir / ENDPOINT_FILE)
            if endpoint.get("pid") == child.pid:
                # a torn write reads as no port: the next Dealer takes any free one
                (state_dir / PORT_FILE).write_text(f"{int(endpoint['port'])}\n")
                return DealerClient(
                    str(endpoint["url"]), str(endpoint["admin_url"]), config.token, pid=child.pid
                )
        time.sleep(0.02)
    child.kill()
    child.wait(timeout=5)
    _CHILDREN.pop(child.pid, None)
    _clear_pid_files(state_dir)
    raise DealerError(f"the Dealer did not come up within {timeout:g}s (see {log_path})")


def _last_line(path: Path) -> str:
    try:
        lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "(no log)"
    ours = [line for line in lines if line.startswith("squals dealer:")]
    return (ours or lines or ["(empty log)"])[-1]


def connect_dealer(state_dir: Path, *, timeout: float = 5.0) -> DealerClient:
    """The admin client of the Dealer running from ``state_dir`` (for later CLI commands).

    A Dealer started by an older squals (a lower admin protocol in ``dealer.json``) is restarted on this one
    first (:func:`restart_dealer`), and that is logged; one started by a newer squals is refused, untouched.
    ``timeout`` is the client's per call.
    """
    state_dir = Path(state_dir).resolve()
    status = dealer_status(state_dir)
    if not _current(status) and state_dir.is_dir():
        # Under the lock: a restart by another command is over, and only one command restarts.
        with _restart_lock(state_dir):
            status = dealer_status(state_dir)
            if _serving(status) and status.protocol is not None and status.protocol < ADMIN_PROTOCOL:
                return _upgrade(state_dir, status, timeout)
    if not _serving(status):
        raise DealerError(f"no Dealer runs from {state_dir}: {status.detail or status.state}")
    if status.protocol is None:
        raise DealerError(status.detail)
    if status.protocol > ADMIN_PROTOCOL:
        raise DealerError(
            f"the Dealer running from {state_dir} (pid {status.pid}) speaks admin protocol "
            f"{status.protocol}, this squals only {ADMIN_PROTOCOL}: use the newer squals that started it, "
            f"or stop that Dealer (squals down) and start it again with this one"
        )
    return _client(state_dir, status, timeout)


def _serving(status: DealerStatus) -> bool:
    return status.state == "running" and status.url is not None and status.admin_url is not None


def _current(status: DealerStatus) -> bool:
    return _serving(status) and status.protocol == ADMIN_PROTOCOL


def _client(state_dir: Path, status: DealerStatus, timeout: float) -> DealerClient:
    assert status.url is not None and status.admin_url is not None
    config = load_config(state_dir / CONFIG_FILE)
    return DealerClient(status.url, status.admin_url, config.token, timeout=timeout, pid=status.pid)


def _restart_wait(state_dir: Path) -> float:
    """At most how long a restart takes: a stop (5 s more to kill) and a start with its tallies."""
    return 2 * _RESTART_TIMEOUT + 5.0 + tally_bytes(state_dir) / RECOVERY_BYTES_PER_S


def _restart_lock(state_dir: Path) -> contextlib.AbstractContextManager[None]:
    return filelock.exclusive(
        state_dir / RESTART_LOCK,
        timeout=_restart_wait(state_dir) + 5.0,
        busy=f"the Dealer of {state_dir} is being started, stopped or restarted",
        error=DealerError,
    )


def _upgrade(state_dir: Path, status: DealerStatus, timeout: float) -> DealerClient:
    """Restart an older Dealer on this squals (the lock held) and say so in one line, here and in its log."""
    client = _restart(state_dir, status, _RESTART_TIMEOUT)
    client.timeout = timeout
    line = (
        f"the Dealer of {state_dir} was started by an older squals (admin protocol {status.protocol}): "
        f"restarted on this one (protocol {ADMIN_PROTOCOL}), pid {status.pid} -> {client.pid}, "
        f"same routing and tallies, {client.url}"
    )
    _log.warning("%s", line)
    with contextlib.suppress(OSError), open(state_dir / LOG_FILE, "a", encoding="utf-8") as handle:
        handle.write(f"squals: {line}\n")
    return client


def restart_dealer(state_dir: Path, *, timeout: float = 15.0) -> DealerClient:
    """Stop the Dealer of ``state_dir`` gracefully and start it again on this squals with its saved config,
    its last switch (``routing.json``, which :func:`start_dealer` drops), its tallies and its public port.

    Raises DealerError if none runs, or if it does not come back (then none runs: the message says so).
    """
    state_dir = Path(state_dir).resolve()
    if not state_dir.is_dir():
        raise DealerError(f"no Dealer runs from {state_dir} to restart: no such directory")
    with _restart_lock(state_dir):
        return _restart(state_dir, dealer_status(state_dir), timeout)


def _restart(state_dir: Path, status: DealerStatus, timeout: float) -> DealerClient:
    """:func:`restart_dealer` of the Dealer ``status`` found, the lock held."""
    if not _serving(status) or status.url is None:
        raise DealerError(f"no Dealer runs from {state_dir} to restart: {status.detail or status.state}")
    config = load_config(state_dir / CONFIG_FILE)
    port = urlsplit(status.url).port
    if port:  # the running port, whatever dealer.port said: the next launch takes it again
        atomic_write(state_dir / PORT_FILE, f"{port}\n")
    running = _running_workers(state_dir) if not config.workers else 0
    stopped = _stop(state_dir, timeout)
    if stopped.state != "running":
        raise DealerError(f"the Dealer of {state_dir} stopped meanwhile ({stopped.state}): not restarted")
    try:
        # The same Dealer again: as many workers as it ran, whatever this command's environment says.
        return _start(config, state_dir, timeout, {WORKERS_ENV: str(running)} if running else None)
    except DealerError as exc:
        raise DealerError(
            f"the Dealer of {state_dir} (pid {status.pid}) was stopped to restart it and did not come back, "
            f"none runs now: {exc.one_line()}"
        ) from exc


def _running_workers(state_dir: Path) -> int:
    """The running Dealer's worker count (``workers`` in ``dealer.json``), 0 when it does not say."""
    try:
        workers = read_json(state_dir / ENDPOINT_FILE).get("workers")
    except (DealerError, AttributeError):
        return 0
    return workers if isinstance(workers, int) and not isinstance(workers, bool) and workers > 0 else 0


def stop_dealer(state_dir: Path, *, timeout: float = 15.0) -> DealerStatus:
    """Stop the Dealer of ``state_dir`` gracefully (in-flight requests finish, tallies are written).

    Returns what was found: ``running`` (now stopped), ``stopped`` (nothing to do) or ``stale`` (the pid file
    named a dead or foreign process: its files are removed, the process is not touched). A restart under way
    (an upgrade's) ends first.
    """
    state_dir = Path(state_dir).resolve()
    if not state_dir.is_dir():  # no Dealer ran from it: nothing to lock, and no directory made for a lock
        return _stop(state_dir, timeout)
    with _restart_lock(state_dir):
        return _stop(state_dir, timeout)


def _stop(state_dir: Path, timeout: float) -> DealerStatus:
    """:func:`stop_dealer`, the lock held."""
    status = dealer_status(state_dir)
    if status.state != "running" or status.pid is None:
        if status.state == "stale":
            _clear_pid_files(state_dir)
        return status
    pid = status.pid
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    if _alive(pid):  # verified ours above and deaf to SIGTERM
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        kill_deadline = time.monotonic() + 5
        while _alive(pid) and time.monotonic() < kill_deadline:
            time.sleep(0.02)
        status = dataclasses.replace(status, detail=f"pid {pid} ignored SIGTERM for {timeout:g}s: killed")
    child = _CHILDREN.pop(pid, None)
    if child is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=1)
    _clear_pid_files(state_dir)
    return status
