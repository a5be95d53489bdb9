"""The Dealer's tallies as columns: what a snapshot holds, what a journal segment adds, what workers merge.

One row per unit (its 64-bit key, the variant that first served it, its requests) and one row per unit and
event kind that unit sent (the events counted and the sum of their values), plus the small per-variant
counters (requests served, errors, the latency histogram, events posted without a unit). Everything is
indexed by position in ``variants`` and ``kinds``, so :func:`merge` first maps every part onto one list of
names, then groups rows by unit (and by unit and kind) and adds them up: a unit two parts have seen is one
unit whose counters are the sums. Pure numpy, vectorised; it runs in the Dealer's compaction thread and at
start-up, never per request.
"""

from __future__ import annotations

import json
import math
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from squals_action.dealer.interface import DealerError
from squals_action.dealer.latency import MAX_BUCKET

#: The layout of the tallies on disk: the journal's records (``tally.RECORD`` and its ops) and the snapshots'
#: arrays. ``names.json`` and every snapshot carry it (files without it are format 1): a Dealer never reads
#: tallies a newer squals wrote in a layout it does not know, and never writes over them.
FORMAT = 1


def check_format(names: Mapping[str, Any], path: Path) -> None:
    """Refuse tallies written in a layout this squals does not read, in one line naming the file."""
    found = names.get("format", 1)
    if found != FORMAT:
        raise DealerError(
            f"{path}: tallies written in format {found!r} (by another squals); this one reads format "
            f"{FORMAT} and leaves them untouched: run the Dealer of the squals that wrote them"
        )


#: Latency histogram buckets per variant (the tally's log buckets, 1 % wide from 10 us to ~10 min).
BUCKETS = MAX_BUCKET + 1
#: A unit row's variant before a segment's rows are grouped: only its requests are known.
NO_VARIANT = 255
MAX_VARIANTS = 255
MAX_KINDS = 1 << 16

Array = npt.NDArray[Any]


@dataclass
class Columns:
    """All tallies of one Dealer (or of one journal segment, as increments)."""

    variants: list[str]
    kinds: list[str]
    unit_key: Array  # uint64
    unit_var: Array  # uint8, index into variants (NO_VARIANT: not known in this part)
    unit_acts: Array  # int64, requests of the unit
    ev_key: Array  # uint64, the unit
    ev_kind: Array  # int64, index into kinds
    ev_count: Array  # int64, events counted for that unit and kind
    ev_value: Array  # float64, sum of their values
    activations: Array  # int64 [variant]: requests served
    server_errors: Array  # int64 [variant]
    connection_errors: Array  # int64 [variant]
    latency: Array  # int64 [variant, BUCKETS]
    plain: Array  # int64 [variant, kind]: events counted for a variant without a unit

    @classmethod
    def empty(cls, variants: Sequence[str] = (), kinds: Sequence[str] = ()) -> Columns:
        v, k = len(variants), len(kinds)
        return cls(
            variants=list(variants),
            kinds=list(kinds),
            unit_key=np.zeros(0, np.uint64),
            unit_var=np.zeros(0, np.uint8),
            unit_acts=np.zeros(0, np.int64),
            ev_key=np.zeros(0, np.uint64),
            ev_kind=np.zeros(0, np.int64),
            ev_count=np.zeros(0, np.int64),
            ev_value=np.zeros(0, np.float64),
            activations=np.zeros(v, np.int64),
            server_errors=np.zeros(v, np.int64),
            connection_errors=np.zeros(v, np.int64),
            latency=np.zeros((v, BUCKETS), np.int64),
            plain=np.zeros((v, k), np.int64),
        )

    def renamed(self, variants: list[str], kinds: list[str]) -> Columns:
        """The same tallies indexed by ``variants``/``kinds`` (supersets of this part's names)."""
        vmap = np.array([variants.index(n) for n in self.variants] + [NO_VARIANT], np.int64)
        kmap = np.array([kinds.index(n) for n in self.kinds] or [0], np.int64)
        out = Columns.empty(variants, kinds)
        rows = np.array([variants.index(n) for n in self.variants], np.int64)
        cols = np.array([kinds.index(n) for n in self.kinds], np.int64)
        for name in ("activations", "server_errors", "connection_errors"):
            getattr(out, name)[rows] = getattr(self, name)
        out.latency[rows] = self.latency
        out.plain[np.ix_(rows, cols)] = self.plain
        var = self.unit_var.astype(np.int64)
        out.unit_var = vmap[np.where(var == NO_VARIANT, len(self.variants), var)].astype(np.uint8)
        out.unit_key, out.unit_acts = self.unit_key, self.unit_acts
        out.ev_key, out.ev_count, out.ev_value = self.ev_key, self.ev_count, self.ev_value
        out.ev_kind = kmap[self.ev_kind] if len(self.ev_kind) else self.ev_kind
        return out


def _union(names: Sequence[Sequence[str]]) -> list[str]:
    out: list[str] = []
    for part in names:
        out.extend(n for n in part if n not in out)
    return out


