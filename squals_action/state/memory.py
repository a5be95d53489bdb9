"""An in-process state store with the git store's semantics, for tests of the concerns that call the store.

Same transactions, idempotency, locks, schema checks and history, without git: a lifecycle test can run a
hundred transitions in milliseconds. Thread-safe; not shared between processes.
"""

from __future__ import annotations

import hashlib
import threading
from datetime import datetime

from squals_action.state.archive import archive_path, to_archive
from squals_action.state.clock import utc_now
from squals_action.state.interface import DEFAULT_BRANCH, StateStore, TransactionFn, TransactionResult
from squals_action.state.layout import JsonObject
from squals_action.state.transitions import HistoryEntry, Transition
from squals_action.state.validation import prepare_documents
from squals_action.state.view import Snapshot


class MemoryStateStore(StateStore):
    """Documents and a list of commits in memory; ``commit`` ids are content hashes like git's."""

    def __init__(self, branch: str = DEFAULT_BRANCH) -> None:
        self.branch = branch
        self._lock = threading.Lock()
        self._snapshot = Snapshot(commit=None, documents={})
        self._history: list[HistoryEntry] = []
        self._keys: set[str] = set()
        #: retired documents that left the live tree, by their path below ``archive/``
        self.archive: dict[str, JsonObject] = {}

    def read(self) -> Snapshot:
        with self._lock:
            return self._snapshot

    def transact(self, fn: TransactionFn, meta: Transition) -> TransactionResult:
        with self._lock:
            key = meta.idempotency_key
            if key is not None and key in self._keys:
                return TransactionResult(
                    commit=self._snapshot.commit,
                    applied=False,
                    replayed=True,
                    attempts=1,
                    snapshot=self._snapshot,
                )
            result = fn(self._snapshot.working_copy())
            if result is None:
                return TransactionResult(
                    commit=self._snapshot.commit,
                    applied=False,
                    replayed=False,
                    attempts=1,
                    snapshot=self._snapshot,
                )
            docs = prepare_documents(result, self._snapshot.documents)
            now = utc_now()
            for path in to_archive(docs):  # as the git store does: retired documents leave the live tree
                self.archive[archive_path(path, now)] = docs.pop(path)
            digest = hashlib.sha1(  # noqa: S324 -- an identifier like git's, not security
                f"{self._snapshot.commit}\n{meta.message()}\n{now.isoformat()}\n{len(self._history)}".encode()
            ).hexdigest()
            self._snapshot = Snapshot(commit=digest, documents=docs)
            if key is not None:
                self._keys.add(key)
            self._history.insert(
                0,
                HistoryEntry(
                    commit=digest,
                    time=now,
                    event=meta.event,
                    summary=meta.message().splitlines()[0],
                    environment=meta.environment,
                    pr=meta.pr,
                    run_id=meta.run_id,
                    attempt=meta.attempt if meta.run_id is not None else None,
                    actor=meta.actor,
                    idempotency_key=key,
                ),
            )
            return TransactionResult(
                commit=digest, applied=True, replayed=False, attempts=1, snapshot=self._snapshot
            )

    def history(
        self, environment: str | None = None, limit: int | None = None, since: datetime | None = None
    ) -> list[HistoryEntry]:
        with self._lock:
            entries = [
                e
                for e in self._history
                if environment in (None, e.environment) and (since is None or e.time >= since)
            ]
        return entries[:limit] if limit is not None else entries
