"""Per-variant tallies kept by the Dealer: request counters, bounded-memory latency and per-unit statistics.

Latency goes into a fixed log histogram (:mod:`~squals_action.dealer.latency`). Units and their per-unit
counters live in flat arrays (:mod:`~squals_action.dealer.units`, imported when a book is made: numpy stays
out of the light imports); every change is also a 24-byte journal record (:data:`RECORD`) that
:mod:`~squals_action.dealer.journal` appends and compacts. An event counts once per unit and kind unless
the kind's cap allows more, and only for a unit the Dealer assigned.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import astuple, dataclass, field
from typing import TYPE_CHECKING, Any

from squals_action.dealer.interface import DealerError, EventSums, VariantTally
from squals_action.dealer.latency import LatencyHistogram

if TYPE_CHECKING:
    from squals_action.dealer.columns import Columns

log = logging.getLogger("squals.dealer")

MAX_EVENT_NAMES = 256
#: Journal records, 24 bytes each: op, variant, event kind or latency bucket, count, unit key, value.
RECORD = struct.Struct("<BBHiQd")
OP_UNIT, OP_REQUEST, OP_EVENT, OP_PLAIN, OP_LATENCY, OP_SERVER_ERROR, OP_CONNECTION_ERROR = range(1, 8)
#: Units (and unit events) a Dealer holds at most unless its config says otherwise: the arrays are reserved
#: at this size, memory is used only as they fill.
DEFAULT_MAX_UNITS = 1 << 25
MAX_VARIANTS = 255


def _discard(record: bytes) -> None:
    """The journal of a book nobody persists."""


@dataclass
class VariantCounter:
    """The request-level tally of one variant, only touched from the Dealer's event loop; every change goes
    to the book's journal as it is counted."""

    name: str
    index: int = 0
    journal: Callable[[bytes], None] = _discard
    activations: int = 0
    #: events posted for the variant without a unit (the admin API's ``variant``)
    plain: dict[str, int] = field(default_factory=dict)
    server_errors: int = 0
    connection_errors: int = 0
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)
    in_flight: int = 0
    #: errors already counted for requests still in flight (a trip's answer not done yet)
    in_flight_errors: int = 0

    def add_latency(self, ms: float) -> None:
        self.journal(RECORD.pack(OP_LATENCY, self.index, self.latency.add(ms), 0, 0, 0.0))

    def add_server_error(self) -> None:
        self.server_errors += 1
        self.journal(RECORD.pack(OP_SERVER_ERROR, self.index, 0, 1, 0, 0.0))

    def add_connection_error(self) -> None:
        self.connection_errors += 1
        self.journal(RECORD.pack(OP_CONNECTION_ERROR, self.index, 0, 1, 0, 0.0))


@dataclass(frozen=True)
class Counted:
    """What became of an event for a unit: the unit's variant and how many events were counted (0 once the
    unit reached its cap for that kind)."""

    variant: str
    counted: int


