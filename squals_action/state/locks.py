"""The lock document -- which pull request holds an environment, like Atlantis' plan locks -- and the
refusal a live lock of another pull request causes.

How a lock is taken, renewed, released and broken is the store's policy:
:class:`~squals_action.state.interface.StateStore`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from squals_action.state.clock import format_time, parse_optional_time, parse_time
from squals_action.state.errors import StateError
from squals_action.state.layout import LOCKS_DIR, SCHEMA_VERSION, JsonObject


@dataclass(frozen=True, kw_only=True)
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
            expires_at=parse_optional_time(doc.get("expires_at")),
            run_id=doc.get("run_id"),
            actor=doc.get("actor"),
        )


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
