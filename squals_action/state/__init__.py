"""Git-native state: JSON documents on the branch ``squals/state``, one commit per transition.

Import the API from here; :func:`open_store` picks the implementation so callers never import git themselves.
See :mod:`squals_action.state.interface` for the contract (the store's abstract class and the errors).

The branch lives on a remote (``origin`` by default: the CI case, shared by every workflow run) or, in
local-only mode (``remote=None``), in the repository itself: a laptop with no GitHub account. The command
line chooses between them with :func:`choose_remote`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from squals_action.state.clock import format_time, parse_time, utc_now
from squals_action.state.documents import EnvironmentState, ExperimentState
from squals_action.state.errors import (
    AccessDeniedError,
    ContentionError,
    CorruptStateError,
    GitCommandError,
    PushRejectedError,
    RemoteUnreachableError,
    StateError,
    UnrelatedHistoryError,
)
from squals_action.state.git_repo import list_remotes
from squals_action.state.git_store import GitStateStore
from squals_action.state.interface import DEFAULT_BRANCH, DEFAULT_REMOTE, StateStore, TransactionResult
from squals_action.state.layout import SCHEMA_VERSION
from squals_action.state.locks import BusyError, Holder, Lock, LockedError, StaleLockError
from squals_action.state.memory import MemoryStateStore
from squals_action.state.retry import RetryPolicy
from squals_action.state.transitions import HistoryEntry, Transition
from squals_action.state.view import Documents, Snapshot

__all__ = [
    "DEFAULT_BRANCH",
    "DEFAULT_REMOTE",
    "SCHEMA_VERSION",
    "AccessDeniedError",
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
    "RemoteUnreachableError",
    "RetryPolicy",
    "Snapshot",
    "StaleLockError",
    "StateError",
    "StateStore",
    "TransactionResult",
    "Transition",
    "UnrelatedHistoryError",
    "choose_remote",
    "format_time",
    "open_memory_store",
    "open_store",
    "parse_time",
    "utc_now",
]


def open_store(
    repo_path: Path,
    *,
    remote: str | None = DEFAULT_REMOTE,
    branch: str = DEFAULT_BRANCH,
    retry: RetryPolicy | None = None,
    fetch_depth: int | None = None,
    timeout: float = 60.0,
    git_env: Mapping[str, str] | None = None,
) -> StateStore:
    """The git store of the repository at ``repo_path``: ``remote``'s ``branch``, or its own.

    ``remote`` names the remote that holds the branch; ``None`` (or ``""``) is local-only mode: the branch is
    ``refs/heads/<branch>`` of this repository, moved with ``git update-ref <branch> <new> <old>`` and never
    pushed anywhere. Either way it never touches the working tree, index or HEAD of that repository: it only
    adds objects, the private ref ``refs/squals/<remote>/<branch>`` (local-only:
    ``refs/squals-local/<branch>``) and, local-only, the state branch itself. ``fetch_depth`` limits the
    first fetch of the state branch (history is then only as deep); ``timeout`` bounds every git call, in
    seconds; ``git_env`` is added to the environment of every git call (the credentials of fetch and push,
    :func:`squals_action.gitcmd.token_header_env`, kept out of the repository's config).
    """
    return GitStateStore(
        Path(repo_path),
        remote=remote or None,
        branch=branch,
        retry=retry or RetryPolicy(),
        fetch_depth=fetch_depth,
        timeout=timeout,
        git_env=git_env,
    )


def choose_remote(
    repo_path: Path, remote: str | None = DEFAULT_REMOTE, *, timeout: float = 30.0
) -> str | None:
    """The remote to keep the state on, as the command line decides it; ``None``: local-only mode.

    * ``None`` or ``""`` (``--local-state``, ``--remote ''``): local-only, whatever remotes there are.
    * a remote the repository has: that remote.
    * a repository with no remote at all (a project only on this laptop): local-only.
    * a repository with remotes, none of them ``remote``: :class:`StateError` naming them -- a typo must not
      quietly split the state between a remote and this one clone.
    """
    if not remote:
        return None
    remotes = list_remotes(Path(repo_path), timeout=timeout)
    if remote in remotes or not remotes:
        return remote if remote in remotes else None
    raise StateError(
        f"the repository at {repo_path} has no remote {remote!r} (it has: {', '.join(remotes)}); pass "
        f"--remote NAME, or --local-state to keep the state on its local branch"
    )


def open_memory_store() -> StateStore:
    """An in-process store that behaves the same (transactions, idempotency, locks): for others' tests."""
    return MemoryStateStore()
