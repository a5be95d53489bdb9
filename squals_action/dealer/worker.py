"""One Dealer worker process: the proxy on its own ``SO_REUSEPORT`` socket, its own tally book and pool.

The supervisor starts N of them on the same port; the kernel spreads new connections among them. A worker
reads the routing from the shared board on every request, counts into its own book, writes that book to
``tally-w<N>.json`` every ``persist_interval`` (and when it stops), and answers the supervisor's control
messages, one JSON line each way on its stdin/stdout:

* ``{"op": "book"}`` -> ``{"book": <TallyBook JSON>, "in_flight": {variant: n}}``
* ``{"op": "persist"}`` -> ``{"ok": true}``
* ``{"op": "event", "variant", "event", "count", "key"}`` -> ``{"ok": bool}`` (false: too many event names)

It stops on SIGTERM or when its stdin closes (the supervisor is gone): in-flight requests finish, the book is
written. A lock file per worker index keeps a restarted worker from loading its book before the previous
one with the same index has written its last.
"""

from __future__ import annotations

import asyncio
import fcntl
import gc
import json
import logging
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from squals_action.dealer.board import BOARD_FILE, RoutingBoard
from squals_action.dealer.config import WORKER_TALLY_FILE, atomic_write, read_json
from squals_action.dealer.interface import DealerConfig, DealerError
from squals_action.dealer.proxy import Proxy
from squals_action.dealer.tally import TallyBook

log = logging.getLogger("squals.dealer")
# Young objects a collection of the youngest generation waits for. CPython's 700 is below what a few dozen
# requests in flight keep alive, so it collected every ~50 requests, promoted those requests' objects and led
# to full collections of 20-30 ms; at 20,000 a load of 24,000 requests ran with no collection at all.
GC_THRESHOLDS = (20_000, 10, 10)


def _tune_gc() -> None:
    """Move what start-up allocated out of the collector's sight and collect young objects less often.

    Cycles are still collected; full collections no longer walk the modules and the app (tens of thousands of
    objects that live as long as the process), which took a full collection from ~25 ms to ~1 ms.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def load_book(path: Path) -> TallyBook:
    """A worker's persisted book (empty when it never wrote one); a damaged file is an error naming it."""
    if not path.exists():
        return TallyBook()
    return TallyBook.from_json(read_json(path), str(path))


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
        self.tally_path = state_dir / WORKER_TALLY_FILE.format(index=index)
        self._lock_fd = _lock(state_dir / f".tally-w{index}.lock", config.shutdown_timeout + 10.0)
        self.board = RoutingBoard(state_dir / BOARD_FILE)
        self.book = load_book(self.tally_path)
        self.proxy = Proxy(config, self.book, self.board.routing)
        self._persist_lock = asyncio.Lock()
        self._runner: web.ServerRunner | None = None

    async def run(self, port: int) -> None:
        cfg = self.config
        await self.proxy.open()
        # aiohttp's keep-alive timer runs from the connection's start until a request's headers are parsed
        # (aiohttp >= 3.14.5): the header-read timeout. A handler at work is never cut by it.
        server = web.Server(self.proxy.handle, access_log=None, keepalive_timeout=cfg.header_timeout)
        self._runner = web.ServerRunner(server, access_log=None, shutdown_timeout=cfg.shutdown_timeout)
        await self._runner.setup()
        sock = reuse_port_socket(cfg.host, port)
        await web.SockSite(self._runner, sock, backlog=1024).start()
        _tune_gc()
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        reader, writer = await _stdio(loop)
        control = asyncio.create_task(self._control(reader, writer, stop))
        persisting = asyncio.create_task(self._persist_loop())
        writer.write(json.dumps({"ready": {"pid": os.getpid()}}).encode() + b"\n")
        try:
            await stop.wait()
        finally:
            persisting.cancel()
            control.cancel()
            await self._runner.cleanup()  # stop accepting, let in-flight requests finish
            await self.proxy.close()
            self.book.dirty = True
            await self.persist()
            self.board.close()
            os.close(self._lock_fd)

    async def _control(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, stop: asyncio.Event
    ) -> None:
        while line := await reader.readline():
            try:
                answer = await self._answer(json.loads(line))
            except (ValueError, KeyError, TypeError, DealerError, OSError) as exc:
                answer = {"error": f"{type(exc).__name__}: {exc}"}
            writer.write(json.dumps(answer, separators=(",", ":")).encode() + b"\n")
            await writer.drain()
        log.info("worker %d: the supervisor is gone, stopping", self.index)
        stop.set()

    async def _answer(self, message: dict[str, Any]) -> dict[str, Any]:
        op = message["op"]
        if op == "book":
            in_flight = {name: c.in_flight for name, c in self.book.variants.items() if c.in_flight}
            return {"book": self.book.to_json(), "in_flight": in_flight}
        if op == "persist":
            self.book.dirty = True
            await self.persist()
            return {"ok": True}
        if op == "event":
            counter = self.book.variant(str(message["variant"]))
            key = message.get("key")
            ok = counter.add_event(str(message["event"]), int(message["count"]), unit=key)
            self.book.dirty = True
            return {"ok": ok}
        raise ValueError(f"unknown control op {op!r}")

    async def persist(self) -> None:
        """Write the book if anything changed since the last write (the JSON is built on the loop)."""
        async with self._persist_lock:  # one writer at a time, so an older snapshot never lands last
            if not self.book.dirty:
                return
            self.book.dirty = False
            text = json.dumps(self.book.to_json(), separators=(",", ":"))
            try:
                await asyncio.to_thread(atomic_write, self.tally_path, text)
            except BaseException:
                self.book.dirty = True
                raise

    async def _persist_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.persist_interval)
            try:
                await self.persist()
            except OSError as exc:  # keep serving; the next round retries
                log.warning("worker %d could not persist tallies: %s", self.index, exc)


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
