"""The door every provider stands behind: provision an environment from a commit, check it, destroy it.

The lifecycle only talks to :class:`Provider`; what an environment *is* (local processes, a CloudFormation
stack) stays inside the implementation. A provision returns an :class:`EnvironmentHandle` whose ``data`` is
plain JSON, so the state store can record it and a later CLI process (or the Action's next run) can check
or destroy the environment with nothing but that record.

Contract (checked for every registered provider by ``tests/providers/test_contract.py``):

* ``provision`` returns only once the environment answers its health check, or raises :class:`ProviderError`
  and leaves nothing behind;
* provisioning a name that already runs replaces it (the old one is destroyed first);
* ``destroy`` is idempotent: destroying twice, or destroying something already gone, is harmless;
* ``down`` stops everything this provider started for this project and reports per environment, failures as
  values; it never touches shared resources.

Shared resources (the squals file's ``shared:``) are started once and outlive the islands that use them:
teardown, promotion and ``down`` never touch them, only :meth:`SharedResources.remove` does. Every island a
provider provisions gets the URL of every running shared resource as ``SQUALS_SHARED_<NAME>_URL``
(:func:`shared_env`); a provision first starts those its squals file declares that do not run yet.
"""

from __future__ import annotations

import json
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar, Literal

from squals_action.errors import SqualsError
from squals_action.manifest import model

#: A JSON value as the state store will serialise it.
JSON = Any

#: Environment names become directory names, stack names and URLs: keep them boring.
ENV_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


class ProviderError(SqualsError):
    """Provisioning, checking or destroying an environment failed; the message says which and why."""


class ProvisionError(ProviderError):
    """The app did not come up: ``summary`` says why in one line, ``log_tail`` holds the end of its log."""

    def __init__(self, summary: str, *, log_path: Path, log_tail: str) -> None:
        super().__init__(f"{summary}; log {log_path} ends with:\n{log_tail or '(empty)'}")
        self.summary = f"{summary}; log {log_path}"
        self.log_path = log_path
        self.log_tail = log_tail


def check_env_name(name: str) -> str:
    """Refuse names that could escape a directory or a stack name; return the name unchanged."""
    if not ENV_NAME_RE.match(name) or name in {".", ".."}:
        raise ProviderError(
            f"environment name {name!r} is not allowed: expected letters, digits, '.', '_' or '-' "
            "(1-63 characters, starting with a letter or digit)"
        )
    return name


