"""The Dealer's supervisor: holds the public port, runs N workers on it, serves the admin endpoint.

It binds the public port first (``SO_REUSEPORT``, never listening: it only keeps the port while workers come
and go), publishes the routing on the shared board, starts the workers and restarts any that dies. Admin
switches go to the board (one store switches every worker at once: see ``board``). Tallies are the workers'
books merged by unit (``tally.merge_books``); a worker that is down or restarting counts with the book it
last wrote, and single-process or surplus workers' files (``tallies.json``, ``tally-w<N>.json`` beyond the
current worker count) are read once and merged in, never written.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aiohttp import web

from squals_action.dealer.admin import admin_app
from squals_action.dealer.board import BOARD_FILE, RoutingBoard
from squals_action.dealer.config import ROUTING_FILE, TALLY_FILE, WORKER_TALLY_FILE, atomic_write, read_json
from squals_action.dealer.interface import DealerConfig, DealerError, VariantTally
from squals_action.dealer.routing import Assigner, Routing, make_routing
from squals_action.dealer.tally import TallyBook, merge_books
from squals_action.dealer.worker import load_book, reuse_port_socket

log = logging.getLogger("squals.dealer")

MODULE = "squals_action.dealer"
CALL_TIMEOUT = 10.0  # seconds a worker has to answer a control message
_MAX_LINE = 1 << 31  # control answers carry whole books


WORKERS_ENV = "SQUALS_DEALER_WORKERS"


def worker_count(config: DealerConfig) -> int:
    """``config.workers``, else ``SQUALS_DEALER_WORKERS`` (how the lifecycle's Dealers are sized: their config
    comes from no file), else one per core this process may run on."""
    if config.workers:
        return config.workers
    raw = os.environ.get(WORKERS_ENV, "").strip()
    if raw:
        if not raw.isdigit() or int(raw) < 1:
            raise DealerError(f"{WORKERS_ENV} must be a whole number of workers >= 1, got {raw!r}")
        return int(raw)
    return len(os.sched_getaffinity(0))


class WorkerGone(DealerError):
    """The worker's process has exited or is exiting: its control channel is closed."""


class WorkerProcess:
    """One worker index: its current process (replaced on restart) and a one-at-a-time control channel."""

    def __init__(self, index: int, tally_path: Path) -> None:
        self.index = index
        self.tally_path = tally_path
        self.process: asyncio.subprocess.Process | None = None
        self.started = 0.0
        self._lock = asyncio.Lock()

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def call(self, message: Mapping[str, Any]) -> dict[str, Any]:
        """Send one control message and wait for its answer (at most CALL_TIMEOUT seconds)."""
        async with self._lock:
            process = self.process
            if process is None or process.stdin is None or process.stdout is None:
                raise WorkerGone(f"worker {self.index} is not running")
            try:
                process.stdin.write(json.dumps(message).encode() + b"\n")
                await process.stdin.drain()
                line = await asyncio.wait_for(process.stdout.readline(), CALL_TIMEOUT)
            except TimeoutError as exc:
                raise DealerError(f"worker {self.index} did not answer within {CALL_TIMEOUT:g}s") from exc
            except (OSError, RuntimeError) as exc:  # uvloop: RuntimeError on a closed pipe
                raise WorkerGone(f"worker {self.index} is gone: {type(exc).__name__}") from exc
            if not line:
                raise WorkerGone(f"worker {self.index} closed its control channel")
            answer: dict[str, Any] = json.loads(line)
            if "error" in answer:
                raise DealerError(f"worker {self.index}: {answer['error']}")
            return answer

    async def book(self) -> TallyBook:
        """The worker's live book, or the one it last wrote when it is gone (its persisted counts stay).

        A worker never closes its control channel while it runs, so a closed channel means a dying worker,
        even before its exit was reaped; one that is alive but silent is an error, not a zero.
        """
        try:
            answer = await self.call({"op": "book"})
        except WorkerGone:
            pass
        else:
            book = TallyBook.from_json(answer["book"], f"worker {self.index}")
            for name, count in answer["in_flight"].items():
                book.variant(name).in_flight = int(count)
            return book
        return await asyncio.to_thread(load_book, self.tally_path)


