"""The git implementation of the state store (being written: the interface in ``interface.py`` is stable)."""

from __future__ import annotations

from pathlib import Path

from squals_action.state.interface import (
    DEFAULT_BRANCH,
    HistoryEntry,
    RetryPolicy,
    Snapshot,
    StateStore,
    TransactionFn,
    TransactionResult,
    Transition,
)


class GitStateStore(StateStore):
    """JSON documents on a git branch, one commit per transition, published by non-forced push."""

    def __init__(
        self,
        repo_path: Path,
        *,
        remote: str = "origin",
        branch: str = DEFAULT_BRANCH,
        retry: RetryPolicy | None = None,
        fetch_depth: int | None = None,
        timeout: float = 60.0,
    ) -> None:
        self.repo_path = repo_path
        self.remote = remote
        self.branch = branch
        self.retry = retry or RetryPolicy()
        self.fetch_depth = fetch_depth
        self.timeout = timeout

    def read(self) -> Snapshot:
        raise NotImplementedError

    def transact(self, fn: TransactionFn, meta: Transition) -> TransactionResult:
        raise NotImplementedError

    def history(self, environment: str | None = None, limit: int | None = None) -> list[HistoryEntry]:
        raise NotImplementedError