@dataclass(frozen=True)
class EnvironmentHandle:
    """What a provision produced: enough for any later process to check or destroy the environment.

    ``data`` is opaque to callers (the provider's own bookkeeping) and JSON-serialisable; record the whole
    handle with :meth:`to_json` and rebuild it with :meth:`from_json`.
    """

    env: str
    commit: str
    url: str
    kind: str
    data: Mapping[str, JSON] = field(default_factory=lambda: MappingProxyType({}))

    def to_json(self) -> dict[str, JSON]:
        """A plain dict for the state store (round-trips through :meth:`from_json`)."""
        return {
            "env": self.env,
            "commit": self.commit,
            "url": self.url,
            "kind": self.kind,
            "data": json.loads(json.dumps(dict(self.data))),
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, JSON]) -> EnvironmentHandle:
        """Rebuild a handle recorded by :meth:`to_json`; a malformed record is a :class:`ProviderError`."""
        try:
            data = raw.get("data") or {}
            if not isinstance(data, Mapping):
                raise TypeError("data is not a mapping")
            return cls(
                env=str(raw["env"]),
                commit=str(raw["commit"]),
                url=str(raw["url"]),
                kind=str(raw["kind"]),
                data=MappingProxyType(dict(data)),
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise ProviderError(f"malformed environment handle record: {exc}") from exc


HealthStatus = Literal["up", "unhealthy", "down", "stale"]


@dataclass(frozen=True)
class Health:
    """One health observation.

    ``up``: running and the health endpoint answered 2xx/3xx. ``unhealthy``: running but the endpoint failed
    or did not answer. ``down``: not running (crashed, stopped, never started). ``stale``: the recorded
    process id now belongs to another process; it is reported, never killed.
    """

    status: HealthStatus
    detail: str = ""
    http_status: int | None = None

    @property
    def ok(self) -> bool:
        return self.status == "up"


@dataclass(frozen=True)
class DestroyOutcome:
    """What one destroy did; ``ok`` is False when something could not be removed (``detail`` says what)."""

    env: str
    ok: bool
    detail: str = ""
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Killed:
    """What a chaos test's :meth:`Provider.kill` did: one line for the report, and what
    :meth:`Provider.revive` needs to undo it (plain JSON)."""

    detail: str
    undo: Mapping[str, JSON] = field(default_factory=lambda: MappingProxyType({}))


SharedState = Literal["running", "down", "not started"]


@dataclass(frozen=True, kw_only=True)
class SharedHandle:
    """One running (or recorded) shared resource: its name, URL and the provider's own JSON bookkeeping."""

    name: str
    kind: str
    url: str
    commit: str
    data: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def env_var(self) -> str:
        return model.shared_env_var(self.name)


@dataclass(frozen=True, kw_only=True)
class SharedStatus:
    """What ``squals shared status`` shows for one resource (declared, recorded, or both)."""

    name: str
    state: SharedState
    url: str = ""
    detail: str = ""


class SharedResources(ABC):
    """One provider's shared resources of one project."""

    @abstractmethod
    def ensure(self, manifest: model.Manifest, commit: str) -> tuple[SharedHandle, ...]:
        """Start every resource ``manifest`` declares that does not run yet (from ``commit``); return every
        running resource of the project, declared here or not (a variant file declares none but uses them).

        Raises :class:`ProviderError` naming the resource when one cannot be started."""

    @abstractmethod
    def running(self) -> tuple[SharedHandle, ...]:
        """The project's resources that run now, by name."""

    @abstractmethod
    def status(self, manifest: model.Manifest | None) -> tuple[SharedStatus, ...]:
        """Every resource ``manifest`` declares or the provider recorded, with its state, by name."""

    @abstractmethod
    def remove(self, names: Iterable[str] | None = None) -> tuple[DestroyOutcome, ...]:
        """Stop and remove the named resources (all the project's when ``names`` is None); failures as
        values, one outcome per resource."""


def shared_env(handles: Iterable[SharedHandle]) -> dict[str, str]:
    """The variables an island gets: ``SQUALS_SHARED_<NAME>_URL`` per running shared resource."""
    return {handle.env_var: handle.url for handle in handles}


def unknown_names(names: Iterable[str], known: Iterable[str]) -> None:
    """Refuse a ``squals shared down NAME`` of a resource neither declared nor recorded (a typo would
    otherwise report success for nothing)."""
    missing = sorted(set(names) - set(known))
    if missing:
        listed = ", ".join(sorted(set(known))) or "none"
        raise ProviderError(f"no shared resource {missing[0]!r} (known: {listed})")


class Provider(ABC):
    """Where environments run. Subclasses set :attr:`kind` and keep this constructor signature.

    ``repo`` is the project's git repository (any path inside its working tree), ``config`` the squals file's
    ``provider`` section, ``state_dir`` where the provider may keep its own files (default: provider-specific,
    documented in ``docs/providers.md``).
    """

    kind: ClassVar[str]

    def __init__(
        self,
        repo: Path | str,
        config: model.Provider | None = None,
        *,
        state_dir: Path | str | None = None,
    ) -> None:
        self.repo = Path(repo)
        self.config = config if config is not None else model.Provider(kind=self.kind)  # type: ignore[arg-type]
        self.state_dir = Path(state_dir) if state_dir is not None else None

    @abstractmethod
    def provision(
        self,
        env_name: str,
        commit: str,
        manifest: model.Manifest,
        *,
        extra_env: Mapping[str, str] = model.EMPTY,
    ) -> EnvironmentHandle:
        """Run ``commit`` as environment ``env_name`` and return once it is healthy.

        The app gets ``manifest.app_env_for(env_name)``, then ``extra_env``, then ``PORT``, ``SQUALS_ENV``,
        ``SQUALS_COMMIT`` and ``SQUALS_URL`` (which nothing overrides). An environment of the same name that
        already runs is destroyed first. Raises :class:`ProviderError` (leaving nothing behind) when the
        commit is unknown or the app does not become healthy within ``manifest.app.health_timeout`` seconds.
        """

    def check(
        self,
        env_name: str,
        commit: str,
        manifest: model.Manifest,
        *,
        extra_env: Mapping[str, str] = model.EMPTY,
    ) -> None:
        """Raise what :meth:`provision` of the same arguments would refuse before it starts anything,
        starting nothing (an experiment checks every variant before its first island)."""
        return None  # nothing to check ahead here: a subclass whose provision decides first says so

    @abstractmethod
    def health(self, handle: EnvironmentHandle, *, timeout: float = 2.0) -> Health:
        """Check the environment now; never raises for an unhealthy environment, only returns it."""

    @abstractmethod
    def destroy(self, handle: EnvironmentHandle) -> DestroyOutcome:
        """Stop the environment and remove what it used; harmless when it is already gone.

        Raises :class:`ProviderError` only when something could not be stopped at all.
        """

    @abstractmethod
    def list(self) -> tuple[EnvironmentHandle, ...]:
        """Every environment this provider knows it started for this project (running or not), by name."""

    @abstractmethod
    def shared_resources(self) -> SharedResources:
        """The project's shared resources where this provider runs them (see :class:`SharedResources`)."""

    def get(self, env_name: str) -> EnvironmentHandle | None:
        """The recorded environment called ``env_name``, if any."""
        for handle in self.list():
            if handle.env == env_name:
                return handle
        return None

    def kill(self, handle: EnvironmentHandle) -> Killed:
        """A chaos test: make the environment stop serving as a crash would, with no graceful stop."""
        raise ProviderError(f"provider {self.kind} cannot kill an environment for a chaos test")

    def revive(
        self,
        handle: EnvironmentHandle,
        killed: Killed,
        manifest: model.Manifest,
        *,
        extra_env: Mapping[str, str] = model.EMPTY,
    ) -> EnvironmentHandle:
        """Undo :meth:`kill`: the environment serves again; returns its handle (which may have changed)."""
        raise ProviderError(f"provider {self.kind} cannot revive an environment after a chaos test")

    def down(self) -> tuple[DestroyOutcome, ...]:
        """Destroy everything :meth:`list` shows; a failure on one environment does not stop the others."""
        outcomes: list[DestroyOutcome] = []
        for handle in self.list():
            try:
                outcomes.append(self.destroy(handle))
            except SqualsError as exc:
                outcomes.append(DestroyOutcome(handle.env, ok=False, detail=exc.one_line()))
        return tuple(outcomes)
