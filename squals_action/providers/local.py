"""The ``local`` provider: each environment is the app started from its own git worktree on 127.0.0.1.

Layout (``state_dir``, default ``<repository top>/.squals/local``; a ``.gitignore`` of ``*`` in ``.squals/``
keeps it out of ``git status``)::

    envs/<env>/handle.json    the EnvironmentHandle (process record included): what list() and down() read;
                              written before the app starts, with the launch's token
    envs/<env>/worktree/      ``git worktree add --detach`` of the environment's commit
    pids/<env>/<token>.json   each launched app's own record, written by the process itself before the app
                              runs: ``destroy`` stops every process these name, so nothing squals started
                              is ever left unrecorded, even when squals was killed half-way
    logs/<env>.log            the app's stdout and stderr (kept after destroy; the previous run is ``.log.1``)
    locks/<env>.lock          serialises provision/destroy of one environment across processes

The user's working tree, index and HEAD are never touched: only ``git worktree add/remove/prune``, which write
under ``.git/worktrees``.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar

from squals_action.gitcmd import git_text, repo_top, resolve_commit
from squals_action.manifest import model
from squals_action.own_files import OWN_DIR, own_dir
from squals_action.process import command_environment
from squals_action.providers import daemon, filelock
from squals_action.providers.interface import (
    DestroyOutcome,
    EnvironmentHandle,
    Health,
    Killed,
    Provider,
    ProviderError,
    ProvisionError,
    check_env_name,
    shared_env,
)
from squals_action.providers.shared_local import LocalShared

LOCK_TIMEOUT = 60.0
STOP_GRACE = 5.0
LOG_TAIL_LINES = 20


def http_health(url: str, path: str, *, timeout: float) -> tuple[int | None, str]:
    """GET ``url + path`` once; (status, "") on an answer, (None, why) when there was none."""
    host_port = url.removeprefix("http://").rstrip("/")
    host, _, port = host_port.partition(":")
    conn = http.client.HTTPConnection(host, int(port or 80), timeout=timeout)
    try:
        conn.request("GET", path if path.startswith("/") else "/" + path, headers={"User-Agent": "squals"})
        response = conn.getresponse()
        response.read(65536)
        return response.status, ""
    except (OSError, http.client.HTTPException) as exc:
        return None, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    finally:
        conn.close()


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last ``lines`` lines of a log (reads at most 64 KiB from the end)."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 65536))
            data = handle.read()
    except OSError:
        return ""
    return "\n".join(data.decode(errors="replace").splitlines()[-lines:])


def _port_hint(handle: EnvironmentHandle, record: daemon.ProcessRecord, why: str) -> str:
    """Why an app that runs but never answered is not up: it must listen on $PORT; say where it listens."""
    import psutil

    listening: set[str] = set()
    for pid in daemon.members(record):
        with contextlib.suppress(psutil.Error):
            for conn in psutil.Process(pid).net_connections(kind="inet"):
                if conn.status == psutil.CONN_LISTEN and conn.laddr:
                    listening.add(f"{conn.laddr.ip}:{conn.laddr.port}")
    port = handle.data.get("port")
    instead = f"; it listens on {', '.join(sorted(listening))} instead" if listening else ""
    return f"{why}; the app never answered on $PORT ({port}): it must listen on the port in $PORT{instead}"


def _state(record: daemon.ProcessRecord) -> daemon.ProcState:
    """Like :func:`daemon.probe`, but an app whose start command backgrounded it (the leader exited, its
    provable group members run on) still counts as running."""
    state = daemon.probe(record)
    if state == "gone" and daemon.members(record):
        return "running"
    return state


class LocalProvider(Provider):
    """Environments as detached processes on this machine, one git worktree each."""

    kind: ClassVar[str] = "local"

    def __init__(
        self,
        repo: Path | str,
        config: model.Provider | None = None,
        *,
        state_dir: Path | str | None = None,
    ) -> None:
        super().__init__(repo, config, state_dir=state_dir)
        self.top = repo_top(self.repo, error=ProviderError)
        self._own_state_dir = self.state_dir is None
        self.root = self.state_dir if self.state_dir is not None else self.top / OWN_DIR / "local"

    # ----------------------------------------------------------------------------------------------- paths

    def _env_dir(self, env: str) -> Path:
        return self.root / "envs" / env

    def _pid_dir(self, env: str) -> Path:
        return self.root / "pids" / env

    def _log_path(self, env: str) -> Path:
        return self.root / "logs" / f"{env}.log"

    def _prepare_root(self) -> None:
        if self._own_state_dir:
            own_dir(self.top)  # with its .gitignore
        (self.root / "envs").mkdir(parents=True, exist_ok=True)
        (self.root / "logs").mkdir(parents=True, exist_ok=True)
        (self.root / "locks").mkdir(parents=True, exist_ok=True)

    @contextlib.contextmanager
    def _locked(self, env: str) -> Iterator[None]:
        """Hold ``locks/<env>.lock`` so two CLI processes never provision one environment at once."""
        self._prepare_root()
        with filelock.exclusive(
            self.root / "locks" / f"{env}.lock", timeout=LOCK_TIMEOUT, busy=f"environment {env} is busy"
        ):
            yield

    # ----------------------------------------------------------------------------------------- records

    def _read_record(self, env: str) -> EnvironmentHandle | None:
        path = self._env_dir(env) / "handle.json"
        try:
            raw = json.loads(path.read_text())
            return EnvironmentHandle.from_json(raw)
        except FileNotFoundError:
            if self._env_dir(env).exists() or any(self._pid_dir(env).glob("*")):
                # A provision that died before writing its record: still ours to clean up.
                return self._bare_handle(env)
            return None
        except (OSError, ValueError, ProviderError):
            return self._bare_handle(env)

    def _bare_handle(self, env: str) -> EnvironmentHandle:
        data = {"dir": str(self._env_dir(env)), "worktree": str(self._env_dir(env) / "worktree")}
        return EnvironmentHandle(env, "", "", self.kind, MappingProxyType(data))

    def _write_record(self, handle: EnvironmentHandle) -> None:
        path = self._env_dir(handle.env) / "handle.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(handle.to_json(), indent=2, sort_keys=True) + "\n")
        tmp.replace(path)

    def _process(self, handle: EnvironmentHandle) -> daemon.ProcessRecord | None:
        """The handle's process: as recorded in it, else as its launch recorded itself (its pid file)."""
        raw = handle.data.get("process")
        if isinstance(raw, Mapping):
            try:
                return daemon.ProcessRecord.from_json(raw)
            except (KeyError, TypeError, ValueError):
                return None
        token = handle.data.get("token")
        if isinstance(token, str) and check_env_name_ok(handle.env):
            return daemon.read_pid_file(self._pid_dir(handle.env) / f"{token}.json")
        return None

    # ------------------------------------------------------------------------------------------ provision

    def _app_dir(self, worktree: Path, manifest: model.Manifest) -> Path:
        """Where ``app.start`` runs: ``app.workdir`` relative to the squals file's folder in the worktree."""
        base = worktree
        # The manifest's own idea of its folder when it has one (``base_dir``), else the file's folder.
        declared = manifest.base_dir
        squals_dir = Path(declared) if declared not in {"", "."} else Path(manifest.path).resolve().parent
        # the file's repository: this one, or a checkout of the commit the lifecycle loaded the file from
        top = Path(manifest.repo_root) if manifest.repo_root not in {"", "."} else self.top
        with contextlib.suppress(ValueError):
            base = worktree / squals_dir.resolve().relative_to(top.resolve())
        cwd = (base / manifest.app.workdir).resolve()
        if not cwd.is_relative_to(worktree.resolve()):
            raise ProviderError(
                f"{manifest.app.location}: app.workdir {manifest.app.workdir!r} leaves the repository"
            )
        if not cwd.is_dir():
            raise ProviderError(
                f"{manifest.app.location}: app.workdir {manifest.app.workdir!r} is not a folder in the commit"
            )
        return cwd

    def provision(
        self,
        env_name: str,
        commit: str,
        manifest: model.Manifest,
        *,
        extra_env: Mapping[str, str] = model.EMPTY,
    ) -> EnvironmentHandle:
        """Check out ``commit`` in a worktree, start ``app.start`` there, return once ``app.health`` answers.

        Signature is the :class:`Provider` contract; see there for the variables the app gets.
        """
        env = check_env_name(env_name)
        sha = resolve_commit(self.top, commit, error=ProviderError)
        shared = shared_env(self.shared_resources().ensure(manifest, sha))
        with self._locked(env):
            existing = self._read_record(env)
            if existing is not None:
                replaced = self._destroy_locked(existing)
                if not replaced.ok:
                    raise ProviderError(
                        f"{env}: the running environment could not be replaced: {replaced.detail}"
                    )
            env_dir = self._env_dir(env)
            worktree = env_dir / "worktree"
            log = self._log_path(env)
            port = daemon.free_port()
            url = f"http://127.0.0.1:{port}"
            token = daemon.new_token()
            data: dict[str, Any] = {
                "token": token,
                "dir": str(env_dir),
                "worktree": str(worktree),
                "log": str(log),
                "port": port,
                "health_path": manifest.app.health,
                "started_at": time.time(),
            }
            handle = EnvironmentHandle(env, sha, url, self.kind, MappingProxyType(dict(data)))
            try:
                env_dir.mkdir(parents=True)
                self._write_record(handle)
                git_text(self.top, "worktree", "add", "--detach", str(worktree), sha, error=ProviderError)
                cwd = self._app_dir(worktree, manifest)
                if log.exists():
                    log.replace(log.with_suffix(".log.1"))
                with log.open("w") as out:
                    out.write(f"# squals: {env} at {sha} on {url}: {manifest.app.start}\n")
                handle = self._spawn(handle, cwd, manifest, {**shared, **extra_env})
                self._wait_healthy(handle, manifest.app, log)
            except BaseException:
                with contextlib.suppress(Exception):
                    self._destroy_locked(handle)
                raise
            return handle

    def _spawn(
        self, handle: EnvironmentHandle, cwd: Path, manifest: model.Manifest, extra_env: Mapping[str, str]
    ) -> EnvironmentHandle:
        """Start the app for ``handle`` (its port and URL) in ``cwd`` and record its process."""
        env, log = handle.env, Path(str(handle.data["log"]))
        app_env = command_environment(
            {
                **manifest.app_env_for(env),
                **extra_env,
                "PORT": str(handle.data["port"]),
                "SQUALS_ENV": env,
                "SQUALS_COMMIT": handle.commit,
                "SQUALS_URL": handle.url,
            },
            passthrough=manifest.env_passthrough,
        )
        try:
            token = str(handle.data["token"])
            record = daemon.spawn(
                manifest.app.start,
                cwd=cwd,
                env=app_env,
                log_path=log,
                token=token,
                pid_file=self._pid_dir(env) / f"{token}.json",
            )
        except daemon.DaemonError as exc:
            raise ProviderError(f"{env}: {exc}") from exc
        data = {k: v for k, v in handle.data.items() if k != "process"}
        handle = EnvironmentHandle(
            env, handle.commit, handle.url, self.kind, MappingProxyType({**data, "process": record.to_json()})
        )
        self._write_record(handle)
        return handle

    # ---------------------------------------------------------------------------------------------- chaos

    def kill(self, handle: EnvironmentHandle) -> Killed:
        """SIGKILL to the app's process group: no graceful stop, as a crash or the OOM killer would."""
        record = self._process(handle)
        if record is None:
            raise ProviderError(f"{handle.env}: no process is recorded for it: nothing to kill")
        try:
            killed = daemon.kill_now(record)
        except daemon.DaemonError as exc:
            raise ProviderError(f"{handle.env}: {exc}") from exc
        if not killed:
            raise ProviderError(f"{handle.env}: process {record.pid} is not running: nothing to kill")
        return Killed(f"SIGKILL to process group {record.pid} of {handle.env} ({len(killed)} process(es))")

    def revive(
        self,
        handle: EnvironmentHandle,
        killed: Killed,
        manifest: model.Manifest,
        *,
        extra_env: Mapping[str, str] = model.EMPTY,
    ) -> EnvironmentHandle:
        """Start the app again in its worktree on the same port (same URL), once what was killed is gone."""
        env = check_env_name(handle.env)
        with self._locked(env):
            record = self._process(handle)
            if record is not None:
                daemon.kill_now(record)  # whatever of the group outlived the kill
            cwd = self._app_dir(Path(str(handle.data["worktree"])), manifest)
            with Path(str(handle.data["log"])).open("a") as out:
                out.write(f"# squals: {env} started again after a chaos test ({killed.detail})\n")
            shared = shared_env(self.shared_resources().running())
            data = {**{k: v for k, v in handle.data.items() if k != "process"}, "token": daemon.new_token()}
            # A new launch, recorded with its token before it starts.
            handle = EnvironmentHandle(env, handle.commit, handle.url, self.kind, MappingProxyType(data))
            self._write_record(handle)
            handle = self._spawn(handle, cwd, manifest, {**shared, **extra_env})
            self._wait_healthy(handle, manifest.app, Path(str(handle.data["log"])))
            return handle

    def _wait_healthy(self, handle: EnvironmentHandle, app: model.App, log: Path) -> None:
        record = self._process(handle)
        assert record is not None
        deadline = time.monotonic() + app.health_timeout
        why = "no answer yet"
        answered = False
        pause = 0.05
        while True:
            if _state(record) != "running":
                why = "the app exited before becoming healthy"
                break
            left = deadline - time.monotonic()
            if left <= 0:
                break
            status, error = http_health(handle.url, app.health, timeout=max(0.1, min(2.0, left)))
            if status is not None and 200 <= status < 400:
                return
            answered = answered or status is not None
            why = f"last answer HTTP {status}" if status is not None else f"last attempt: {error}"
            if time.monotonic() + pause >= deadline:
                break
            time.sleep(pause)
            pause = min(pause * 2, 0.5)
        if not answered and _state(record) == "running":
            why = _port_hint(handle, record, why)
        tail = log_tail(log)
        raise ProvisionError(
            f"{handle.env}: the app did not become healthy at {handle.url}{app.health} within "
            f"{app.health_timeout:g}s ({why}); {app.location}: app.start {app.start!r}",
            log_path=log,
            log_tail=tail,
        )

    def shared_resources(self) -> LocalShared:
        """Shared resources as long-running commands under this provider's folder (see
        :mod:`squals_action.providers.shared_local`)."""
        self._prepare_root()
        return LocalShared(self.top, self.root)

    # --------------------------------------------------------------------------------------------- health

    def health(self, handle: EnvironmentHandle, *, timeout: float = 2.0) -> Health:
        """``up`` / ``unhealthy`` / ``down`` / ``stale`` (see :class:`Health`); never raises for a sick
        app."""
        record = self._process(handle)
        if record is None:
            return Health("down", "no process was recorded for this environment")
        state = _state(record)
        if state == "gone":
            return Health("down", f"process {record.pid} is not running (see {handle.data.get('log')})")
        if state == "stale":
            return Health(
                "stale", f"pid {daemon.describe(record.pid)} is no longer the app squals started; left alone"
            )
        path = str(handle.data.get("health_path") or "/")
        status, error = http_health(handle.url, path, timeout=timeout)
        if status is None:
            return Health("unhealthy", f"{handle.url}{path}: {error}")
        if 200 <= status < 400:
            return Health("up", f"{handle.url}{path}: HTTP {status}", status)
        return Health("unhealthy", f"{handle.url}{path}: HTTP {status}", status)

    # -------------------------------------------------------------------------------------------- destroy

    def destroy(self, handle: EnvironmentHandle) -> DestroyOutcome:
        """Stop the process group (TERM, grace, KILL) and remove the worktree; harmless when already gone."""
        if handle.kind != self.kind:
            raise ProviderError(f"{handle.env}: a {handle.kind!r} environment cannot be destroyed by 'local'")
        env = check_env_name(handle.env)
        with self._locked(env):
            return self._destroy_locked(handle)

    def _destroy_locked(self, handle: EnvironmentHandle) -> DestroyOutcome:
        """Stop the handle's process; unless a newer provision of the environment runs, stop every other
        process its pid files name too (after a killed run the state may record an older handle than what
        runs) and remove its worktree."""
        notes: list[str] = []
        own = self._process(handle)
        current = self._read_record(handle.env)
        current_record = self._process(current) if current is not None else None
        newer = current_record is not None and (own is None or current_record.token != own.token)
        if newer and current_record is not None and daemon.probe(current_record) != "gone":
            # The environment was re-provisioned since this handle: the rest belongs to the new one.
            if own is not None:
                notes.extend(self._stop(handle.env, [own]))
            notes.append("a newer provision of this environment owns its worktree; kept")
            return DestroyOutcome(handle.env, ok=True, detail="; ".join(notes), notes=tuple(notes))
        records = [own] if own is not None else []
        pid_files = sorted(self._pid_dir(handle.env).glob("*.json"))
        for path in pid_files:
            found = daemon.read_pid_file(path)
            if found is not None and found not in records:
                records.append(found)
        notes.extend(self._stop(handle.env, records))
        for path in pid_files:  # every process they name is gone now (terminate raises otherwise)
            path.unlink(missing_ok=True)
        for path in self._pid_dir(handle.env).glob("*.tmp"):
            path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            self._pid_dir(handle.env).rmdir()
        env_dir = self._env_dir(handle.env)
        worktree = env_dir / "worktree"
        if worktree.exists():
            try:
                git_text(self.top, "worktree", "remove", "--force", str(worktree), error=ProviderError)
            except ProviderError as exc:
                notes.append(f"git worktree remove failed ({exc.one_line()}); deleted the folder")
        if env_dir.exists():
            shutil.rmtree(env_dir, ignore_errors=True)
        git_text(self.top, "worktree", "prune", error=ProviderError)
        if env_dir.exists():
            return DestroyOutcome(
                handle.env, ok=False, detail=f"could not remove {env_dir}", notes=tuple(notes)
            )
        return DestroyOutcome(handle.env, ok=True, detail="; ".join(notes), notes=tuple(notes))

    @staticmethod
    def _stop(env: str, records: list[daemon.ProcessRecord]) -> list[str]:
        """Terminate each recorded process group; the notes say what was left alone and how many stopped."""
        notes: list[str] = []
        stopped = 0
        for record in records:
            try:
                stop = daemon.terminate(record, grace=STOP_GRACE)
            except daemon.DaemonError as exc:
                raise ProviderError(f"{env}: {exc}") from exc
            notes.extend(stop.notes)
            stopped += len(stop.stopped)
        if stopped:
            notes.append(f"stopped {stopped} process(es)")
        return notes

    # ----------------------------------------------------------------------------------------------- list

    def list(self) -> tuple[EnvironmentHandle, ...]:
        """Every environment with a folder under ``envs/`` or a pid file under ``pids/``, running or not,
        sorted by name."""
        names = {
            entry.name
            for folder in (self.root / "envs", self.root / "pids")
            if folder.is_dir()
            for entry in folder.iterdir()
            if entry.is_dir() and check_env_name_ok(entry.name)
        }
        handles = [record for name in sorted(names) if (record := self._read_record(name)) is not None]
        return tuple(handles)


def check_env_name_ok(name: str) -> bool:
    try:
        check_env_name(name)
    except ProviderError:
        return False
    return True