class TallyBook:
    """All variants' counters and every unit's state (:class:`~squals_action.dealer.units.UnitStore`).

    ``caps`` gives an event kind's per-unit cap: a kind not named counts once per unit. ``journal`` receives
    every change as a :data:`RECORD` (the server points it at its journal file); ``names_changed`` is called
    when a variant or event kind gets its index, before any record uses it.
    """

    def __init__(self, caps: Mapping[str, int] | None = None, max_units: int = DEFAULT_MAX_UNITS) -> None:
        from squals_action.dealer.units import UnitStore

        self.variants: dict[str, VariantCounter] = {}
        self._names: list[str] = []  # variant names by index
        self.kinds: list[str] = []
        self._kind_index: dict[str, int] = {}
        self.caps = dict(caps or {})
        self.store = UnitStore(max_units, max_units)
        self._journal: Callable[[bytes], None] = _discard
        self.names_changed: Callable[[], None] = lambda: None

    def names(self) -> dict[str, list[str]]:
        """Variant and event kind names by index, as the journal's records refer to them."""
        return {"variants": list(self._names), "kinds": list(self.kinds)}

    def variant(self, name: str) -> VariantCounter:
        counter = self.variants.get(name)
        if counter is None:
            if len(self.variants) >= MAX_VARIANTS:
                raise DealerError(f"more than {MAX_VARIANTS} variants")
            counter = self.variants[name] = VariantCounter(name, len(self.variants), self._journal)
            self._names.append(name)
            self.names_changed()
        return counter

    @property
    def journal(self) -> Callable[[bytes], None]:
        """Where every change goes as a :data:`RECORD`; the variants' counters write there directly."""
        return self._journal

    @journal.setter
    def journal(self, append: Callable[[bytes], None]) -> None:
        self._journal = append
        for counter in self.variants.values():
            counter.journal = append

    def _kind(self, event: str) -> int:
        kind = self._kind_index.get(event)
        if kind is None:
            if len(self.kinds) >= MAX_EVENT_NAMES:
                raise DealerError(f"more than {MAX_EVENT_NAMES} distinct event names")
            kind = self._kind_index[event] = len(self.kinds)
            self.kinds.append(event)
            self.names_changed()
        return kind

    def arrive(self, key: int, name: str) -> VariantCounter:
        """A request of unit ``key`` served by variant ``name``: counts the unit (the first time, in this
        variant) and its request."""
        counter = self.variants.get(name) or self.variant(name)
        store = self.store
        row = store.find(key)
        if row < 0:
            try:
                row = store.add(key, counter.index)
            except DealerError as exc:  # StoreFull: the unit is served, not tracked
                log.warning("%s: unit not tracked", exc.one_line())
            else:
                self._journal(RECORD.pack(OP_UNIT, counter.index, 0, 0, key, 0.0))
        if row >= 0:
            store.activate(row)
        counter.activations += 1
        self._journal(RECORD.pack(OP_REQUEST, counter.index, 0, 1, key, 0.0))
        return counter

    def unit_variant(self, key: int) -> str | None:
        """The variant the unit first came to, ``None`` for a unit this Dealer never assigned."""
        row = self.store.find(key)
        return None if row < 0 else self._names[self.store.var[row]]

    def event(self, key: int, event: str, count: int = 1, value: float = 0.0) -> Counted | None:
        """Count ``count`` events (each worth ``value``) for the unit, within the kind's per-unit cap;
        ``None`` for a unit this Dealer never assigned (nothing is counted)."""
        row = self.store.find(key)
        if row < 0:
            return None
        kind = self._kind(event)
        variant = int(self.store.var[row])
        counted = self.store.event(row, kind, count, value, self.caps.get(event, 1))
        if counted:
            self._journal(RECORD.pack(OP_EVENT, variant, kind, counted, key, counted * value))
        return Counted(self._names[variant], counted)

    def plain_event(self, variant: str, event: str, count: int) -> None:
        """Events counted for a variant without a unit (they feed totals, never per-unit statistics)."""
        counter = self.variant(variant)
        kind = self._kind(event)
        counter.plain[event] = counter.plain.get(event, 0) + count
        self._journal(RECORD.pack(OP_PLAIN, counter.index, kind, count, 0, 0.0))

    def snapshot(self) -> dict[str, VariantTally]:
        store = self.store
        out: dict[str, VariantTally] = {}
        for name, counter in self.variants.items():
            units, acts, acts_sq = (
                store.per_variant[counter.index] if counter.index < len(store.per_variant) else (0, 0, 0)
            )
            sums = {
                self.kinds[kind]: EventSums(*values)
                for (variant, kind), values in store.per_event.items()
                if variant == counter.index
            }
            events = {kind: int(s.count) for kind, s in sums.items()}
            for kind, count in counter.plain.items():
                events[kind] = events.get(kind, 0) + count
            lat = counter.latency
            out[name] = VariantTally(
                name=name,
                units=int(units),
                activations=counter.activations,
                events=events,
                event_units={kind: int(s.units) for kind, s in sums.items()},
                errors=counter.server_errors + counter.connection_errors,
                server_errors=counter.server_errors,
                connection_errors=counter.connection_errors,
                latency_p50_ms=lat.percentile(50),
                latency_p95_ms=lat.percentile(95),
                latency_p99_ms=lat.percentile(99),
                in_flight=counter.in_flight,
                in_flight_errors=counter.in_flight_errors,
                unit_activations=acts,
                unit_activations_sq=acts_sq,
                event_sums=sums,
                latency_histogram=dict(lat.buckets),
            )
        return out

    def to_columns(self) -> Columns:
        """Everything as columns (a copy): what a snapshot holds and what :func:`merged_tallies` adds up."""
        return self.add_counters(self.store.to_columns(list(self._names), list(self.kinds)))

    def add_counters(self, columns: Columns) -> Columns:
        """Fill the per-variant counters into ``columns`` (the store's rows, copied under these names)."""
        for counter in self.variants.values():
            i = counter.index
            columns.activations[i] = counter.activations
            columns.server_errors[i] = counter.server_errors
            columns.connection_errors[i] = counter.connection_errors
            for bucket, count in counter.latency.buckets.items():
                columns.latency[i, bucket] = count
            for event, count in counter.plain.items():
                columns.plain[i, self._kind_index[event]] = count
        return columns

    @classmethod
    def from_columns(
        cls, columns: Columns, caps: Mapping[str, int] | None = None, max_units: int = DEFAULT_MAX_UNITS
    ) -> TallyBook:
        book = cls(caps, max_units)
        for event in columns.kinds:
            book._kind(event)
        for i, name in enumerate(columns.variants):
            counter = book.variant(name)
            counter.activations = int(columns.activations[i])
            counter.server_errors = int(columns.server_errors[i])
            counter.connection_errors = int(columns.connection_errors[i])
            for bucket in columns.latency[i].nonzero()[0]:
                counter.latency.buckets[int(bucket)] = int(columns.latency[i, bucket])
            counter.latency.count = int(columns.latency[i].sum())
            counter.plain = {
                columns.kinds[k]: int(columns.plain[i, k]) for k in columns.plain[i].nonzero()[0]
            }
        book.store.load(columns)
        return book

    def close(self) -> None:
        self.store.close()


