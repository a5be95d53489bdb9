"""Git-native state: JSON documents on the branch ``squals/state``, one commit per transition.

Import the API from here; :func:`open_store` picks the implementation so callers never import git themselves.
See :mod:`squals_action.state.interface` for the contract.
"""

from __future__ import annotations

from pathlib import Path

from squals_action.state.interface import (
    DEFAULT_BRANCH,
    SCHEMA_VERSION,
    ContentionError,
    CorruptStateError,
    Documents,
    EnvironmentState,
    ExperimentState,
    GitCommandError,
    HistoryEntry,
    Lock,
    LockedError,
    PushRejectedError,
    RetryPolicy,
    Snapshot,
    StateError,
    StateStore,
    TransactionResult,
    Transition,
    UnrelatedHistoryError,
    format_time,
    parse_time,
    utc_now,
)

__all__ = [
    "DEFAULT_BRANCH",
    "SCHEMA_VERSION",
    "ContentionError",
    "CorruptStateError",
    "Documents",
    "EnvironmentState",
    "ExperimentState",
    "GitCommandError",
    "HistoryEntry",
    "Lock",
    "LockedError",
    "PushRejectedError",
    "RetryPolicy",
    "Snapshot",
    "StateError",
    "StateStore",
    "TransactionResult",
    "Transition",
    "UnrelatedHistoryError",
    "format_time",
    "open_memory_store",
    "open_store",
    "parse_time",
    "utc_now",
]


def open_store(
    repo_path: Path,
    *,
    remote: str = "origin",
    branch: str = DEFAULT_BRANCH,
    retry: RetryPolicy | None = None,
    fetch_depth: int | None = None,
    timeout: float = 60.0,
) -> StateStore:
    """The git store of the repository at ``repo_path``, publishing to ``remote``'s ``branch``.

    It never touches the working tree, index or HEAD of that repository: it only adds objects and the private
    ref ``refs/squals/<remote>/<branch>``. ``fetch_depth`` limits the first fetch of the state branch (history
    is then only as deep); ``timeout`` bounds every git call, in seconds.
    """
    from squals_action.state.git_store import GitStateStore

    return GitStateStore(
        Path(repo_path), remote=remote, branch=branch, retry=retry or RetryPolicy(),
        fetch_depth=fetch_depth, timeout=timeout,
    )


def open_memory_store() -> StateStore:
    """An in-process store that behaves the same (transactions, idempotency, locks): for others' tests."""
    from squals_action.state.memory import MemoryStateStore

    return MemoryStateStore()
