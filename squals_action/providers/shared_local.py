"""Shared resources on the ``local`` provider: each one a long-running command on a port of its own.

Layout (under the local provider's folder, default ``<repository top>/.squals/local``)::

    shared/<name>/handle.json   the resource's record (process, port, URL, the commit it was started from)
    shared/<name>/worktree/     ``git worktree add --detach`` of that commit: where ``run`` starts
    shared/<name>.lock          serialises starting and stopping one resource across processes
    logs/shared-<name>.log      its output

The record is written before the process starts (so a squals killed in between leaves something the next
one finds and cleans), and again with the process once it is launched. A resource is ready when its port
accepts a TCP connection; one that exits or does not open its port within ``ready_timeout`` is stopped,
its folder removed, and the error carries the end of its log.
"""

from __future__ import annotations

import json
import shutil
import socket
import time
from collections.abc import Iterable, Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from types import MappingProxyType
from typing import Any

from squals_action.gitcmd import add_worktree, remove_worktree, resolve_commit
from squals_action.manifest import model
from squals_action.process import command_environment, read_log_tail
from squals_action.providers import daemon, filelock
from squals_action.providers.interface import (
    DestroyOutcome,
    ProviderError,
    SharedHandle,
    SharedResources,
    SharedStatus,
    check_env_name,
    unknown_names,
)

LOCK_TIMEOUT = 60.0
STOP_GRACE = 5.0


def accepts_connections(port: int, *, timeout: float = 0.5) -> bool:
    """Does something on 127.0.0.1 accept a TCP connection on ``port`` now?"""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


