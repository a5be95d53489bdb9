"""Time as the state documents hold it: timezone-aware UTC to the second, written ISO 8601 with a ``Z``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


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


def parse_optional_time(value: Any) -> datetime | None:
    """An optional time field of a document: parsed when it is a string, ``None`` otherwise."""
    return parse_time(value) if isinstance(value, str) else None
