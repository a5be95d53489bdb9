"""The Dealer's tallies on disk: an append-only journal of what changed, now and then compacted to a snapshot.

Every change the book counts is a 24-byte record (:data:`~squals_action.dealer.tally.RECORD`). The event loop
appends it to a buffer and ``write()``s the buffer to the current segment once per loop iteration (one small
write into the page cache), and a request that must not be lost (an event, a proxied request) awaits
:meth:`Journal.durable` before it is answered, so a SIGKILL loses nothing acknowledged (no fsync: the page
cache survives the process). When a segment reaches ``segment_bytes`` (or on ``POST /persist``) the journal
starts the next one and a compaction merges the last
snapshot and the closed segments into a new snapshot (:mod:`~squals_action.dealer.columns`, vectorised numpy,
in a child process at a lower priority, so it never holds the Dealer's GIL), then deletes what it replaced.
Nothing on the event loop ever serialises the tallies.

A journal directory (one per worker: ``tallies/`` for worker 0, ``tallies/w<N>/`` for the others) holds
``names.json`` (variant and event names by index, rewritten before any record uses a new index),
``segment-NNNNNN.bin``, ``snapshot-NNNNNN.npz`` (everything up to number NNNNNN) and ``fold-NNNNNN.npz``: the
whole journal of a worker index a Dealer no longer runs, moved in by :func:`fold` and numbered like a segment.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import logging
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from squals_action.dealer import columns as cols
from squals_action.dealer.config import atomic_write, read_json
from squals_action.dealer.interface import DealerError
from squals_action.dealer.tally import (
    OP_CONNECTION_ERROR,
    OP_EVENT,
    OP_LATENCY,
    OP_PLAIN,
    OP_REQUEST,
    OP_SERVER_ERROR,
    OP_UNIT,
    RECORD,
)

# The compaction child's command: ``python -c``, not ``-m`` (a module compiled by mypyc cannot run as
# ``__main__``).
_CHILD = "import sys; from squals_action.dealer.journal import main; sys.exit(main(sys.argv[1:]))"
log = logging.getLogger("squals.dealer")

RECORDS = np.dtype(
    [("op", "u1"), ("var", "u1"), ("kind", "<u2"), ("count", "<i4"), ("key", "<u8"), ("value", "<f8")]
)
assert RECORDS.itemsize == RECORD.size
NAMES_FILE = "names.json"
#: A compaction (10 M units: ~20 s on a busy 2-core machine) that takes longer than this is given up.
COMPACT_TIMEOUT = 1800.0
_LAST = 999_999  # the highest file number: compact everything
_FILE = re.compile(r"^(segment|snapshot|fold)-(\d{6})\.(bin|npz)$")


def columns_of(records: Any, variants: list[str], kinds: list[str]) -> cols.Columns:
    """One segment's records as increments: new units, requests per unit, events per unit and kind, and the
    per-variant counters."""
    out = cols.Columns.empty(variants, kinds)
    v, k = len(variants), max(len(kinds), 1)
    op, var = records["op"], records["var"].astype(np.int64)
    if len(records) and int(var.max()) >= v:
        raise DealerError("a journal record names a variant missing from names.json")
    new, req, ev = records[op == OP_UNIT], records[op == OP_REQUEST], records[op == OP_EVENT]
    out.unit_key = np.concatenate([new["key"], req["key"]])
    out.unit_var = np.concatenate([new["var"], np.full(len(req), cols.NO_VARIANT, np.uint8)]).astype(np.uint8)
    out.unit_acts = np.concatenate([np.zeros(len(new), np.int64), np.ones(len(req), np.int64)])
    out.ev_key, out.ev_kind = ev["key"], ev["kind"].astype(np.int64)
    out.ev_count, out.ev_value = ev["count"].astype(np.int64), ev["value"]
    if len(out.ev_kind) and int(out.ev_kind.max()) >= len(kinds):
        raise DealerError("a journal record names an event kind missing from names.json")

    def per_variant(code: int) -> Any:
        chosen = op == code
        return np.bincount(var[chosen], weights=records["count"][chosen], minlength=v).astype(np.int64)

    out.activations = per_variant(OP_REQUEST)
    out.server_errors = per_variant(OP_SERVER_ERROR)
    out.connection_errors = per_variant(OP_CONNECTION_ERROR)
    lat = records[op == OP_LATENCY]
    flat = var[op == OP_LATENCY] * cols.BUCKETS + np.minimum(lat["kind"], cols.BUCKETS - 1)
    out.latency = np.bincount(flat, minlength=v * cols.BUCKETS).astype(np.int64).reshape(v, cols.BUCKETS)
    plain = records[op == OP_PLAIN]
    flat = var[op == OP_PLAIN] * k + plain["kind"].astype(np.int64)
    out.plain = np.bincount(flat, weights=plain["count"], minlength=v * k).astype(np.int64).reshape(v, k)
    out.plain = out.plain[:, : len(kinds)]
    return out


def _numbered(directory: Path, *kinds: str) -> list[tuple[int, Path]]:
    found = []
    for path in directory.iterdir() if directory.is_dir() else ():
        match = _FILE.match(path.name)
        if match and match.group(1) in kinds:
            found.append((int(match.group(2)), path))
    return sorted(found)


def _read_names(directory: Path) -> tuple[list[str], list[str]]:
    path = directory / NAMES_FILE
    if not path.exists():
        return [], []
    raw = read_json(path)
    if isinstance(raw, dict):
        cols.check_format(raw, path)
    try:
        return [str(n) for n in raw["variants"]], [str(n) for n in raw["kinds"]]
    except (KeyError, TypeError) as exc:
        raise DealerError(f"{path}: expected variants and kinds: {exc!r}") from exc


def _merged(directory: Path, upto: int | None) -> tuple[cols.Columns, int, list[Path]]:
    """The latest snapshot and every later segment (up to ``upto``) merged; with the number of the last
    segment included and the files the result replaces."""
    variants, kinds = _read_names(directory)
    snapshots = _numbered(directory, "snapshot")
    parts: list[cols.Columns] = []
    used: list[Path] = []
    last = 0
    if snapshots:
        last, path = snapshots[-1]
        parts.append(cols.load(path))
        used.extend(p for _, p in snapshots)
    for number, path in _numbered(directory, "segment", "fold"):
        if number <= last and snapshots:
            used.append(path)  # already inside the snapshot (a compaction stopped before deleting it)
            continue
        if upto is not None and number > upto:
            break
        if path.suffix == ".npz":
            parts.append(cols.load(path))
        else:
            data = path.read_bytes()
            records = np.frombuffer(data[: len(data) - len(data) % RECORDS.itemsize], RECORDS)
            try:
                parts.append(columns_of(records, variants, kinds))
            except DealerError as exc:
                raise DealerError(f"{path}: {exc}") from exc
        last = max(last, number)
        used.append(path)
    if len(parts) == 1 and snapshots:  # a snapshot alone is merged already
        return parts[0], last, used
    return cols.merge(parts or [cols.Columns.empty(variants, kinds)]), last, used


def recover(directory: Path) -> tuple[cols.Columns, int]:
    """What the journal holds (a torn last record, never acknowledged, is left out) and the number the next
    segment gets."""
    columns, last, _ = _merged(directory, None)
    return columns, last + 1


def release_free_memory() -> None:
    """Give the heap memory that recovery's temporaries freed back to the operating system (glibc keeps it
    otherwise: a Dealer recovered from 1 M units held ~100 bytes per unit instead of ~30)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def compact(directory: Path, upto: int) -> Path:
    """Merge the latest snapshot and the segments up to ``upto`` into ``snapshot-upto.npz``; delete what it
    replaces."""
    for stale in directory.glob(".snapshot-*.tmp"):  # left by a compaction stopped mid-write
        stale.unlink(missing_ok=True)
    columns, last, used = _merged(directory, upto)
    target = directory / f"snapshot-{last:06d}.npz"
    cols.save(columns, target)
    for path in used:
        if path != target:
            path.unlink(missing_ok=True)
    return target


