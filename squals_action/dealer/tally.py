"""Per-variant tallies kept by the Dealer, with bounded-memory latency and a JSON form that survives restarts.

Latency goes into a fixed log histogram (buckets 1 % wide from 10 us to ~10 min, at most ~1,800 counters) so
percentiles stay exact to about 1 % however long the Dealer runs, and histograms add up across restarts.
Distinct units are kept as 64-bit keys so the count is exact; that set is the one part that grows with
traffic.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from squals_action.dealer.interface import DealerError, VariantTally

_MIN_MS = 0.01
_GROWTH = 1.01
_LOG_GROWTH = math.log(_GROWTH)
_MAX_BUCKET = int(math.log(600_000.0 / _MIN_MS) / _LOG_GROWTH) + 1
MAX_EVENT_NAMES = 256
TALLY_FORMAT = 1


class LatencyHistogram:
    """Counts of latencies in log-spaced buckets; percentiles report each bucket's geometric middle."""

    __slots__ = ("buckets", "count")

    def __init__(self) -> None:
        self.buckets: dict[int, int] = {}
        self.count = 0

    def add(self, ms: float) -> None:
        index = 0 if ms <= _MIN_MS else min(_MAX_BUCKET, int(math.log(ms / _MIN_MS) / _LOG_GROWTH) + 1)
        self.buckets[index] = self.buckets.get(index, 0) + 1
        self.count += 1

    def percentile(self, q: float) -> float | None:
        """The q-th percentile (0 < q <= 100) in ms, ``None`` when empty."""
        if not self.count:
            return None
        rank = max(1, math.ceil(self.count * q / 100.0))
        seen = 0
        for index in sorted(self.buckets):
            seen += self.buckets[index]
            if seen >= rank:
                return _bucket_middle(index)
        return _bucket_middle(max(self.buckets))  # pragma: no cover - rank <= count always hits above

    def to_json(self) -> dict[str, int]:
        return {str(k): v for k, v in sorted(self.buckets.items())}

    @classmethod
    def from_json(cls, data: Any) -> LatencyHistogram:
        hist = cls()
        if not isinstance(data, dict):
            raise ValueError("histogram must be an object")
        for key, value in data.items():
            index, count = int(key), int(value)
            if index < 0 or count < 0:
                raise ValueError("negative histogram entry")
            hist.buckets[min(index, _MAX_BUCKET)] = count
            hist.count += count
        return hist


def _bucket_middle(index: int) -> float:
    if index == 0:
        return _MIN_MS
    low = _MIN_MS * _GROWTH ** (index - 1)
    return round(low * math.sqrt(_GROWTH), 3)


@dataclass
class VariantCounter:
    """The mutable tally of one variant, only touched from the Dealer's event loop."""

    name: str
    units: set[int] = field(default_factory=set)
    activations: int = 0
    events: dict[str, int] = field(default_factory=dict)
    #: event -> the units that sent it at least once (a proportion's converters); posted events without a
    #: unit are counted in ``events`` only.
    event_units: dict[str, set[int]] = field(default_factory=dict)
    server_errors: int = 0
    connection_errors: int = 0
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)
    in_flight: int = 0

    def add_event(self, event: str, count: int = 1, *, unit: int | None = None) -> bool:
        """Count an event (and the unit that sent it); new names beyond MAX_EVENT_NAMES are refused so
        memory stays bounded."""
        if event not in self.events and len(self.events) >= MAX_EVENT_NAMES:
            return False
        self.events[event] = self.events.get(event, 0) + count
        if unit is not None:
            self.event_units.setdefault(event, set()).add(unit)
        return True

    def snapshot(self) -> VariantTally:
        return VariantTally(
            name=self.name,
            units=len(self.units),
            activations=self.activations,
            events=dict(self.events),
            event_units={k: len(v) for k, v in self.event_units.items()},
            errors=self.server_errors + self.connection_errors,
            server_errors=self.server_errors,
            connection_errors=self.connection_errors,
            latency_p50_ms=self.latency.percentile(50),
            latency_p95_ms=self.latency.percentile(95),
            latency_p99_ms=self.latency.percentile(99),
            in_flight=self.in_flight,
            latency_histogram=dict(self.latency.buckets),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "activations": self.activations,
            "events": dict(sorted(self.events.items())),
            "event_units": {k: sorted(v) for k, v in sorted(self.event_units.items())},
            "server_errors": self.server_errors,
            "connection_errors": self.connection_errors,
            "latency_ms_log_histogram": self.latency.to_json(),
            "units": sorted(self.units),
        }

    @classmethod
    def from_json(cls, name: str, data: Any) -> VariantCounter:
        if not isinstance(data, dict):
            raise ValueError(f"variant {name!r} must be an object")
        events = data.get("events", {})
        if not isinstance(events, dict):
            raise ValueError(f"events of {name!r} must be an object")
        return cls(
            name=name,
            units={int(u) for u in data.get("units", [])},
            activations=int(data.get("activations", 0)),
            events={str(k): int(v) for k, v in events.items()},
            event_units={str(k): {int(u) for u in v} for k, v in dict(data.get("event_units", {})).items()},
            server_errors=int(data.get("server_errors", 0)),
            connection_errors=int(data.get("connection_errors", 0)),
            latency=LatencyHistogram.from_json(data.get("latency_ms_log_histogram", {})),
        )


