"""Typed views over the documents of one commit: the immutable :class:`Snapshot` a read returns and the
mutable :class:`Documents` working copy a transaction function changes.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from squals_action.state.clock import utc_now
from squals_action.state.documents import EnvironmentState, ExperimentState
from squals_action.state.errors import StateError
from squals_action.state.layout import (
    ENVIRONMENTS_DIR,
    EXPERIMENTS_DIR,
    LOCKS_DIR,
    JsonObject,
    check_name,
    check_path,
)
from squals_action.state.locks import Holder, Lock, refusal

_Doc = TypeVar("_Doc")


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

    def require_lock(
        self, environment: str, pr: int, now: datetime | None = None, holder: Holder | None = None
    ) -> None:
        """Raise :class:`~squals_action.state.locks.LockedError` when another run holds a live lock on
        ``environment`` (another PR's, or with ``holder`` given, another run of the same PR).

        Call it inside a transaction function to make a change conditional on the lock in the same commit.
        """
        lock = self.lock(environment)
        if lock is None or lock.expired(now or utc_now()):
            return
        if lock.pr != pr or not lock.held_by(holder):
            raise refusal(lock, pr)

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