def fold(source: Path, target: Path) -> None:
    """Move the whole journal in ``source`` (a worker index the Dealer no longer runs) into ``target``, whose
    worker is not running either: compacted into one snapshot, then renamed into ``target`` as the fold after
    its last file. That rename is the one step that moves the counts, so a crash counts them once either way;
    what is left of ``source`` then holds nothing and is removed."""
    if _numbered(source, "segment", "snapshot", "fold"):
        snapshot = compact(source, _LAST)
        numbers = [number for number, _ in _numbered(target, "segment", "snapshot", "fold")]
        target.mkdir(parents=True, exist_ok=True)
        snapshot.replace(target / f"fold-{max(numbers, default=0) + 1:06d}.npz")
    shutil.rmtree(source, ignore_errors=True)


class Journal:
    """Appends records from the event loop and writes them once per loop iteration; compacts in a child."""

    def __init__(
        self,
        directory: Path,
        first_segment: int,
        names: Callable[[], dict[str, list[str]]],
        segment_bytes: int,
    ) -> None:
        self.directory = directory
        self._names = names
        self._segment_bytes = segment_bytes
        self._loop = asyncio.get_running_loop()
        self._local = bytearray()  # appended since the last write (or not written: the disk refused)
        self._total = 0  # records appended
        self._counted = (
            0  # records appended up to the last count (unit, request, event): what durable waits for
        )
        self._written = 0  # records written
        self._flushing = False
        self._names_dirty = False
        self._waiter: asyncio.Future[None] | None = None  # the next write, for whoever waits for it
        self._closing = False
        self._segment = first_segment
        self._fd = self._open(first_segment)
        self._size = 0
        self._compactor = ThreadPoolExecutor(1, thread_name_prefix="squals-compact")
        self._child: subprocess.Popen[str] | None = None

    def _open(self, number: int) -> int:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"segment-{number:06d}.bin"
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def append(self, record: bytes) -> None:
        """Buffer a record; everything appended in one loop iteration is written at its end, in one write.

        Latency and error samples (recorded as an answer leaves) do not hold up :meth:`durable`: they are
        written in the same write, but a SIGKILL in that moment may lose them; units, requests and events,
        which an answer acknowledges, never.
        """
        self._local += record
        self._total += 1
        if record[0] < OP_LATENCY:
            self._counted = self._total
        if not self._flushing:
            self._flushing = True
            self._loop.call_soon(self._flush)

    def names_changed(self) -> None:
        """Variant or event names got a new index: names.json is rewritten before the next records."""
        self._names_dirty = True
        if not self._flushing:
            self._flushing = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        """Write what was appended: a few hundred bytes into the page cache, cheaper on the loop than handing
        them to a thread (a lock, a wake-up and the GIL back and forth per iteration cost ~10 % of the CPU
        per proxied request). What the disk refuses stays buffered and is written by the next flush."""
        self._flushing = False
        waiter, self._waiter = self._waiter, None
        upto = self._total
        view = memoryview(self._local)
        try:
            if self._names_dirty:
                names = {"format": cols.FORMAT, **self._names()}
                atomic_write(self.directory / NAMES_FILE, json.dumps(names))
                self._names_dirty = False
            while view:
                # Apart, not in the slice: mypyc (2.4) evaluates a memoryview slice's start twice, which
                # here wrote every record twice.
                written = os.write(self._fd, view)
                view = view[written:]
        except OSError as exc:
            log.error("could not write the tally journal: %s", exc)
            self._size += len(self._local) - len(view)
            self._local = bytearray(view)
            if waiter is not None and not waiter.done():
                waiter.set_exception(exc)
            return
        finally:
            view.release()
        self._size += len(self._local)
        self._local = bytearray()
        self._written = upto
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        if self._size >= self._segment_bytes and not self._closing:
            with contextlib.suppress(OSError):  # logged; the segment grows until a rotation succeeds
                self._rotate()

    @property
    def counted(self) -> int:
        """Where the journal stands: a mark that :meth:`written` and :meth:`durable` take."""
        return self._counted

    def written(self, mark: int) -> bool:
        """Whether every unit, request and event appended up to ``mark`` (:attr:`counted` then) is written:
        an answer waits only for what it acknowledges, not for what later requests appended."""
        return self._written >= mark

    async def durable(self, mark: int | None = None) -> None:
        """Return once every unit, request and event appended up to ``mark`` (default: so far) is written
        (raises OSError if writing failed)."""
        if self._written >= (self._counted if mark is None else mark):
            return
        if self._waiter is None:
            self._waiter = self._loop.create_future()
        if not self._flushing:  # the last write failed: try again
            self._flushing = True
            self._loop.call_soon(self._flush)
        await asyncio.shield(self._waiter)

    async def compact(self) -> Path:
        """Close the current segment and merge everything into a new snapshot, without blocking the loop."""
        self._flush()
        return await asyncio.wrap_future(self._rotate())

    async def close(self) -> None:
        """Write what is buffered; a running compaction is stopped (the journal holds everything, the next
        compaction redoes it), so that a stop never waits for one."""
        self._closing = True
        self._flush()
        child = self._child
        if child is not None and child.poll() is None:
            child.terminate()
        await asyncio.to_thread(self._compactor.shutdown, True)
        os.close(self._fd)

    def _rotate(self) -> Future[Path]:
        """Start the next segment and compact everything up to the one just closed."""
        closed = self._segment
        try:
            self._fd, old = self._open(closed + 1), self._fd
            os.close(old)
        except OSError as exc:
            log.error("could not start a new journal segment: %s", exc)
            raise
        self._segment, self._size = closed + 1, 0
        return self._compactor.submit(self._compact, closed)

    def _compact(self, upto: int) -> Path:
        """Compaction runs in a child process at idle priority: its numpy work never holds the Dealer's
        GIL, and it only takes CPU the Dealer leaves idle. The priority is this (compactor) thread's, which
        the child inherits from its first instruction: set in the child, it came after Python's start-up and
        the numpy import, which ran at the Dealer's priority and still delayed its loop by up to 13 ms."""
        yield_the_cpu()
        command = [sys.executable, "-c", _CHILD, str(self.directory), str(upto)]
        try:
            with subprocess.Popen(
                command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            ) as self._child:
                try:
                    out, err = self._child.communicate(timeout=COMPACT_TIMEOUT)
                except subprocess.TimeoutExpired:
                    self._child.kill()
                    raise
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.error("could not compact the tally journal: %s", exc)
            raise
        finally:
            self._child = None
        if self._closing and not out:
            raise DealerError(f"compaction of {self.directory} stopped: the Dealer is stopping")
        if not out:
            why = (err.strip().splitlines() or ["no snapshot written"])[-1]
            log.error("could not compact the tally journal: %s", why)
            raise DealerError(f"compaction of {self.directory} failed: {why}")
        return Path(out.strip())


def yield_the_cpu() -> None:
    """Run the calling thread (and the processes it starts) only on CPU the Dealer leaves idle
    (``SCHED_IDLE``; ``nice 19`` where that is refused): on Linux both are per thread.

    At nice 10 a compaction still took a share of a core from a saturated Dealer: its loop lag went from 6-7
    to 16-20 ms while one ran."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (OSError, AttributeError):
        os.nice(19 - os.nice(0))


def main(argv: list[str]) -> int:
    """The compaction child (``DIR UPTO``): compact, print the snapshot's path."""
    yield_the_cpu()
    try:
        print(compact(Path(argv[0]), int(argv[1])))
    except (OSError, DealerError) as exc:
        print(f"squals dealer: {exc}", file=sys.stderr)
        return 1
    return 0
