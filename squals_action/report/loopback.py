"""No loopback address leaves the action's container: in the Docker action, ``127.0.0.1`` is nobody's.

An island or a Dealer on the container's loopback ends with the job, and a link to ``http://127.0.0.1:<port>``
in a PR comment, an action output or a deployment sends people to their own machine. The runner passes every
report through :func:`withhold_loopback` before publishing it anywhere when it runs as the container.
"""

from __future__ import annotations

import re
from dataclasses import fields, is_dataclass, replace
from typing import Any, TypeVar

from squals_action.report.model import Report

T = TypeVar("T")

#: A URL or ``host:port`` on the loopback: 127.0.0.0/8, ``localhost`` (and its subdomains), ``[::1]``; a
#: sentence's closing punctuation is not part of it.
LOOPBACK = re.compile(
    r"(?:\b[a-z][a-z0-9+.-]*://)?"
    r"(?:\blocalhost\b|(?:[a-z0-9-]+\.)+localhost\b|\b127(?:\.\d{1,3}){3}\b|\[::1\]|(?<![\w:])::1\b)"
    r"(?::\d+)?(?:/(?:[^\s)\]<>\"'`|]*[^\s)\]<>\"'`|.,;:!?])?)?",
    re.IGNORECASE,
)
WITHHELD = "(a loopback address, withheld: it ends with the action's container)"


def is_loopback(url: str | None) -> bool:
    """True when ``url`` names the loopback anywhere (a URL, a ``host:port``)."""
    return bool(url) and LOOPBACK.search(url or "") is not None


def withhold_loopback(report: Report) -> Report:
    """``report`` with its URL dropped when it is a loopback one, and every loopback address in its text
    replaced by a sentence saying why it is not shown."""
    cleaned = _clean(report)
    if is_loopback(report.url):
        cleaned = replace(cleaned, url=None)
    return cleaned


def _clean(value: T) -> T:
    if isinstance(value, str):
        return LOOPBACK.sub(WITHHELD, value)  # type: ignore[return-value]
    if isinstance(value, tuple):
        return tuple(_clean(item) for item in value)  # type: ignore[return-value]
    if isinstance(value, dict) or (hasattr(value, "items") and not is_dataclass(value)):
        return {key: _clean(item) for key, item in value.items()}  # type: ignore[return-value]
    if is_dataclass(value) and not isinstance(value, type):
        changes: dict[str, Any] = {f.name: _clean(getattr(value, f.name)) for f in fields(value)}
        return replace(value, **changes)
    return value
