"""A transition: why a transaction happens, written as a commit message (a summary line and ``Squals-*``
trailers), and read back from the log as a :class:`HistoryEntry`.

The message is the audit trail and carries the idempotency key, so writing and reading it live together.
"""

from __future__ import annotations

import re
from dataclasses import KW_ONLY, dataclass
from datetime import datetime

from squals_action.state.clock import format_time
from squals_action.state.errors import StateError
from squals_action.state.layout import JsonObject

_EVENT_RE = re.compile(r"^[a-z][a-z0-9-]{0,49}$")


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
    _: KW_ONLY
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


@dataclass(frozen=True, kw_only=True)
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


def parse_message(commit: str, time: datetime, message: str) -> HistoryEntry | None:
    """The :class:`HistoryEntry` of a commit whose message :meth:`Transition.message` wrote; ``None`` for
    a commit without a ``Squals-Event`` trailer (one made by hand)."""
    lines = message.strip("\n").splitlines()
    trailers: dict[str, str] = {}
    for line in reversed(lines):
        if not line.strip():
            break
        name, sep, value = line.partition(": ")
        if sep and name.startswith("Squals-"):
            trailers.setdefault(name, value.strip())
    event = trailers.get("Squals-Event")
    if event is None:
        return None

    def number(name: str) -> int | None:
        value = trailers.get(name)
        return int(value) if value is not None and value.isdigit() else None

    return HistoryEntry(
        commit=commit,
        time=time,
        event=event,
        summary=lines[0] if lines else "",
        environment=trailers.get("Squals-Environment"),
        pr=number("Squals-PR"),
        run_id=trailers.get("Squals-Run"),
        attempt=number("Squals-Attempt"),
        actor=trailers.get("Squals-Actor"),
        idempotency_key=trailers.get("Squals-Idempotency-Key"),
    )
