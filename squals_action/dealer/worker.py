"""The Dealer's worker process: the proxy on its ``SO_REUSEPORT`` socket, its tally book and its journal.

The supervisor starts N of them on the public port it holds; the kernel spreads connections among them. A
worker reads the routing from the shared board on every request, counts into its own book (per-unit rows in
:mod:`~squals_action.dealer.units`), appends what it counts to its own journal (``journal_dir``:
:mod:`~squals_action.dealer.journal`), and answers the supervisor's control messages, one JSON line
each way on its stdin/stdout (each answer repeats its message's ``id``):

* ``{"op": "tallies"}`` -> ``{"variants": {name: tally JSON}}``
* ``{"op": "columns"}`` -> ``{"path", "in_flight", "in_flight_errors"}``: the book written to a file for the
  supervisor to merge
* ``{"op": "health", "reset": bool}`` -> ``{"pid", "requests", "beacons_elsewhere", "in_flight",
  "loop_lag_max_ms", "units", "unit_store_bytes"}``
* ``{"op": "persist"}`` -> ``{"ok": true}`` (the journal compacted into a snapshot)
* ``{"op": "faults"[, "faults": {...}]}`` -> the faults in force (replaced first when given)
* ``{"op": "event", "event", "count", "value", "key" | "variant"}`` -> ``{"variant", "counted"}``, with
  ``"variant": null`` for a unit key this worker never assigned (nothing counted)

A page's beacon for a unit this worker does not know is not refused at once: the worker sends the supervisor
``{"request": id, "op": "event", ...}`` and the supervisor, having asked the other workers, answers
``{"reply": id, "variant", "counted"}`` (``"unknown": true`` when none knows it, ``"error"`` when it cannot
tell). The worker stops on SIGTERM or when its stdin closes (the supervisor is gone): in-flight requests
finish, the journal is closed. A lock file per index keeps a restarted worker from reading its journal before
its predecessor has closed it.
"""

from __future__ import annotations

import asyncio
import fcntl
import gc
import itertools
import json
import logging
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

from squals_action.dealer.board import BOARD_FILE, RoutingBoard
from squals_action.dealer.config import journal_dir
from squals_action.dealer.interface import DealerConfig, DealerError
from squals_action.dealer.journal import Journal, recover, release_free_memory
from squals_action.dealer.lag import LagProbe
from squals_action.dealer.proxy import Proxy, event_value
from squals_action.dealer.server import HttpServer
from squals_action.dealer.tally import Counted, TallyBook, tally_to_json

log = logging.getLogger("squals.dealer")
# Young objects a collection of the youngest generation waits for. CPython's 700 is below what a few dozen
# requests in flight keep alive, so it collected every ~50 requests, promoted those requests' objects and led
# to full collections of 20-30 ms; at 20,000 a load of 24,000 requests ran with no collection at all.
GC_THRESHOLDS = (20_000, 10, 10)
#: Seconds a worker waits for the supervisor to say which worker knows a unit (a beacon's answer waits).
ASK_TIMEOUT = 10.0


