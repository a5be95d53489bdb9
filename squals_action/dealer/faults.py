"""Faults the Dealer injects into one upstream's requests, as Envoy's fault filter does.

``latency`` delays a share of the upstream's requests by a fixed time before they are forwarded (the delay
counts in the upstream's latency, as a user sees it); ``abort`` answers a share of them itself (503 by
default) without forwarding them, counted as the upstream's server errors. Each request draws its own
chance, so a share is a proportion of requests, not of units. The chaos tests of a promotion
(``rollout.chaos``) set faults on BLUE through the admin API (``PUT /faults``) and clear them when the drill
ends; with none set the proxy pays one attribute test per request.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from squals_action.dealer.interface import DealerError

#: The longest delay a fault may add (a drill must end; the Dealer's read timeout is 60 s).
MAX_DELAY_MS = 60_000.0


@dataclass(frozen=True)
class Fault:
    """What is done to one upstream's requests: shares are fractions 0..1 of its requests."""

    delay_ms: float = 0.0
    delay_share: float = 0.0
    abort_status: int = 503
    abort_share: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "delay": {"ms": self.delay_ms, "share": self.delay_share},
            "abort": {"status": self.abort_status, "share": self.abort_share},
        }

    @classmethod
    def from_json(cls, name: str, raw: Any) -> Fault:
        """A fault from ``{"delay": {"ms", "share"}, "abort": {"status", "share"}}`` (either part may be
        missing); anything else is a one-line :class:`DealerError` naming the upstream and the field."""
        if not isinstance(raw, Mapping):
            raise DealerError(f"faults.{name}: expected an object with delay and/or abort")
        unknown = set(raw) - {"delay", "abort"}
        if unknown:
            raise DealerError(f"faults.{name}: unknown part {sorted(unknown)[0]!r} (expected delay, abort)")
        delay, abort = raw.get("delay") or {}, raw.get("abort") or {}
        if not isinstance(delay, Mapping) or not isinstance(abort, Mapping):
            raise DealerError(f"faults.{name}: delay and abort must be objects")
        fault = cls(
            delay_ms=_number(delay.get("ms", 0.0), f"faults.{name}.delay.ms", 0.0, MAX_DELAY_MS),
            delay_share=_number(delay.get("share", 0.0), f"faults.{name}.delay.share", 0.0, 1.0),
            abort_status=int(_number(abort.get("status", 503), f"faults.{name}.abort.status", 400, 599)),
            abort_share=_number(abort.get("share", 0.0), f"faults.{name}.abort.share", 0.0, 1.0),
        )
        return fault


def _number(value: Any, where: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise DealerError(f"{where}: expected a number from {low:g} to {high:g}, not {value!r}")
    if not low <= value <= high:
        raise DealerError(f"{where}: expected a number from {low:g} to {high:g}, not {value:g}")
    return float(value)


class Faults:
    """The faults in force by upstream name, and how many requests each kind touched (since set)."""

    def __init__(self) -> None:
        self.by_upstream: dict[str, Fault] = {}
        self.injected: dict[str, dict[str, int]] = {}
        #: Any fault set at all: what the proxy tests per request.
        self.active = False

    def replace(self, raw: Any) -> None:
        """Put exactly these faults in force (``{}`` clears them), all checked before any is applied."""
        if not isinstance(raw, Mapping):
            raise DealerError('expected {"faults": {upstream: {"delay": {...}, "abort": {...}}}}')
        parsed = {str(name): Fault.from_json(str(name), value) for name, value in raw.items()}
        self.by_upstream = parsed
        self.injected = {name: {"requests": 0, "delayed": 0, "aborted": 0} for name in parsed}
        self.active = bool(parsed)

    def to_json(self) -> dict[str, Any]:
        return {
            "faults": {name: fault.to_json() for name, fault in self.by_upstream.items()},
            "injected": {name: dict(counts) for name, counts in self.injected.items()},
        }

    async def inject(self, name: str) -> int | None:
        """Apply ``name``'s fault to one request: wait out a delay, or return the status to answer instead
        of forwarding (``None``: forward it)."""
        fault = self.by_upstream.get(name)
        if fault is None:
            return None
        counts = self.injected[name]
        counts["requests"] += 1
        if fault.abort_share and random.random() < fault.abort_share:
            counts["aborted"] += 1
            return fault.abort_status
        if fault.delay_share and random.random() < fault.delay_share:
            counts["delayed"] += 1
            await asyncio.sleep(fault.delay_ms / 1000.0)
        return None
