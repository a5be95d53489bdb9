"""The git-native state store: what callers see, independent of where the documents live.

The repository itself is the database. State is a set of JSON documents on an orphan branch (default
``squals/state``):

* ``environments/<name>.json`` -- which version runs where (:class:`EnvironmentState`),
* ``experiments/<id>.json`` -- spec digest, variants, observations, decision (:class:`ExperimentState`),
* ``locks/<env>.json`` -- which pull request holds an environment (:class:`Lock`).

Every change is one :meth:`StateStore.transact` call: the store reads the tip, applies a *pure* function to a
copy of the documents, writes one commit whose message carries the :class:`Transition` (summary line
plus ``Squals-*`` trailers) and publishes it with a compare-and-swap (for the git store a non-forced push, or
in local-only mode ``git update-ref <branch> <new> <old>``).
When another writer got there first, the store re-reads and re-applies the function, with jittered backoff,
a bounded number of times; then it raises :class:`ContentionError`. A transition carries an idempotency key
(event + run + attempt), so replaying the same event does not record a second transition.

Typical use::

    from squals_action.state import open_store, Transition

    store = open_store(Path("."))                       # the current repository, remote ``origin``
    store.acquire_lock("prod", pr=12, run_id="987", actor="octocat", ttl=3600)

    def promote(docs: Documents) -> Documents:
        env = docs.environment("prod")
        docs.put_environment(replace(env, version="1.2.3", updated_at=utc_now()))
        return docs

    store.transact(promote, Transition("promote", "promote pr-12 to prod", environment="prod", pr=12,
                                       run_id="987", actor="octocat"))

Nothing here imports git; the implementations live in :mod:`squals_action.state.git_store` (the real one) and
:mod:`squals_action.state.memory` (an in-process twin for other concerns' tests).
"""

from __future__ import annotations

import copy
import json
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any, TypeVar

from squals_action.errors import SqualsError

#: The branch that holds the state unless the caller names another.
DEFAULT_BRANCH = "squals/state"
#: The remote that holds the state branch unless the caller names another, or none (local-only mode).
DEFAULT_REMOTE = "origin"
#: The version every document written by this code carries in ``schema_version``.
SCHEMA_VERSION = 1

#: A JSON object as parsed by :func:`json.loads`.
JsonObject = dict[str, Any]
_Doc = TypeVar("_Doc")

ENVIRONMENTS_DIR = "environments"
EXPERIMENTS_DIR = "experiments"
LOCKS_DIR = "locks"

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_PATH_SEGMENT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_EVENT_RE = re.compile(r"^[a-z][a-z0-9-]{0,49}$")


# ---------------------------------------------------------------------------------------------- errors


class StateError(SqualsError):
    """Base of every failure of the state store."""


class LockedError(StateError):
    """The environment is locked by another pull request; names the holder and since when."""

    def __init__(self, lock: Lock) -> None:
        self.lock = lock
        until = f", expires {format_time(lock.expires_at)}" if lock.expires_at else ""
        super().__init__(
            f"environment {lock.environment!r} is locked by PR #{lock.pr} since "
            f"{format_time(lock.acquired_at)} (run {lock.run_id or '?'}{until}); "
            f"wait for it, or break it with `squals unlock {lock.environment}`"
        )


class ContentionError(StateError):
    """Other writers kept moving the branch; the transaction gave up after a bounded number of attempts."""

    def __init__(self, branch: str, attempts: int, waited: float | None = None) -> None:
        self.branch = branch
        self.attempts = attempts
        after = f" and {waited:.0f}s" if waited is not None else ""
        super().__init__(
            f"state branch {branch!r} kept moving under concurrent writers: gave up after {attempts} "
            f"attempts{after}"
        )


class PushRejectedError(StateError):
    """The remote refused the update for another reason than a race (protected branch, hook): not retried."""

    def __init__(self, branch: str, remote: str, message: str) -> None:
        self.branch = branch
        self.remote = remote
        self.remote_message = message
        super().__init__(f"remote {remote!r} refused to update state branch {branch!r}: {message}")


class CorruptStateError(StateError):
    """A state document does not parse or fails its schema; nothing will overwrite it."""

    def __init__(self, path: str, commit: str | None, reason: str) -> None:
        self.path = path
        self.commit = commit
        self.reason = reason
        at = f" at commit {commit[:12]}" if commit else ""
        super().__init__(
            f"corrupt state document {path}{at}: {reason}; fix it by hand, squals will not overwrite it"
        )


