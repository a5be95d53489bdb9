"""The lock document -- which run of which pull request holds an environment, like Atlantis' plan locks --
and the refusals a lock held by someone else causes.

A lock is held by one *run* (one ``squals`` process, one workflow attempt), not by a pull request: the
:class:`Holder` names the run with a token of its own and the process and machine it runs on, so a second
run of the same pull request is refused (``pr-22 is being deployed by another run``) and a run on the same
machine can tell a holder that is gone (a killed process) from one that still works: a *stale* lock, reported
with the ``squals unlock`` command to run, never taken over silently.

How a lock is taken, renewed, released and broken is the store's policy:
:class:`~squals_action.state.interface.StateStore`.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from squals_action.state.clock import format_time, parse_optional_time, parse_time
from squals_action.state.errors import StateError
from squals_action.state.layout import LOCKS_DIR, SCHEMA_VERSION, JsonObject

Liveness = Literal["alive", "dead", "elsewhere"]

#: How each operation reads in "pr-22 is being deployed by another run".
_DOING = {"deploy": "deployed", "promote": "promoted", "rollback": "rolled back", "teardown": "torn down"}


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """``(state, start time in clock ticks since boot)`` of ``pid`` from ``/proc``; None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rfind(")") + 2 :].split()  # after "pid (comm) ": field 3 (state) onwards
    try:
        return fields[0], int(fields[19])  # field 22 is the start time
    except (IndexError, ValueError):
        return None


@dataclass(frozen=True, kw_only=True)
class Holder:
    """The run that holds a lock: a token of its own, and the process and machine it runs on."""

    token: str
    pid: int
    host: str
    boot_id: str = ""
    pid_start: int | None = None

    @classmethod
    def current(cls) -> Holder:
        """This process, with a fresh token: one per command run."""
        pid = os.getpid()
        stat = _proc_stat(pid)
        return cls(
            token=secrets.token_hex(8),
            pid=pid,
            host=socket.gethostname(),
            boot_id=_boot_id(),
            pid_start=stat[1] if stat else None,
        )

    def liveness(self) -> Liveness:
        """``dead`` only when provably so: this machine (same host and boot) and its pid gone or reused."""
        if self.host != socket.gethostname():
            return "elsewhere"
        if self.boot_id and _boot_id() and self.boot_id != _boot_id():
            return "dead"  # the machine rebooted since: no process of then still runs
        stat = _proc_stat(self.pid)
        if stat is None:
            if Path("/proc/self/stat").exists():
                return "dead"
            try:  # no /proc: the signal-0 probe is all there is
                os.kill(self.pid, 0)
            except ProcessLookupError:
                return "dead"
            except OSError:
                return "alive"
            return "alive"
        state, start = stat
        if state in ("Z", "X") or (self.pid_start is not None and start != self.pid_start):
            return "dead"
        return "alive"

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host}"

    def to_json(self) -> JsonObject:
        doc: JsonObject = {"token": self.token, "pid": self.pid, "host": self.host}
        if self.boot_id:
            doc["boot_id"] = self.boot_id
        if self.pid_start is not None:
            doc["pid_start"] = self.pid_start
        return doc

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Holder:
        start = doc.get("pid_start")
        return cls(
            token=str(doc["token"]),
            pid=int(doc["pid"]),
            host=str(doc["host"]),
            boot_id=str(doc.get("boot_id", "")),
            pid_start=int(start) if start is not None else None,
        )


@dataclass(frozen=True, kw_only=True)
class Lock:
    """An environment lock held by one run of a pull request; ``expires_at=None``: forever.

    ``holder`` is ``None`` on locks written by an older squals or by a caller that names no run (the lock is
    then the pull request's, as it used to be).
    """

    environment: str
    pr: int
    acquired_at: datetime
    expires_at: datetime | None = None
    run_id: str | None = None
    actor: str | None = None
    holder: Holder | None = None
    #: what the holder is doing: ``deploy``, ``promote``, ``rollback``, ``teardown`` (for messages)
    operation: str | None = None

    @property
    def path(self) -> str:
        return f"{LOCKS_DIR}/{self.environment}.json"

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and now >= self.expires_at

    def held_by(self, holder: Holder | None) -> bool:
        """Is this the same run's lock? Without holders on either side, any run of the same PR is."""
        if holder is None or self.holder is None:
            return True
        return self.holder.token == holder.token

    def who(self) -> str:
        """``run 900, pid 4242 on ci-7``: what the lock says about its holder."""
        parts = [f"run {self.run_id}"] if self.run_id else []
        if self.holder is not None:
            parts.append(self.holder.describe())
        return ", ".join(parts) or "no run recorded"

    def to_json(self) -> JsonObject:
        doc: JsonObject = {
            "schema_version": SCHEMA_VERSION,
            "environment": self.environment,
            "pr": self.pr,
            "acquired_at": format_time(self.acquired_at),
        }
        if self.expires_at:
            doc["expires_at"] = format_time(self.expires_at)
        if self.run_id is not None:
            doc["run_id"] = self.run_id
        if self.actor is not None:
            doc["actor"] = self.actor
        if self.holder is not None:
            doc["holder"] = self.holder.to_json()
        if self.operation is not None:
            doc["operation"] = self.operation
        return doc

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Lock:
        holder = doc.get("holder")
        return cls(
            environment=doc["environment"],
            pr=int(doc["pr"]),
            acquired_at=parse_time(doc["acquired_at"]),
            expires_at=parse_optional_time(doc.get("expires_at")),
            run_id=doc.get("run_id"),
            actor=doc.get("actor"),
            holder=Holder.from_json(holder) if isinstance(holder, Mapping) else None,
            operation=doc.get("operation"),
        )


def _until(lock: Lock) -> str:
    return f", expires {format_time(lock.expires_at)}" if lock.expires_at else ""


class LockedError(StateError):
    """The environment is locked by another pull request; names the holder and since when."""

    def __init__(self, lock: Lock, message: str | None = None) -> None:
        self.lock = lock
        super().__init__(
            message
            or f"environment {lock.environment!r} is locked by PR #{lock.pr} since "
            f"{format_time(lock.acquired_at)} ({lock.who()}{_until(lock)}); "
            f"wait for it, or break it with `squals unlock {lock.environment}`"
        )


class BusyError(LockedError):
    """Another run of the same pull request holds the lock and is still working (or may be: elsewhere)."""

    def __init__(self, lock: Lock) -> None:
        doing = _DOING.get(lock.operation or "", "changed")
        super().__init__(
            lock,
            f"{lock.environment} is being {doing} by another run ({lock.who()}, since "
            f"{format_time(lock.acquired_at)}{_until(lock)}); wait for it (--lock-wait), or if that run "
            f"is gone, break the lock with `squals unlock {lock.environment}`",
        )


class StaleLockError(LockedError):
    """The lock's holder ran on this machine and is gone (killed, crashed): only a person may break it."""

    def __init__(self, lock: Lock) -> None:
        super().__init__(
            lock,
            f"{lock.environment} is locked by a run that is no longer running ({lock.who()}, since "
            f"{format_time(lock.acquired_at)}): the lock is stale; check `squals status`, then break it "
            f"with `squals unlock {lock.environment}` and run the command again",
        )


def refusal(lock: Lock, pr: int) -> LockedError:
    """Why a live lock of another run refuses ``pr``: stale (its holder is gone), busy (same PR) or locked."""
    if lock.holder is not None and lock.holder.liveness() == "dead":
        return StaleLockError(lock)
    if lock.pr == pr:
        return BusyError(lock)
    return LockedError(lock)