class LocalShared(SharedResources):
    """The shared resources of the project whose repository top is ``top``, kept under ``root``."""

    kind = "local"

    def __init__(self, top: Path, root: Path) -> None:
        self.top = top
        self.root = root

    # ------------------------------------------------------------------------------------------ records

    def _dir(self, name: str) -> Path:
        return self.root / "shared" / check_env_name(name)

    def _log(self, name: str) -> Path:
        return self.root / "logs" / f"shared-{name}.log"

    def _read(self, name: str) -> SharedHandle | None:
        try:
            raw = json.loads((self._dir(name) / "handle.json").read_text())
            return SharedHandle(
                name=str(raw["name"]),
                kind=self.kind,
                url=str(raw["url"]),
                commit=str(raw["commit"]),
                data=MappingProxyType(dict(raw["data"])),
            )
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError):
            # Unreadable (a squals killed mid-write): still ours to clean up.
            return SharedHandle(name=name, kind=self.kind, url="", commit="", data=MappingProxyType({}))

    def _write(self, handle: SharedHandle) -> None:
        path = self._dir(handle.name) / "handle.json"
        tmp = path.with_suffix(".tmp")
        record = {"name": handle.name, "url": handle.url, "commit": handle.commit, "data": dict(handle.data)}
        tmp.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
        tmp.replace(path)

    @staticmethod
    def _process(handle: SharedHandle) -> daemon.ProcessRecord | None:
        raw = handle.data.get("process")
        if not isinstance(raw, Mapping):
            return None
        try:
            return daemon.ProcessRecord.from_json(raw)
        except (KeyError, TypeError, ValueError):
            return None

    def _alive(self, handle: SharedHandle) -> bool:
        record = self._process(handle)
        return record is not None and daemon.probe(record) == "running"

    def _recorded(self) -> tuple[SharedHandle, ...]:
        folder = self.root / "shared"
        if not folder.is_dir():
            return ()
        handles = [self._read(entry.name) for entry in sorted(folder.iterdir()) if entry.is_dir()]
        return tuple(handle for handle in handles if handle is not None)

    # ---------------------------------------------------------------------------------------- lifecycle

    def ensure(self, manifest: model.Manifest, commit: str) -> tuple[SharedHandle, ...]:
        """See :meth:`SharedResources.ensure`: a recorded resource that still runs is kept as it is (it is not
        restarted for a newer commit: its lifetime is its own)."""
        if manifest.shared:
            sha = resolve_commit(self.top, commit, error=ProviderError)
            for resource in manifest.shared.values():
                with self._locked(resource.name):
                    found = self._read(resource.name)
                    if found is not None and self._alive(found):
                        continue
                    if found is not None:
                        self._remove_locked(found)
                    self._start(resource, manifest, sha)
        return self.running()

    def running(self) -> tuple[SharedHandle, ...]:
        return tuple(handle for handle in self._recorded() if self._alive(handle))

    def status(self, manifest: model.Manifest | None) -> tuple[SharedStatus, ...]:
        recorded = {handle.name: handle for handle in self._recorded()}
        declared = set(manifest.shared) if manifest is not None else set()
        statuses: list[SharedStatus] = []
        for name in sorted(declared | set(recorded)):
            handle = recorded.get(name)
            if handle is None:
                statuses.append(SharedStatus(name=name, state="not started", detail="never started"))
            elif self._alive(handle):
                since = time.strftime(
                    "%Y-%m-%d %H:%M:%S", time.localtime(float(handle.data.get("started_at", 0.0)))
                )
                statuses.append(
                    SharedStatus(
                        name=name,
                        state="running",
                        url=handle.url,
                        detail=f"pid {self._pid(handle)}, started {since} from {handle.commit[:12]}",
                    )
                )
            else:
                statuses.append(
                    SharedStatus(name=name, state="down", detail=f"not running (log {self._log(name)})")
                )
        return tuple(statuses)

    def _pid(self, handle: SharedHandle) -> int | str:
        record = self._process(handle)
        return record.pid if record is not None else "?"

    def remove(self, names: Iterable[str] | None = None) -> tuple[DestroyOutcome, ...]:
        recorded = {handle.name: handle for handle in self._recorded()}
        wanted = sorted(recorded) if names is None else sorted(set(names))
        unknown_names(wanted, recorded)
        outcomes: list[DestroyOutcome] = []
        for name in wanted:
            try:
                with self._locked(name):
                    current = self._read(name)
                    outcomes.append(
                        self._remove_locked(current)
                        if current is not None
                        else DestroyOutcome(name, ok=True, detail="already gone")
                    )
            except ProviderError as exc:
                outcomes.append(DestroyOutcome(name, ok=False, detail=exc.one_line()))
        return tuple(outcomes)

    # ---------------------------------------------------------------------------------------- internals

    def _locked(self, name: str) -> AbstractContextManager[None]:
        return filelock.exclusive(
            self.root / "shared" / f"{check_env_name(name)}.lock",
            timeout=LOCK_TIMEOUT,
            busy=f"shared resource {name} is busy",
        )

    def _start(self, resource: model.SharedResource, manifest: model.Manifest, sha: str) -> SharedHandle:
        where = f"{resource.location}: shared.{resource.name}"
        if not resource.run:
            raise ProviderError(f"{where}: expected run (the command that runs it on $PORT) locally")
        folder = self._dir(resource.name)
        worktree = folder / "worktree"
        log = self._log(resource.name)
        port = daemon.free_port()
        data: dict[str, Any] = {
            "type": resource.type,
            "port": port,
            "worktree": str(worktree),
            "log": str(log),
            "started_at": time.time(),
        }
        handle = SharedHandle(
            name=resource.name,
            kind=self.kind,
            url=resource.url.replace("$PORT", str(port)),
            commit=sha,
            data=MappingProxyType(dict(data)),
        )
        folder.mkdir(parents=True, exist_ok=True)
        self._write(handle)
        try:
            add_worktree(self.top, worktree, sha, error=ProviderError)
            log.parent.mkdir(parents=True, exist_ok=True)
            if log.exists():
                log.replace(log.with_suffix(".log.1"))
            log.write_text(f"# squals: shared {resource.name} at {sha} on port {port}: {resource.run}\n")
            env = command_environment(
                {"PORT": str(port), "SQUALS_SHARED": resource.name, "SQUALS_PROJECT": manifest.name},
                passthrough=manifest.env_passthrough,
            )
            try:
                record = daemon.spawn(resource.run, cwd=worktree, env=env, log_path=log)
            except daemon.DaemonError as exc:
                raise ProviderError(f"{where}: {exc}") from exc
            handle = SharedHandle(
                name=handle.name,
                kind=self.kind,
                url=handle.url,
                commit=sha,
                data=MappingProxyType({**data, "process": record.to_json()}),
            )
            self._write(handle)
            self._wait_ready(handle, record, resource, where)
        except BaseException:
            self._remove_locked(handle)
            raise
        return handle

    def _wait_ready(
        self, handle: SharedHandle, record: daemon.ProcessRecord, resource: model.SharedResource, where: str
    ) -> None:
        port = int(handle.data["port"])
        deadline = time.monotonic() + resource.ready_timeout
        pause = 0.05
        while True:
            if daemon.probe(record) != "running" and not daemon.members(record):
                why = "it exited"
                break
            if accepts_connections(port):
                return
            if time.monotonic() + pause >= deadline:
                why = f"port {port} did not accept connections within {resource.ready_timeout:g}s"
                break
            time.sleep(pause)
            pause = min(pause * 2, 0.5)
        tail = read_log_tail(handle.data["log"], max_lines=20)
        raise ProviderError(
            f"{where}: {resource.run!r} did not become ready ({why}); log {handle.data['log']} ends with:\n"
            f"{tail or '(empty)'}"
        )

    def _remove_locked(self, handle: SharedHandle) -> DestroyOutcome:
        notes: list[str] = []
        record = self._process(handle)
        if record is not None:
            try:
                stop = daemon.terminate(record, grace=STOP_GRACE)
            except daemon.DaemonError as exc:
                return DestroyOutcome(handle.name, ok=False, detail=str(exc))
            notes.extend(stop.notes)
            if stop.stopped:
                notes.append(f"stopped {len(stop.stopped)} process(es)")
        folder = self._dir(handle.name)
        note = remove_worktree(self.top, folder / "worktree")
        if note:
            notes.append(note)
        shutil.rmtree(folder, ignore_errors=True)
        if folder.exists():
            detail = f"could not remove {folder}"
            return DestroyOutcome(handle.name, ok=False, detail=detail, notes=tuple(notes))
        return DestroyOutcome(handle.name, ok=True, detail="; ".join(notes) or "removed", notes=tuple(notes))