class UnrelatedHistoryError(StateError):
    """The state branch does not descend from what was read before, or is not a squals state branch."""


class GitCommandError(StateError):
    """A git command failed or timed out (network, credentials, a broken repository)."""


# ------------------------------------------------------------------------------------------------ time


def utc_now() -> datetime:
    """The current time, timezone-aware UTC, to the second (as stored in documents)."""
    return datetime.now(UTC).replace(microsecond=0)


def format_time(value: datetime) -> str:
    """ISO 8601 in UTC with a ``Z``, the one way times are written in documents and messages."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: str) -> datetime:
    """Inverse of :func:`format_time`; accepts any ISO 8601 with an offset."""
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _opt_time(value: Any) -> datetime | None:
    return parse_time(value) if isinstance(value, str) else None


# ------------------------------------------------------------------------------------------- documents


@dataclass(frozen=True)
class EnvironmentState:
    """What runs in one environment (``pr-12``, ``prod``, ``postprod``, a variant island).

    ``traffic_share`` is in percent (10 % is ``10.0``); ``handle`` is whatever the provider needs to find the
    environment again (stack name, process id, port); ``extra`` keeps fields this version does not know about.
    """

    name: str
    status: str
    version: str | None = None
    commit: str | None = None
    provider: str | None = None
    handle: Mapping[str, Any] = field(default_factory=dict)
    url: str | None = None
    traffic_share: float = 0.0
    pr: int | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def path(self) -> str:
        return f"{ENVIRONMENTS_DIR}/{self.name}.json"

    def to_json(self) -> JsonObject:
        doc: JsonObject = {"schema_version": SCHEMA_VERSION, "name": self.name, "status": self.status}
        for key in ("version", "commit", "provider", "url", "pr"):
            value = getattr(self, key)
            if value is not None:
                doc[key] = value
        doc["traffic_share"] = float(self.traffic_share)
        if self.handle:
            doc["handle"] = dict(self.handle)
        if self.created_at:
            doc["created_at"] = format_time(self.created_at)
        if self.updated_at:
            doc["updated_at"] = format_time(self.updated_at)
        if self.extra:
            doc["extra"] = dict(self.extra)
        return doc

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> EnvironmentState:
        return cls(
            name=doc["name"],
            status=doc["status"],
            version=doc.get("version"),
            commit=doc.get("commit"),
            provider=doc.get("provider"),
            handle=MappingProxyType(dict(doc.get("handle") or {})),
            url=doc.get("url"),
            traffic_share=float(doc.get("traffic_share", 0.0)),
            pr=doc.get("pr"),
            created_at=_opt_time(doc.get("created_at")),
            updated_at=_opt_time(doc.get("updated_at")),
            extra=MappingProxyType(dict(doc.get("extra") or {})),
        )


@dataclass(frozen=True)
class ExperimentState:
    """How one experiment stands: its spec digest, variants with their splits and observations, the decision.

    ``observations`` maps variant -> metric -> value (as the experiments concern last measured them);
    ``decision`` is ``None`` while the experiment runs, then e.g. ``{"outcome": "promote", "winner": "b"}``.
    """

    id: str
    spec_digest: str
    variants: tuple[str, ...]
    status: str = "running"
    split: Mapping[str, float] = field(default_factory=dict)
    observations: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    decision: Mapping[str, Any] | None = None
    started_at: datetime | None = None
    updated_at: datetime | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def path(self) -> str:
        return f"{EXPERIMENTS_DIR}/{self.id}.json"

    def to_json(self) -> JsonObject:
        doc: JsonObject = {
            "schema_version": SCHEMA_VERSION,
            "id": self.id,
            "spec_digest": self.spec_digest,
            "variants": list(self.variants),
            "status": self.status,
            "split": {k: float(v) for k, v in self.split.items()},
            "observations": {v: {m: x for m, x in ms.items()} for v, ms in self.observations.items()},
        }
        if self.decision is not None:
            doc["decision"] = dict(self.decision)
        if self.started_at:
            doc["started_at"] = format_time(self.started_at)
        if self.updated_at:
            doc["updated_at"] = format_time(self.updated_at)
        if self.extra:
            doc["extra"] = dict(self.extra)
        return doc

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> ExperimentState:
        decision = doc.get("decision")
        return cls(
            id=doc["id"],
            spec_digest=doc["spec_digest"],
            variants=tuple(doc["variants"]),
            status=doc.get("status", "running"),
            split=MappingProxyType({k: float(v) for k, v in (doc.get("split") or {}).items()}),
            observations=MappingProxyType(
                {v: MappingProxyType(dict(ms)) for v, ms in (doc.get("observations") or {}).items()}
            ),
            decision=MappingProxyType(dict(decision)) if isinstance(decision, Mapping) else None,
            started_at=_opt_time(doc.get("started_at")),
            updated_at=_opt_time(doc.get("updated_at")),
            extra=MappingProxyType(dict(doc.get("extra") or {})),
        )


@dataclass(frozen=True)
class Lock:
    """An environment lock held by a pull request, like Atlantis' plan locks; ``expires_at=None``: forever."""

    environment: str
    pr: int
    acquired_at: datetime
    expires_at: datetime | None = None
    run_id: str | None = None
    actor: str | None = None

    @property
    def path(self) -> str:
        return f"{LOCKS_DIR}/{self.environment}.json"

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and now >= self.expires_at

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
        return doc

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Lock:
        return cls(
            environment=doc["environment"],
            pr=int(doc["pr"]),
            acquired_at=parse_time(doc["acquired_at"]),
            expires_at=_opt_time(doc.get("expires_at")),
            run_id=doc.get("run_id"),
            actor=doc.get("actor"),
        )


