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
:mod:`squals_action.state.memory` (an in-process twin for other concerns' tests). This module is the door:
the store's abstract class with its lock policy, and the errors and names callers use, re-exported from the
modules that hold them (documents, locks, view, transitions, clock, errors).
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from squals_action.state.clock import utc_now
from squals_action.state.documents import EnvironmentState, ExperimentState
from squals_action.state.errors import (
    ContentionError,
    CorruptStateError,
    GitCommandError,
    PushRejectedError,
    StateError,
    UnrelatedHistoryError,
)
from squals_action.state.layout import check_name
from squals_action.state.locks import BusyError, Holder, Lock, LockedError, StaleLockError
from squals_action.state.transitions import HistoryEntry, Transition
from squals_action.state.view import Documents, Snapshot

__all__ = [
    "DEFAULT_BRANCH",
    "DEFAULT_REMOTE",
    "BusyError",
    "ContentionError",
    "CorruptStateError",
    "Documents",
    "EnvironmentState",
    "ExperimentState",
    "GitCommandError",
    "HistoryEntry",
    "Holder",
    "Lock",
    "LockedError",
    "PushRejectedError",
    "Snapshot",
    "StaleLockError",
    "StateError",
    "StateStore",
    "TransactionFn",
    "TransactionResult",
    "Transition",
    "UnrelatedHistoryError",
    "check_name",
    "utc_now",
]

#: The branch that holds the state unless the caller names another.
DEFAULT_BRANCH = "squals/state"
#: The remote that holds the state branch unless the caller names another, or none (local-only mode).
DEFAULT_REMOTE = "origin"


@dataclass(frozen=True, kw_only=True)
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
    def history(
        self, environment: str | None = None, limit: int | None = None, since: datetime | None = None
    ) -> list[HistoryEntry]:
        """Recorded transitions, newest first: only those of ``environment`` (archived or not) if given, at
        most ``limit``, none recorded before ``since``; reads only what it returns."""

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
        holder: Holder | None = None,
        operation: str | None = None,
        wait: float = 0.0,
    ) -> Lock:
        """Take (or renew) the lock of ``environment`` for ``pr``; ``ttl`` seconds, ``None`` for no expiry.

        With a ``holder`` the lock is that run's: another run of the same PR is refused too
        (:class:`BusyError`), as another PR is (:class:`LockedError`), and a holder that ran on this machine
        and is gone makes it a :class:`StaleLockError` naming the ``squals unlock`` command. A live lock is
        waited for up to ``wait`` seconds (polled every second), a stale one never. An expired lock is taken
        over, and so is the lock of an earlier attempt of the same workflow run (GitHub re-runs only a run
        that ended). Renewing keeps the original ``acquired_at``.
        """
        check_name("environment", environment)
        taken: list[Lock] = []

        def fn(docs: Documents) -> Documents:
            at = now or utc_now()
            current = docs.lock(environment)
            same_run = current is not None and (current.pr, current.run_id) == (pr, run_id)
            if not (same_run and run_id is not None):  # a re-run of the same workflow run takes it over
                docs.require_lock(environment, pr, at, holder)
            renewing = current is not None and not current.expired(at) and current.pr == pr
            since = current.acquired_at if current is not None and renewing else at
            lock = Lock(
                environment=environment,
                pr=pr,
                acquired_at=since,
                expires_at=at + timedelta(seconds=ttl) if ttl is not None else None,
                run_id=run_id,
                actor=actor,
                holder=holder,
                operation=operation,
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
        deadline = time.monotonic() + wait
        while True:
            try:
                result = self.transact(fn, meta)
                break
            except StaleLockError:
                raise
            except LockedError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(max(0.0, min(1.0, deadline - time.monotonic())))
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
        holder: Holder | None = None,
    ) -> bool:
        """Release ``environment`` if ``pr`` (with ``holder``: that run) holds it; ``False`` (and no commit)
        otherwise."""

        def fn(docs: Documents) -> Documents | None:
            lock = docs.lock(environment)
            if lock is None or lock.pr != pr or not lock.held_by(holder):
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