class TallyBook:
    """All variants' counters; variants appear on first use and stay after they stop being routed to."""

    def __init__(self) -> None:
        self.variants: dict[str, VariantCounter] = {}
        self.dirty = False

    def variant(self, name: str) -> VariantCounter:
        counter = self.variants.get(name)
        if counter is None:
            counter = self.variants[name] = VariantCounter(name)
        return counter

    def snapshot(self) -> dict[str, VariantTally]:
        return {name: counter.snapshot() for name, counter in self.variants.items()}

    def to_json(self) -> dict[str, Any]:
        return {
            "format": TALLY_FORMAT,
            "variants": {name: counter.to_json() for name, counter in self.variants.items()},
        }

    @classmethod
    def from_json(cls, data: Any, source: str) -> TallyBook:
        """Rebuild from :meth:`to_json`; a damaged file is an error naming it, never silently zeroed."""
        book = cls()
        try:
            if not isinstance(data, dict) or data.get("format") != TALLY_FORMAT:
                raise ValueError(f"expected an object with format {TALLY_FORMAT}")
            variants = data.get("variants", {})
            if not isinstance(variants, dict):
                raise ValueError("variants must be an object")
            for name, raw in variants.items():
                book.variants[str(name)] = VariantCounter.from_json(str(name), raw)
        except (ValueError, TypeError) as exc:
            raise DealerError(f"{source}: damaged tally file: {exc}") from exc
        return book


def tallies_from_json(data: Mapping[str, Any]) -> dict[str, VariantTally]:
    """Parse the admin endpoint's ``GET /tallies`` answer into frozen tallies."""
    out: dict[str, VariantTally] = {}
    for name, raw in data.items():

        def opt(key: str, raw: Mapping[str, Any] = raw) -> float | None:
            value = raw.get(key)
            return None if value is None else float(value)

        out[name] = VariantTally(
            name=name,
            units=int(raw["units"]),
            activations=int(raw["activations"]),
            events={str(k): int(v) for k, v in raw.get("events", {}).items()},
            event_units={str(k): int(v) for k, v in raw.get("event_units", {}).items()},
            errors=int(raw["errors"]),
            server_errors=int(raw["server_errors"]),
            connection_errors=int(raw["connection_errors"]),
            latency_p50_ms=opt("latency_p50_ms"),
            latency_p95_ms=opt("latency_p95_ms"),
            latency_p99_ms=opt("latency_p99_ms"),
            in_flight=int(raw.get("in_flight", 0)),
            latency_histogram={int(k): int(v) for k, v in raw.get("latency_ms_log_histogram", {}).items()},
        )
    return out


def tally_to_json(tally: VariantTally) -> dict[str, Any]:
    """The admin endpoint's JSON form of one tally."""
    return {
        "units": tally.units,
        "activations": tally.activations,
        "events": dict(tally.events),
        "event_units": dict(tally.event_units),
        "errors": tally.errors,
        "server_errors": tally.server_errors,
        "connection_errors": tally.connection_errors,
        "latency_p50_ms": tally.latency_p50_ms,
        "latency_p95_ms": tally.latency_p95_ms,
        "latency_p99_ms": tally.latency_p99_ms,
        "in_flight": tally.in_flight,
        "error_rate": tally.error_rate,
        "latency_ms_log_histogram": {str(k): v for k, v in sorted(tally.latency_histogram.items())},
    }


def percentiles_since(
    now: Mapping[int, int], base: Mapping[int, int]
) -> tuple[float | None, float | None, float | None]:
    """p50, p95 and p99 (ms) of the requests a histogram counted between two snapshots of it."""
    between = LatencyHistogram()
    for index, count in now.items():
        more = count - base.get(index, 0)
        if more > 0:
            between.buckets[index] = more
            between.count += more
    return between.percentile(50), between.percentile(95), between.percentile(99)