def check_name(kind: str, name: str) -> str:
    """Environment, experiment and lock names become file names: keep them to a safe alphabet."""
    if not _NAME_RE.match(name):
        raise StateError(f"invalid {kind} name {name!r}: expected letters, digits, '.', '_' or '-' (max 100)")
    return name


def check_path(path: str) -> str:
    """A document path is ``seg/seg.json`` of safe segments, never absolute and never leaving the tree."""
    segments = path.split("/")
    if not path.endswith(".json") or not all(_PATH_SEGMENT_RE.match(s) for s in segments):
        raise StateError(f"invalid state document path {path!r}: expected safe segments ending in .json")
    return path


class _TypedView:
    """Typed read accessors shared by the immutable :class:`Snapshot` and the mutable :class:`Documents`."""

    def _raw(self) -> Mapping[str, Mapping[str, Any]]:
        raise NotImplementedError

    def _one(self, directory: str, name: str, load: Callable[[Mapping[str, Any]], _Doc]) -> _Doc | None:
        doc = self._raw().get(f"{directory}/{name}.json")
        return load(doc) if doc is not None else None

    def _all(
        self, directory: str, load: Callable[[Mapping[str, Any]], _Doc], key: Callable[[_Doc], str]
    ) -> dict[str, _Doc]:
        """Every document of ``directory``, loaded and keyed by ``key``, sorted by path."""
        loaded = (load(doc) for path, doc in sorted(self._raw().items()) if path.startswith(directory + "/"))
        return {key(item): item for item in loaded}

    def environment(self, name: str) -> EnvironmentState | None:
        return self._one(ENVIRONMENTS_DIR, name, EnvironmentState.from_json)

    def environments(self) -> dict[str, EnvironmentState]:
        """All environments by name, sorted by name."""
        return self._all(ENVIRONMENTS_DIR, EnvironmentState.from_json, lambda e: e.name)

    def experiment(self, experiment_id: str) -> ExperimentState | None:
        return self._one(EXPERIMENTS_DIR, experiment_id, ExperimentState.from_json)

    def experiments(self) -> dict[str, ExperimentState]:
        return self._all(EXPERIMENTS_DIR, ExperimentState.from_json, lambda e: e.id)

    def lock(self, environment: str) -> Lock | None:
        """The lock document of ``environment``, expired or not (see :meth:`Lock.expired`)."""
        return self._one(LOCKS_DIR, environment, Lock.from_json)

    def locks(self) -> dict[str, Lock]:
        return self._all(LOCKS_DIR, Lock.from_json, lambda lk: lk.environment)


