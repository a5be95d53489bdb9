"""Per-unit state in flat arrays: no Python object per unit, and the statistics kept as running sums.

A unit is its 64-bit key (a hash of its cookie or header). Unit ``u`` lives at row ``u`` of fixed-type arrays
(key 8 bytes, variant 1, requests 4, first event 4) and is found through an open-addressing table of row
numbers (linear probing on the key's low bits, kept at most half full). Each (unit, event kind) the unit sent
is one row of a second set of arrays (unit, kind, count, sum of values, next row of the same unit: 22 bytes),
chained from the unit, so a unit's events are found without a second table. The arrays are allocated at
their maximum size up front: the operating system backs a page only once it is written, so memory follows
the units actually seen and nothing is ever copied to grow. Only the slot table grows: a thread builds the
doubled table (vectorised) while the event loop keeps inserting into the old one, and the loop then adds
the few units that arrived meanwhile and swaps.

Per variant the store keeps what the statistics need as running sums, updated in O(1) on every change:
units and the sum and sum of squares of each unit's requests, and per event kind the units that sent it,
the sums and sums of squares of each unit's count and value, and the cross products count x value,
count x requests and value x requests. Means and ratios over units (delta method) come straight from them.
A unit keeps the variant that first served it (intention to treat).
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import numpy.typing as npt

from squals_action.dealer.columns import Columns
from squals_action.dealer.interface import DealerError

Array = npt.NDArray[Any]

#: The running sums per (variant, event kind), in this order.
EVENT_SUMS = ("units", "count", "count_sq", "value", "value_sq", "count_value", "count_acts", "value_acts")
#: Bytes per unit row (key, variant, requests, first event) and event row (unit, kind, count, value, next).
UNIT_ROW_BYTES = 8 + 1 + 4 + 4
EVENT_ROW_BYTES = 4 + 2 + 4 + 8 + 4
_MIN_SLOTS = 1024


class StoreFull(DealerError):
    """The store holds its maximum of units or event rows (``max_units`` in the Dealer's config)."""


def place(slots: memoryview, mask: int, key: int, row: int) -> None:
    """Put ``row`` in the first free slot from the key's home slot on (linear probing)."""
    i = key & mask
    while slots[i]:
        i = (i + 1) & mask
    slots[i] = row + 1


def build_slots(keys: Array, capacity: int) -> Array:
    """The slot table (row + 1 per slot, 0 free) for ``keys`` with linear probing, built vectorised.

    Inserting the keys in the order of their home slots puts the i-th at ``max(home_i, slot_{i-1} + 1)``,
    a running maximum (the table holds the same slots whatever the insertion order); the few pushed past the
    end wrap around to the first free slots from 0, one by one.
    """
    mask = capacity - 1
    home = (keys & np.uint64(mask)).astype(np.int64)
    order = np.argsort(home, kind="stable")
    step = np.arange(len(order), dtype=np.int64)
    at = np.maximum.accumulate(home[order] - step) + step if len(order) else step
    slots = np.zeros(capacity, np.int32)
    inside = at < capacity
    slots[at[inside]] = order[inside] + 1
    view = slots.data
    for row in order[~inside]:
        place(view, mask, int(keys[row]), int(row))
    return slots


def _slots_for(units: int) -> int:
    """A power of two keeping the table at most half full."""
    return max(_MIN_SLOTS, 1 << (2 * units).bit_length())


class UnitStore:
    """Units, their variant, requests and event counters; touched only from the event loop."""

    def __init__(self, max_units: int, max_events: int) -> None:
        self.max_units, self.max_events = max_units, max_events
        self.keys = np.zeros(max_units, np.uint64)
        self.var = np.zeros(max_units, np.uint8)
        self.acts = np.zeros(max_units, np.uint32)
        self.first = np.zeros(max_units, np.int32)  # event row + 1 (0: none)
        self.e_unit = np.zeros(max_events, np.int32)
        self.e_kind = np.zeros(max_events, np.uint16)
        self.e_count = np.zeros(max_events, np.uint32)
        self.e_value = np.zeros(max_events, np.float64)
        self.e_next = np.zeros(max_events, np.int32)  # event row + 1 (0: last)
        # memoryviews: item access from Python is several times cheaper than on numpy arrays
        self._k, self._v, self._a, self._f = (x.data for x in (self.keys, self.var, self.acts, self.first))
        self._eu, self._ek, self._ec, self._en = (
            x.data for x in (self.e_unit, self.e_kind, self.e_count, self.e_next)
        )
        self._ex: Any = self.e_value.data  # floats: typeshed's memoryview only takes ints
        self.units = 0
        self.events = 0
        self._set_slots(np.zeros(_MIN_SLOTS, np.int32))
        #: per variant: [units, sum of requests, sum of squared requests]
        self.per_variant: list[list[float]] = []
        #: per (variant, kind): the EVENT_SUMS
        self.per_event: dict[tuple[int, int], list[float]] = {}
        self._growing: Future[Array] | None = None
        self._grown_from = 0
        self._pool: ThreadPoolExecutor | None = None

    def _set_slots(self, slots: Array) -> None:
        self.slots = slots
        self._s = slots.data
        self._mask = len(slots) - 1

    def nbytes(self) -> int:
        """Bytes the store uses: rows in use and the slot table."""
        return self.units * UNIT_ROW_BYTES + self.events * EVENT_ROW_BYTES + self.slots.nbytes

    # -- units ---------------------------------------------------------------------------------------------

    def find(self, key: int) -> int:
        """The unit's row, -1 when unknown."""
        slots, keys, mask = self._s, self._k, self._mask
        i = key & mask
        while True:
            row = slots[i]
            if not row:
                return -1
            if keys[row - 1] == key:
                return int(row - 1)
            i = (i + 1) & mask

    def add(self, key: int, variant: int) -> int:
        """A new unit (``find`` said -1) in ``variant``; returns its row."""
        row = self.units
        if row >= self.max_units:
            raise StoreFull(f"the Dealer holds its maximum of {self.max_units} units (max_units)")
        self._k[row] = key
        self._v[row] = variant
        self.units = row + 1
        place(self._s, self._mask, key, row)
        while len(self.per_variant) <= variant:
            self.per_variant.append([0.0, 0.0, 0.0])
        self.per_variant[variant][0] += 1
        self._maybe_grow()
        return row

    def _maybe_grow(self) -> None:
        growing = self._growing
        if growing is None:
            if 2 * self.units > len(self.slots):
                self._pool = self._pool or ThreadPoolExecutor(1, thread_name_prefix="squals-units")
                self._grown_from = self.units
                self._growing = self._pool.submit(build_slots, self.keys[: self.units], 2 * len(self.slots))
        elif growing.done() or 8 * self.units > 7 * len(self.slots):
            slots = growing.result()  # waits only if the old table is 7/8 full before the new one is ready
            view, mask = slots.data, len(slots) - 1
            for row in range(self._grown_from, self.units):
                place(view, mask, self._k[row], row)
            self._set_slots(slots)
            self._growing = None

    def activate(self, row: int) -> None:
        """One more request of this unit: its requests, their squares and its events' cross products."""
        a = self._a[row]
        self._a[row] = a + 1
        variant = self._v[row]
        sums = self.per_variant[variant]
        sums[1] += 1
        sums[2] += 2 * a + 1
        e = self._f[row]
        while e:
            e -= 1
            kind_sums = self.per_event[(variant, self._ek[e])]
            kind_sums[6] += self._ec[e]
            kind_sums[7] += self._ex[e]
            e = self._en[e]

    def event(self, row: int, kind: int, count: int, value: float, cap: int) -> int:
        """Count up to ``count`` events (each worth ``value``) of ``kind`` for the unit, never past ``cap``
        per unit; returns how many were counted (0 once the unit reached the cap)."""
        e = self._f[row]
        while e and self._ek[e - 1] != kind:
            e = self._en[e - 1]
        c, x = (self._ec[e - 1], self._ex[e - 1]) if e else (0, 0.0)
        take = min(count, cap - c)
        if take <= 0:
            return 0
        variant = self._v[row]
        sums = self.per_event.get((variant, kind))
        if sums is None:
            sums = self.per_event[(variant, kind)] = [0.0] * len(EVENT_SUMS)
        if not e:
            e = self.events + 1
            if e > self.max_events:
                raise StoreFull(f"the Dealer holds its maximum of {self.max_events} unit events (max_units)")
            self.events = e
            self._eu[e - 1], self._ek[e - 1], self._en[e - 1] = row, kind, self._f[row]
            self._f[row] = e
            sums[0] += 1
        c2, x2, a = c + take, x + take * value, self._a[row]
        self._ec[e - 1], self._ex[e - 1] = c2, x2
        sums[1] += take
        sums[2] += c2 * c2 - c * c
        sums[3] += x2 - x
        sums[4] += x2 * x2 - x * x
        sums[5] += c2 * x2 - c * x
        sums[6] += take * a
        sums[7] += (x2 - x) * a
        return take

    # -- columns -------------------------------------------------------------------------------------------

    def to_columns(self, variants: list[str], kinds: list[str]) -> Columns:
        """A copy of the per-unit rows as columns (the per-variant counters are the caller's)."""
        n, m = self.units, self.events
        out = Columns.empty(variants, kinds)
        out.unit_key = self.keys[:n].copy()
        out.unit_var = self.var[:n].copy()
        out.unit_acts = self.acts[:n].astype(np.int64)
        out.ev_key = self.keys[self.e_unit[:m]]
        out.ev_kind = self.e_kind[:m].astype(np.int64)
        out.ev_count = self.e_count[:m].astype(np.int64)
        out.ev_value = self.e_value[:m].copy()
        return out

    def load(self, columns: Columns) -> None:
        """Fill an empty store from columns (unique unit keys, as :func:`columns.merge` makes them)."""
        n, m = len(columns.unit_key), len(columns.ev_key)
        if n > self.max_units or m > self.max_events:
            raise StoreFull(f"{n} units and {m} unit events exceed max_units {self.max_units}")
        self.keys[:n], self.var[:n] = columns.unit_key, columns.unit_var
        self.acts[:n] = np.minimum(columns.unit_acts, np.iinfo(np.uint32).max)
        self.units, self.events = n, m
        self._set_slots(build_slots(self.keys[:n], _slots_for(n)))
        order = np.argsort(columns.unit_key, kind="stable")  # merged keys come sorted: linear
        rows = order[np.searchsorted(columns.unit_key[order], columns.ev_key)]
        self.e_unit[:m], self.e_kind[:m] = rows, columns.ev_kind
        self.e_count[:m], self.e_value[:m] = columns.ev_count, columns.ev_value
        # chain each unit's events: every row points at the previous row of the same unit
        self.first[:n] = 0
        self.e_next[:m] = 0
        by_unit = np.argsort(rows, kind="stable")
        same = np.zeros(m, bool)
        same[1:] = rows[by_unit[1:]] == rows[by_unit[:-1]]
        self.e_next[by_unit[1:][same[1:]]] = by_unit[:-1][same[1:]] + 1
        last = np.ones(m, bool)
        last[:-1] = ~same[1:]
        self.first[rows[by_unit[last]]] = by_unit[last] + 1
        self._sums_from_rows(len(columns.variants), len(columns.kinds))

    def _sums_from_rows(self, variants: int, kinds: int) -> None:
        n, m = self.units, self.events
        var, acts = self.var[:n].astype(np.int64), self.acts[:n].astype(np.float64)
        per_var = [np.bincount(var, weights=w, minlength=variants) for w in (None, acts, acts * acts)]
        self.per_variant = [[float(x[v]) for x in per_var] for v in range(variants)]
        unit = self.e_unit[:m]
        c, x, a = self.e_count[:m].astype(np.float64), self.e_value[:m], acts[unit]
        group = var[unit] * max(kinds, 1) + self.e_kind[:m].astype(np.int64)
        weights = (None, c, c * c, x, x * x, c * x, c * a, x * a)
        sums = [np.bincount(group, weights=w, minlength=variants * max(kinds, 1)) for w in weights]
        self.per_event = {
            (int(g) // max(kinds, 1), int(g) % max(kinds, 1)): [float(s[g]) for s in sums]
            for g in np.flatnonzero(sums[0])
        }

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