def merged_tallies(parts: Sequence[Columns], caps: Mapping[str, int]) -> dict[str, VariantTally]:
    """Several books' columns (one per worker) as one set of tallies, merged by unit: a unit two books have
    seen counts once, its requests and per-kind events add up (within ``caps``), and every sum of squares and
    cross product is computed again from the merged per-unit values, never added."""
    from squals_action.dealer.columns import merge

    merged = merge(parts, caps)
    book = TallyBook.from_columns(merged, caps, max(len(merged.unit_key), len(merged.ev_key), 1))
    try:
        return book.snapshot()
    finally:
        book.close()


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
            in_flight_errors=int(raw.get("in_flight_errors", 0)),
            unit_activations=float(raw.get("unit_activations", 0.0)),
            unit_activations_sq=float(raw.get("unit_activations_sq", 0.0)),
            event_sums={str(k): EventSums(*map(float, v)) for k, v in raw.get("event_sums", {}).items()},
            latency_histogram={int(k): int(v) for k, v in raw.get("latency_ms_log_histogram", {}).items()},
        )
    return out


def tally_to_json(tally: VariantTally) -> dict[str, Any]:
    """The admin endpoint's JSON form of one tally."""
    return {
        "unit_activations": tally.unit_activations,
        "unit_activations_sq": tally.unit_activations_sq,
        "event_sums": {k: list(astuple(v)) for k, v in tally.event_sums.items()},
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
        "in_flight_errors": tally.in_flight_errors,
        "error_rate": tally.error_rate,
        "latency_ms_log_histogram": {str(k): v for k, v in sorted(tally.latency_histogram.items())},
    }