class Documents(_TypedView, MutableMapping[str, JsonObject]):
    """The mutable working copy a transaction function receives: JSON objects by path, plus typed helpers.

    It is a deep copy of the tip's documents, so a function may change it freely; deleting a key deletes the
    document. Because the store may call the function again after a lost race, the function must be pure:
    everything it decides must come from these documents and its own arguments.
    """

    def __init__(self, docs: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        self._docs: dict[str, JsonObject] = copy.deepcopy({k: dict(v) for k, v in (docs or {}).items()})

    def _raw(self) -> Mapping[str, Mapping[str, Any]]:
        return self._docs

    def __getitem__(self, path: str) -> JsonObject:
        return self._docs[path]

    def __setitem__(self, path: str, doc: JsonObject) -> None:
        check_path(path)
        if not isinstance(doc, dict):
            raise StateError(f"state document {path} must be a JSON object, got {type(doc).__name__}")
        self._docs[path] = doc

    def __delitem__(self, path: str) -> None:
        del self._docs[path]

    def __iter__(self) -> Iterator[str]:
        return iter(self._docs)

    def __len__(self) -> int:
        return len(self._docs)

    def put_environment(self, env: EnvironmentState) -> None:
        check_name("environment", env.name)
        self[env.path] = env.to_json()

    def remove_environment(self, name: str) -> bool:
        return self.pop(f"{ENVIRONMENTS_DIR}/{name}.json", None) is not None

    def put_experiment(self, experiment: ExperimentState) -> None:
        check_name("experiment", experiment.id)
        self[experiment.path] = experiment.to_json()

    def remove_experiment(self, experiment_id: str) -> bool:
        return self.pop(f"{EXPERIMENTS_DIR}/{experiment_id}.json", None) is not None

    def put_lock(self, lock: Lock) -> None:
        check_name("environment", lock.environment)
        self[lock.path] = lock.to_json()

    def remove_lock(self, environment: str) -> bool:
        return self.pop(f"{LOCKS_DIR}/{environment}.json", None) is not None

    def require_lock(self, environment: str, pr: int, now: datetime | None = None) -> None:
        """Raise :class:`LockedError` when another PR holds a live lock on ``environment``.

        Call it inside a transaction function to make a change conditional on the lock in the same commit.
        """
        lock = self.lock(environment)
        if lock is not None and lock.pr != pr and not lock.expired(now or utc_now()):
            raise LockedError(lock)

    def to_dict(self) -> dict[str, JsonObject]:
        return self._docs


@dataclass(frozen=True)
class Snapshot(_TypedView):
    """The documents at one commit of the state branch; ``commit`` is ``None`` while there is no branch."""

    commit: str | None
    documents: Mapping[str, Mapping[str, Any]]

    def _raw(self) -> Mapping[str, Mapping[str, Any]]:
        return self.documents

    def working_copy(self) -> Documents:
        return Documents(self.documents)


# ----------------------------------------------------------------------------------------- transitions


def _one_line(text: str, limit: int) -> str:
    """Untrusted text (PR titles, logins) becomes one printable line: it ends up in a commit message."""
    cleaned = " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())
    return cleaned[:limit]


@dataclass(frozen=True)
class Transition:
    """Why a transaction happens: becomes the commit message and the idempotency key.

    ``event`` is a slug (``promote``, ``rollback``, ``lock``, ``experiment-tick``); ``run_id`` is the workflow
    run (``GITHUB_RUN_ID``) and ``attempt`` its re-run attempt (``GITHUB_RUN_ATTEMPT``). With a ``run_id``,
    the idempotency key is ``event/run_id/attempt`` (plus ``/environment`` when there is one, so that one
    run may record the same event for two environments) unless ``key`` gives one explicitly. A transition
    without a key (no ``run_id``, or ``idempotent=False``) is always recorded.
    """

    event: str
    summary: str
    environment: str | None = None
    pr: int | None = None
    run_id: str | None = None
    actor: str | None = None
    attempt: int = 1
    key: str | None = None
    idempotent: bool = True

    def __post_init__(self) -> None:
        if not _EVENT_RE.match(self.event):
            raise StateError(f"invalid transition event {self.event!r}: expected a lowercase slug")

    @property
    def idempotency_key(self) -> str | None:
        if not self.idempotent:
            return None
        if self.key is not None:
            return _one_line(self.key, 200)
        if self.run_id is None:
            return None
        where = f"/{self.environment}" if self.environment is not None else ""
        return _one_line(f"{self.event}/{self.run_id}/{self.attempt}{where}", 200)

    def message(self) -> str:
        """The commit message: a summary line, a blank line, then ``Squals-*`` trailers (git's format)."""
        trailers = [("Squals-Event", self.event)]
        if self.environment is not None:
            trailers.append(("Squals-Environment", self.environment))
        if self.pr is not None:
            trailers.append(("Squals-PR", str(self.pr)))
        if self.run_id is not None:
            trailers.append(("Squals-Run", self.run_id))
            trailers.append(("Squals-Attempt", str(self.attempt)))
        if self.actor is not None:
            trailers.append(("Squals-Actor", self.actor))
        key = self.idempotency_key
        if key is not None:
            trailers.append(("Squals-Idempotency-Key", key))
        summary = _one_line(self.summary, 200) or self.event
        body = "\n".join(f"{name}: {_one_line(value, 200)}" for name, value in trailers)
        return f"{summary}\n\n{body}\n"


@dataclass(frozen=True)
class HistoryEntry:
    """One recorded transition, read back from the commit log of the state branch."""

    commit: str
    time: datetime
    event: str
    summary: str
    environment: str | None = None
    pr: int | None = None
    run_id: str | None = None
    attempt: int | None = None
    actor: str | None = None
    idempotency_key: str | None = None

    def to_json(self) -> JsonObject:
        return {
            "commit": self.commit,
            "time": format_time(self.time),
            "event": self.event,
            "summary": self.summary,
            "environment": self.environment,
            "pr": self.pr,
            "run_id": self.run_id,
            "attempt": self.attempt,
            "actor": self.actor,
            "idempotency_key": self.idempotency_key,
        }


@dataclass(frozen=True)
class TransactionResult:
    """What a transaction did.

    ``applied`` -- a new commit was published (``commit`` is it); ``replayed`` -- the idempotency key was
    already recorded, nothing was written; neither -- the function returned ``None`` (nothing to record).
    ``attempts`` counts the compare-and-swap attempts (1 when nobody raced).
    """

    commit: str | None
    applied: bool
    replayed: bool
    attempts: int
    snapshot: Snapshot


TransactionFn = Callable[[Documents], Documents | None]


@dataclass(frozen=True)
class RetryPolicy:
    """How a transaction behaves under contention.

    At most ``max_attempts`` compare-and-swaps (pushes). After a lost race, binary exponential backoff with
    full jitter in slots of one measured attempt (at least ``base_delay`` seconds), then the writer waits
    until the branch stays still for a moment, looking at intervals of at most ``max_delay`` seconds; it
    gives up after ``max_wait`` seconds in all. Either way: :class:`ContentionError`.
    """

    max_attempts: int = 20
    base_delay: float = 0.02
    max_delay: float = 2.0
    max_wait: float = 120.0


# ------------------------------------------------------------------------------------------- the store


class StateStore(ABC):
    """A transactional store of JSON documents with an audit trail. Implementations: git, memory.

    Only :meth:`read`, :meth:`transact` and :meth:`history` are abstract; the lock and environment helpers are
    built on them, so every implementation behaves the same.
    """

    #: The branch (or name) of this store, for messages.
    branch: str = DEFAULT_BRANCH

    @abstractmethod
    def read(self) -> Snapshot:
        """The documents at the current tip (fetched fresh from the remote for the git store)."""

    @abstractmethod
    def transact(self, fn: TransactionFn, meta: Transition) -> TransactionResult:
        """Apply ``fn`` to a copy of the tip's documents and record the result as one transition.

        ``fn`` returns the new documents (usually the same object it received, changed) or ``None`` to record
        nothing. It may raise (for example :class:`LockedError`): the exception propagates and nothing is
        written. When ``meta.idempotency_key`` is already recorded, ``fn`` is not called and the result says
        ``replayed``. Raises :class:`ContentionError`, :class:`PushRejectedError`, :class:`CorruptStateError`,
        :class:`UnrelatedHistoryError`, :class:`GitCommandError`.
        """

    @abstractmethod
    def history(self, environment: str | None = None, limit: int | None = None) -> list[HistoryEntry]:
        """Recorded transitions, newest first, optionally only those of one environment."""

    def close(self) -> None:
        """Release what the store holds open (the git store keeps one ``git cat-file`` process)."""
        return None

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- typed helpers, all single transactions -------------------------------------------------------

    def put_environment(self, env: EnvironmentState, meta: Transition) -> TransactionResult:
        """Record the new state of one environment (create or replace its document)."""

        def fn(docs: Documents) -> Documents:
            docs.put_environment(env)
            return docs

        return self.transact(fn, meta)

    def remove_environment(self, name: str, meta: Transition) -> TransactionResult:
        """Record that an environment is gone (its document is deleted; the history keeps it)."""

        def fn(docs: Documents) -> Documents | None:
            return docs if docs.remove_environment(name) else None

        return self.transact(fn, meta)

    def put_experiment(self, experiment: ExperimentState, meta: Transition) -> TransactionResult:
        def fn(docs: Documents) -> Documents:
            docs.put_experiment(experiment)
            return docs

        return self.transact(fn, meta)

    def acquire_lock(
        self,
        environment: str,
        *,
        pr: int,
        run_id: str | None = None,
        actor: str | None = None,
        ttl: float | None = 3600.0,
        attempt: int = 1,
        now: datetime | None = None,
    ) -> Lock:
        """Take (or renew) the lock of ``environment`` for ``pr``; ``ttl`` seconds, ``None`` for no expiry.

        Raises :class:`LockedError` naming the holder and since when if another PR holds a live lock. An
        expired lock of another PR is taken over. Renewing keeps the original ``acquired_at``.
        """
        check_name("environment", environment)
        taken: list[Lock] = []

        def fn(docs: Documents) -> Documents:
            at = now or utc_now()
            docs.require_lock(environment, pr, at)
            current = docs.lock(environment)
            renewing = current is not None and current.pr == pr and not current.expired(at)
            since = current.acquired_at if current is not None and renewing else at
            lock = Lock(
                environment=environment,
                pr=pr,
                acquired_at=since,
                expires_at=at + timedelta(seconds=ttl) if ttl is not None else None,
                run_id=run_id,
                actor=actor,
            )
            docs.put_lock(lock)
            taken[:] = [lock]
            return docs

        meta = Transition(
            "lock",
            f"lock {environment} for PR #{pr}",
            environment=environment,
            pr=pr,
            run_id=run_id,
            actor=actor,
            attempt=attempt,
        )
        result = self.transact(fn, meta)
        if result.replayed:
            lock = result.snapshot.lock(environment)
            if lock is not None and lock.pr == pr and not lock.expired(now or utc_now()):
                return lock  # a replay of an acquisition that still holds
            # the same run asks again after the lock was released or expired: a new acquisition
            self.transact(fn, replace(meta, idempotent=False))
        return taken[0]

    def release_lock(
        self,
        environment: str,
        *,
        pr: int,
        run_id: str | None = None,
        actor: str | None = None,
        attempt: int = 1,
    ) -> bool:
        """Release ``environment`` if ``pr`` holds it; ``False`` (and no commit) otherwise."""

        def fn(docs: Documents) -> Documents | None:
            lock = docs.lock(environment)
            if lock is None or lock.pr != pr:
                return None
            docs.remove_lock(environment)
            return docs

        result = self.transact(
            fn,
            Transition(
                "unlock",
                f"release {environment} held by PR #{pr}",
                environment=environment,
                pr=pr,
                run_id=run_id,
                actor=actor,
                attempt=attempt,
            ),
        )
        return result.applied

    def release_locks_of_pr(
        self, pr: int, *, run_id: str | None = None, actor: str | None = None, attempt: int = 1
    ) -> list[str]:
        """Release every lock ``pr`` holds (the PR closed): one commit, returns the released environments."""
        released: list[str] = []

        def fn(docs: Documents) -> Documents | None:
            released[:] = sorted(env for env, lock in docs.locks().items() if lock.pr == pr)
            for env in released:
                docs.remove_lock(env)
            return docs if released else None

        result = self.transact(
            fn,
            Transition(
                "release-locks",
                f"release locks of closed PR #{pr}",
                pr=pr,
                run_id=run_id,
                actor=actor,
                attempt=attempt,
            ),
        )
        return released if result.applied else []

    def break_lock(
        self, environment: str, *, actor: str, run_id: str | None = None, attempt: int = 1
    ) -> Lock | None:
        """A person breaks the lock of ``environment``; recorded with who did it. Returns the broken lock."""
        broken: list[Lock] = []

        def fn(docs: Documents) -> Documents | None:
            lock = docs.lock(environment)
            broken[:] = [lock] if lock is not None else []
            if lock is None:
                return None
            docs.remove_lock(environment)
            return docs

        result = self.transact(
            fn,
            Transition(
                "break-lock",
                f"{actor} broke the lock of {environment}",
                environment=environment,
                pr=None,
                run_id=run_id,
                actor=actor,
                attempt=attempt,
            ),
        )
        return broken[0] if result.applied and broken else None


def dumps_document(doc: Mapping[str, Any]) -> bytes:
    """The one canonical serialisation (sorted keys, two-space indent, trailing newline): stable diffs."""
    return (json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")