class Supervisor:
    """The admin side of a Dealer and the keeper of its workers (implements ``admin.AdminBackend``)."""

    def __init__(self, config: DealerConfig, config_path: Path, state_dir: Path) -> None:
        if not config.token:
            raise DealerError("the Dealer's admin token is empty")
        self.config = config
        self.config_path = config_path
        self.state_dir = state_dir
        self._routing = _saved_routing(state_dir) or make_routing(config.upstreams, config.weights)
        self._assign = Assigner(config.seed)
        count = worker_count(config)
        self.workers = [WorkerProcess(i, state_dir / WORKER_TALLY_FILE.format(index=i)) for i in range(count)]
        self._archived = _archived_book(state_dir, count)
        self._placeholder: socket.socket | None = None
        self._board: RoutingBoard | None = None
        self._admin: web.AppRunner | None = None
        self._watchers: list[asyncio.Task[None]] = []
        self._switch_lock = asyncio.Lock()
        self._stopping = False
        self.port = 0
        self.admin_port = 0

    # -- lifecycle -----------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Hold the port, publish the routing, start the workers, then the admin endpoint."""
        try:
            self._placeholder = reuse_port_socket(self.config.host, self.config.port)
            self.port = int(self._placeholder.getsockname()[1])
            self._board = RoutingBoard(self.state_dir / BOARD_FILE, create=True)
            self._board.publish(self._routing)
            await asyncio.gather(*(self._spawn(w) for w in self.workers))
            self._watchers = [asyncio.create_task(self._watch(w)) for w in self.workers]
            self._admin = web.AppRunner(
                admin_app(self, self.config.token), access_log=None, shutdown_timeout=2.0
            )
            await self._admin.setup()
            await web.TCPSite(self._admin, "127.0.0.1", self.config.admin_port).start()
            self.admin_port = int(self._admin.addresses[0][1])
        except BaseException:
            await self.stop()
            raise

    async def _spawn(self, worker: WorkerProcess) -> None:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            MODULE,
            "--config",
            str(self.config_path),
            "--state",
            str(self.state_dir),
            "--worker",
            str(worker.index),
            "--port",
            str(self.port),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=_MAX_LINE,
        )
        worker.started = time.monotonic()
        assert process.stdout is not None
        timeout = self.config.shutdown_timeout + 20.0  # a predecessor may still be writing its book
        try:
            line = await asyncio.wait_for(process.stdout.readline(), timeout)
        except TimeoutError:
            line = b""
        if not line.startswith(b'{"ready"'):
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
            if line.startswith(b'{"failed"'):
                raise DealerError(f"worker {worker.index}: {json.loads(line)['failed']}")
            raise DealerError(
                f"worker {worker.index} did not start (exit code {process.returncode}; see the log)"
            )
        worker.process = process  # only now: control messages must not read the ready line
        log.info("worker %d serving (pid %d)", worker.index, process.pid)

    async def _watch(self, worker: WorkerProcess) -> None:
        """Restart the worker whenever it exits while the Dealer is not stopping."""
        while True:
            assert worker.process is not None
            code = await worker.process.wait()
            if self._stopping:
                return
            log.warning(
                "worker %d (pid %d) exited with code %s: restarting", worker.index, worker.process.pid, code
            )
            if time.monotonic() - worker.started < 1.0:
                await asyncio.sleep(1.0)  # dying at once: do not spin
            try:
                await self._spawn(worker)
            except (DealerError, OSError) as exc:
                log.error("worker %d: %s", worker.index, exc)
                await asyncio.sleep(1.0)
            self.write_endpoint_workers()

    def write_endpoint_workers(self) -> None:
        """Keep the worker pids in ``dealer.json`` current (tests and operators find them there)."""
        path = self.state_dir / "dealer.json"
        with contextlib.suppress(DealerError, OSError, TypeError):
            endpoint = read_json(path)
            if endpoint.get("pid") == os.getpid():
                endpoint["worker_pids"] = self.worker_pids()
                atomic_write(path, json.dumps(endpoint, indent=2) + "\n")

    def worker_pids(self) -> list[int | None]:
        return [w.process.pid if w.alive and w.process else None for w in self.workers]

    async def stop(self) -> None:
        """Stop the admin endpoint, then every worker (each finishes its requests and writes its book)."""
        self._stopping = True
        for task in self._watchers:
            task.cancel()
        if self._admin is not None:
            await self._admin.cleanup()
            self._admin = None
        running = [w.process for w in self.workers if w.alive and w.process is not None]
        for process in running:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
        for process in running:
            try:
                await asyncio.wait_for(process.wait(), self.config.shutdown_timeout + 10.0)
            except TimeoutError:
                log.error("worker pid %d did not stop: killed", process.pid)
                process.kill()
                await process.wait()
        if self._board is not None:
            self._board.close()
            self._board = None
        if self._placeholder is not None:
            self._placeholder.close()
            self._placeholder = None

    # -- admin backend -------------------------------------------------------------------------------------

    @property
    def routing(self) -> Routing:
        return self._routing

    async def switch(self, routing: Routing) -> None:
        """Save the routing (a restarted Dealer comes back on it), then switch every worker in one store."""
        async with self._switch_lock:
            atomic_write(self.state_dir / ROUTING_FILE, json.dumps(routing.to_json(), indent=2) + "\n")
            assert self._board is not None
            self._board.publish(routing)
            self._routing = routing
        log.info("upstreams now %s, weights %s", routing.to_json()["upstreams"], dict(routing.weights))

    async def book(self) -> TallyBook:
        books = await asyncio.gather(*(w.book() for w in self.workers))
        return merge_books([self._archived, *books])

    async def tallies(self) -> Mapping[str, VariantTally]:
        return (await self.book()).snapshot()

    async def record_event(self, event: str, count: int, unit: str | None, variant: str | None) -> str:
        key = None
        if unit is not None:
            variant, key = self._assign(unit, self._routing)
        if variant is None or (
            variant not in self._routing.upstreams and variant not in (await self.book()).variants
        ):
            raise DealerError("give a unit or a known variant")
        worker = next((w for w in self.workers if w.alive), None)
        if worker is None:
            raise DealerError("no worker is running to count the event")
        answer = await worker.call(
            {"op": "event", "variant": variant, "event": event, "count": count, "key": key}
        )
        if not answer["ok"]:
            raise DealerError("too many distinct event names for this variant")
        return variant

    async def persist(self) -> None:
        """Every running worker writes its book now (one that is gone wrote its last already)."""

        async def one(worker: WorkerProcess) -> None:
            with contextlib.suppress(WorkerGone):
                await worker.call({"op": "persist"})

        await asyncio.gather(*(one(w) for w in self.workers))


def _saved_routing(state_dir: Path) -> Routing | None:
    """The last switch saved in ``state_dir`` (``start_dealer`` removes it: its config is authoritative)."""
    path = state_dir / ROUTING_FILE
    if not path.exists():
        return None
    raw = read_json(path)
    try:
        return make_routing(raw["upstreams"], raw["weights"])
    except (KeyError, TypeError) as exc:
        raise DealerError(f"{path}: expected upstreams and weights: {exc!r}") from exc
    except DealerError as exc:
        raise DealerError(f"{path}: {exc}") from exc


def _archived_book(state_dir: Path, workers: int) -> TallyBook:
    """Books no current worker owns: a single-process Dealer's, and workers' beyond today's count."""
    paths = [state_dir / TALLY_FILE]
    index = workers
    while (state_dir / WORKER_TALLY_FILE.format(index=index)).exists():
        paths.append(state_dir / WORKER_TALLY_FILE.format(index=index))
        index += 1
    return merge_books(load_book(p) for p in paths)