def merge(parts: Sequence[Columns], caps: Mapping[str, int] | None = None) -> Columns:
    """One set of tallies from several, grouped by unit: a unit in two parts counts once, with the sum of its
    requests and, per event kind, the sum of its events (clipped to the kind's per-unit cap in ``caps``) and
    of their values. A unit's variant is the one a part knows (the lowest index if parts disagree)."""
    variants = _union([p.variants for p in parts])
    kinds = _union([p.kinds for p in parts])
    if len(variants) > MAX_VARIANTS:
        raise DealerError(f"more than {MAX_VARIANTS} variants in the tallies")
    same = [p.renamed(variants, kinds) for p in parts]
    out = Columns.empty(variants, kinds)
    for name in ("activations", "server_errors", "connection_errors", "latency", "plain"):
        setattr(out, name, sum((getattr(p, name) for p in same), getattr(out, name)))
    keys = np.concatenate([out.unit_key, *(p.unit_key for p in same)])
    var = np.concatenate([out.unit_var, *(p.unit_var for p in same)])
    acts = np.concatenate([out.unit_acts, *(p.unit_acts for p in same)])
    out.unit_key, where = np.unique(keys, return_inverse=True)
    merged_var = np.full(len(out.unit_key), NO_VARIANT, np.uint8)
    np.minimum.at(merged_var, where, var)
    out.unit_acts = np.bincount(where, weights=acts, minlength=len(out.unit_key)).astype(np.int64)
    known = merged_var != NO_VARIANT  # requests of a unit whose first sighting no part holds: cannot happen
    out.unit_key, out.unit_var, out.unit_acts = out.unit_key[known], merged_var[known], out.unit_acts[known]

    ev_key = np.concatenate([p.ev_key for p in same])
    ev_kind = np.concatenate([p.ev_kind for p in same]).astype(np.int64)
    unit_of = np.searchsorted(out.unit_key, ev_key)
    unit_of = np.minimum(unit_of, max(len(out.unit_key) - 1, 0))
    found = (out.unit_key[unit_of] == ev_key) if len(out.unit_key) else np.zeros(len(ev_key), bool)
    pair = unit_of[found].astype(np.int64) * MAX_KINDS + ev_kind[found]
    pairs, at = np.unique(pair, return_inverse=True)
    counts = np.concatenate([p.ev_count for p in same])[found]
    values = np.concatenate([p.ev_value for p in same])[found]
    out.ev_count = np.bincount(at, weights=counts, minlength=len(pairs)).astype(np.int64)
    out.ev_value = np.bincount(at, weights=values, minlength=len(pairs))
    out.ev_key = out.unit_key[pairs // MAX_KINDS] if len(pairs) else np.zeros(0, np.uint64)
    out.ev_kind = pairs % MAX_KINDS
    if caps:
        limit = np.array([caps.get(k, 1) for k in kinds] or [1], np.int64)
        out.ev_count = np.minimum(out.ev_count, limit[out.ev_kind])
    return out


# -- files ---------------------------------------------------------------------------------------------------

_ARRAYS = (
    "unit_key",
    "unit_var",
    "unit_acts",
    "ev_key",
    "ev_kind",
    "ev_count",
    "ev_value",
    "activations",
    "server_errors",
    "connection_errors",
    "latency",
    "plain",
)


def save(columns: Columns, path: Path) -> None:
    """Write a snapshot (numpy's uncompressed ``.npz``) via a temporary file and a rename."""
    tmp = path.with_name(f".{path.name}.tmp")
    names = json.dumps({"format": FORMAT, "variants": columns.variants, "kinds": columns.kinds}).encode()
    with tmp.open("wb") as handle:
        np.savez(
            handle,
            names=np.frombuffer(names, np.uint8),
            **{name: getattr(columns, name) for name in _ARRAYS},
        )
    tmp.replace(path)


def load(path: Path) -> Columns:
    """Read a snapshot; a damaged one is a DealerError naming the file and what is wrong."""
    try:
        with np.load(path, allow_pickle=False) as data:  # array by array: no copy of the whole file
            names = json.loads(bytes(data["names"]).decode())
            check_format(names, path)
            columns = Columns(
                variants=[str(n) for n in names["variants"]],
                kinds=[str(n) for n in names["kinds"]],
                **{name: data[name] for name in _ARRAYS},
            )
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as exc:
        raise DealerError(f"{path}: damaged tally snapshot: {exc}") from exc
    why = problem(columns)
    if why:
        raise DealerError(f"{path}: damaged tally snapshot: {why}")
    return columns


def problem(c: Columns) -> str | None:
    """Why these columns cannot be tallies (shapes, indices, negative or non-finite numbers), or ``None``."""
    v, k, n, e = len(c.variants), len(c.kinds), len(c.unit_key), len(c.ev_key)
    shapes = {
        "unit_var": (n,),
        "unit_acts": (n,),
        "ev_kind": (e,),
        "ev_count": (e,),
        "ev_value": (e,),
        "activations": (v,),
        "server_errors": (v,),
        "connection_errors": (v,),
        "latency": (v, BUCKETS),
        "plain": (v, k),
    }
    for name, shape in shapes.items():
        if getattr(c, name).shape != shape:
            return f"{name} has shape {getattr(c, name).shape}, expected {shape}"
    if n and int(c.unit_var.max()) >= v:
        return "a unit names an unknown variant"
    if e and (int(c.ev_kind.max()) >= k or int(c.ev_kind.min()) < 0):
        return "an event names an unknown kind"
    for name in ("unit_acts", "ev_count", "activations", "server_errors", "connection_errors", "latency"):
        array = getattr(c, name)
        if array.size and int(array.min()) < 0:
            return f"negative {name}"
    if e and not all(math.isfinite(x) for x in (float(c.ev_value.min()), float(c.ev_value.max()))):
        return "a value is not finite"
    return None