def _tune_gc() -> None:
    """Move what start-up allocated out of the collector's sight and collect young objects less often.

    Cycles are still collected; full collections no longer walk the modules and the app (tens of thousands of
    objects that live as long as the process), which took a full collection from ~25 ms to ~1 ms.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def load_book(config: DealerConfig, directory: Path) -> tuple[TallyBook, int]:
    """The book read back from the journal in ``directory`` (empty when there is none), its next segment."""
    if not directory.is_dir():
        return TallyBook(config.event_caps, config.max_units), 1
    columns, next_segment = recover(directory)
    book = TallyBook.from_columns(columns, config.event_caps, config.max_units)
    del columns
    release_free_memory()
    return book, next_segment


def reuse_port_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound with ``SO_REUSEPORT`` (not listening yet): how N processes share one port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise DealerError(f"cannot bind the public address {host}:{port}: {exc.strerror or exc}") from exc
    return sock


class Worker:
    """The proxy side of a Dealer in one process; ``run`` serves until SIGTERM or the supervisor leaves."""

    def __init__(self, config: DealerConfig, state_dir: Path, index: int) -> None:
        self.config = config
        self.index = index
        self._lock_fd = _lock(state_dir / f".tally-w{index}.lock", config.shutdown_timeout + 10.0)
        self.board = RoutingBoard(state_dir / BOARD_FILE)
        self.directory = journal_dir(state_dir, index)
        for stale in self.directory.glob(".export-*.npz"):  # left by a supervisor that never read them
            stale.unlink(missing_ok=True)
        self.book, next_segment = load_book(config, self.directory)
        self.journal = Journal(self.directory, next_segment, self.book.names, config.journal_bytes)
        self.book.journal = self.journal.append
        self.book.names_changed = self.journal.names_changed
        self.journal.names_changed()
        self.lag = LagProbe()
        self.proxy = Proxy(config, self.book, self.board.routing, self.journal)
        self._writer: asyncio.StreamWriter | None = None
        self._asked: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._ids = itertools.count(1)
        self._exports = itertools.count(1)

    async def run(self, port: int) -> None:
        cfg = self.config
        await self.proxy.open()
        server = HttpServer(self.proxy.handle, cfg.header_timeout, self.proxy.fields)
        await server.start(reuse_port_socket(cfg.host, port))
        _tune_gc()
        self.lag.start()
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        reader, writer = await _stdio(loop)
        self._writer = writer
        if self.config.workers > 1:  # another worker may know a unit this one does not
            self.proxy.elsewhere = self._ask_elsewhere
        control = asyncio.create_task(self._control(reader, writer, stop))
        writer.write(json.dumps({"ready": {"pid": os.getpid()}}).encode() + b"\n")
        try:
            await stop.wait()
        finally:
            control.cancel()
            await self.lag.stop()
            await server.close(cfg.shutdown_timeout)  # stop accepting, let in-flight requests finish
            await self.proxy.close()
            await self.journal.close()  # everything counted is written already
            self.book.close()
            self.board.close()
            os.close(self._lock_fd)

    async def _control(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, stop: asyncio.Event
    ) -> None:
        """Read the supervisor's lines: replies to this worker's requests, and control messages, each answered
        on its own (with its ``id``) so that a slow one, a compaction, holds no other up."""
        answering: set[asyncio.Task[None]] = set()
        while line := await reader.readline():
            message = json.loads(line)
            if "reply" in message:
                waiter = self._asked.pop(int(message["reply"]), None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(message)
            else:
                task = asyncio.create_task(self._answer_one(message, writer))
                answering.add(task)
                task.add_done_callback(answering.discard)
        log.info("worker %d: the supervisor is gone, stopping", self.index)
        stop.set()

    async def _answer_one(self, message: dict[str, Any], writer: asyncio.StreamWriter) -> None:
        try:
            answer = await self._answer(message)
        except DealerError as exc:
            answer = {"error": exc.one_line()}
        except (ValueError, KeyError, TypeError, OSError) as exc:
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        answer["id"] = message.get("id", 0)
        writer.write(json.dumps(answer, separators=(",", ":")).encode() + b"\n")
        await writer.drain()

    async def _answer(self, message: dict[str, Any]) -> dict[str, Any]:
        op = message["op"]
        if op == "tallies":
            return {"variants": {name: tally_to_json(t) for name, t in self.book.snapshot().items()}}
        if op == "columns":
            return await self._export()
        if op == "health":
            return {
                "pid": os.getpid(),
                "requests": sum(c.activations for c in self.book.variants.values()),
                "beacons_elsewhere": self.proxy.beacons_elsewhere,
                "in_flight": {name: c.in_flight for name, c in self.book.variants.items() if c.in_flight},
                "loop_lag_max_ms": round(self.lag.read(reset=bool(message.get("reset"))), 3),
                "units": self.book.store.units,
                "unit_store_bytes": self.book.store.nbytes(),
            }
        if op == "persist":
            await self.journal.compact()
            return {"ok": True}
        if op == "event":
            return await self._event(message)
        if op == "faults":
            if "faults" in message:
                self.proxy.faults.replace(message["faults"])
            return self.proxy.faults.to_json()
        raise ValueError(f"unknown control op {op!r}")

    async def _export(self) -> dict[str, Any]:
        """The book as columns in a file of the journal's directory, for the supervisor to merge by unit.

        The unit rows (1 M units: ~25 ms of copying) are copied in a thread while the loop serves on: rows are
        only appended and the arrays never move, so the copy is whole, at most a few requests fresher than the
        counters then copied on the loop. If a variant or event kind got its index meanwhile, all is copied
        again on the loop. The file is written in a thread.
        """
        from squals_action.dealer import columns as cols

        book = self.book
        names = book.names()
        rows = await asyncio.to_thread(book.store.to_columns, names["variants"], names["kinds"])
        columns = book.add_counters(rows) if book.names() == names else book.to_columns()
        # read in the step that copied the counters: a request and its error leave them together
        in_flight = {name: c.in_flight for name, c in book.variants.items() if c.in_flight}
        errors = {name: c.in_flight_errors for name, c in book.variants.items() if c.in_flight_errors}
        path = self.directory / f".export-{next(self._exports)}.npz"
        await asyncio.to_thread(cols.save, columns, path)
        return {"path": str(path), "in_flight": in_flight, "in_flight_errors": errors}

    async def _event(self, message: dict[str, Any]) -> dict[str, Any]:
        """An admin event for a unit key this worker assigned (``variant: null`` when it did not: nothing
        counted) or for a variant, answered once written."""
        event, count = str(message["event"]), int(message["count"])
        value = event_value(message.get("value"))
        if "key" in message:
            counted = self.book.event(int(message["key"]), event, count, value)
            if counted is None:
                return {"variant": None}
            result: dict[str, Any] = {"variant": counted.variant, "counted": counted.counted}
        else:
            variant = str(message["variant"])
            self.book.plain_event(variant, event, count)
            result = {"variant": variant, "counted": count}
        try:
            await self.journal.durable()
        except OSError as exc:
            raise DealerError(f"the event could not be recorded: {exc.strerror}") from exc
        return result

    async def _ask_elsewhere(self, key: int, event: str, value: float) -> Counted | None:
        """Have a worker that assigned the unit count a beacon this one got (through the supervisor): the
        unit's variant and what was counted, ``None`` when no worker knows the unit, DealerError when the
        supervisor cannot tell (a worker restarting, no answer in time)."""
        assert self._writer is not None
        ask = next(self._ids)
        waiter: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._asked[ask] = waiter
        message = {"request": ask, "op": "event", "key": key, "event": event, "count": 1, "value": value}
        try:
            self._writer.write(json.dumps(message, separators=(",", ":")).encode() + b"\n")
            await self._writer.drain()
            answer = await asyncio.wait_for(waiter, ASK_TIMEOUT)
        except TimeoutError as exc:
            raise DealerError(f"the other workers did not answer within {ASK_TIMEOUT:g}s") from exc
        except (OSError, RuntimeError) as exc:
            raise DealerError(f"the supervisor is gone: {type(exc).__name__}") from exc
        finally:
            self._asked.pop(ask, None)
        if "error" in answer:
            raise DealerError(str(answer["error"]))
        if answer.get("unknown"):
            return None
        return Counted(str(answer["variant"]), int(answer["counted"]))


def _lock(path: Path, timeout: float) -> int:
    """Hold this worker index's lock for the process's life, waiting for a predecessor to let it go."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() > deadline:
                os.close(fd)
                raise DealerError(f"{path}: still held by a previous worker after {timeout:g}s") from None
            time.sleep(0.05)


async def _stdio(loop: asyncio.AbstractEventLoop) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """The control channel: stdin and stdout as asyncio streams."""
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    transport, protocol = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin, sys.stdout)
    return reader, asyncio.StreamWriter(transport, protocol, reader, loop)
