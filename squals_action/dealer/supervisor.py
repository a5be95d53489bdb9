"""The Dealer's supervisor: holds the public port, runs the worker on it, serves the admin endpoint.

It binds the public port first (``SO_REUSEPORT``, never listening: it only keeps the port while a worker comes
and goes), publishes the routing on the shared board, starts the worker and restarts it when it dies. Admin
switches go to the board (see ``board``). Tallies, events and load figures are the worker's, asked over its
control channel; while the worker restarts they are an error, never zeros.

One worker, always: the worker owns the per-unit book and refuses events for units it never assigned, which
another worker could not tell (a beacon may reach another worker than the page did). docs/dealer.md,
"Workers", says why and what more workers would need.
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
from squals_action.dealer.config import (
    RECOVERY_BYTES_PER_S,
    ROUTING_FILE,
    atomic_write,
    read_json,
    tally_bytes,
)
from squals_action.dealer.interface import DealerConfig, DealerError, VariantTally
from squals_action.dealer.routing import Routing, make_routing
from squals_action.dealer.tally import tallies_from_json
from squals_action.dealer.worker import reuse_port_socket

log = logging.getLogger("squals.dealer")

MODULE = "squals_action.dealer"
CALL_TIMEOUT = 10.0  # seconds a worker has to answer a control message
PERSIST_TIMEOUT = 600.0  # ... and to compact its journal
_MAX_LINE = 1 << 24  # control answers carry every variant's tallies


WORKERS_ENV = "SQUALS_DEALER_WORKERS"


def worker_count(config: DealerConfig) -> int:
    """The worker processes to run: 1, the only count that can refuse events for units never assigned.

    ``config.workers`` (0: not set) and ``SQUALS_DEALER_WORKERS`` may ask for it; any other count is a
    one-line error, not a Dealer that would refuse a beacon that reached another worker than its page.
    """
    raw = str(config.workers) if config.workers else os.environ.get(WORKERS_ENV, "").strip() or "1"
    if not raw.isdigit() or int(raw) < 1:
        raise DealerError(f"{WORKERS_ENV} must be a whole number of workers >= 1, got {raw!r}")
    if int(raw) != 1:
        raise DealerError(
            f"workers: {raw} asked, but this Dealer runs 1 worker: with more, a worker could not tell a unit"
            " another worker assigned from one never assigned (docs/dealer.md, Workers)"
        )
    return 1


class WorkerGone(DealerError):
    """The worker's process has exited or is exiting: its control channel is closed."""


class WorkerProcess:
    """One worker index: its current process (replaced on restart) and a one-at-a-time control channel."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.process: asyncio.subprocess.Process | None = None
        self.started = 0.0
        self._lock = asyncio.Lock()
        self._late = 0  # answers still owed to calls that timed out

    def attach(self, process: asyncio.subprocess.Process) -> None:
        """Talk to ``process`` from now on (a new one owes no late answers)."""
        self.process, self._late = process, 0

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def call(self, message: Mapping[str, Any], timeout: float = CALL_TIMEOUT) -> dict[str, Any]:
        """Send one control message and wait for its answer (at most ``timeout`` seconds)."""
        async with self._lock:
            process = self.process
            if process is None or process.stdin is None or process.stdout is None:
                raise WorkerGone(f"worker {self.index} is not running")
            try:
                process.stdin.write(json.dumps(message).encode() + b"\n")
                await process.stdin.drain()
                async with asyncio.timeout(timeout):
                    while True:  # answers come in order: first those of calls that timed out
                        line = await process.stdout.readline()
                        if not self._late or not line:
                            break
                        self._late -= 1
            except TimeoutError as exc:
                self._late += 1  # its answer, when it comes, is not the next call's
                raise DealerError(f"worker {self.index} did not answer within {timeout:g}s") from exc
            except (OSError, RuntimeError) as exc:  # uvloop: RuntimeError on a closed pipe
                raise WorkerGone(f"worker {self.index} is gone: {type(exc).__name__}") from exc
            if not line:
                raise WorkerGone(f"worker {self.index} closed its control channel")
            answer: dict[str, Any] = json.loads(line)
            if "error" in answer:
                raise DealerError(str(answer["error"]))
            return answer


class Supervisor:
    """The admin side of a Dealer and the keeper of its workers (implements ``admin.AdminBackend``)."""

    def __init__(self, config: DealerConfig, config_path: Path, state_dir: Path) -> None:
        if not config.token:
            raise DealerError("the Dealer's admin token is empty")
        self.config = config
        self.config_path = config_path
        self.state_dir = state_dir
        self._routing = _saved_routing(state_dir) or make_routing(config.upstreams, config.weights)
        self.workers = [WorkerProcess(i) for i in range(worker_count(config))]
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
        # A predecessor may still be closing its journal, then the worker reads it back.
        timeout = self.config.shutdown_timeout + 20.0 + tally_bytes(self.state_dir) / RECOVERY_BYTES_PER_S
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
        worker.attach(process)  # only now: control messages must not read the ready line
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
        """Stop the admin endpoint, then the worker (it finishes its requests and closes its journal)."""
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

    async def _call(self, message: Mapping[str, Any]) -> dict[str, Any]:
        """Ask the worker; while it restarts, a one-line error (its counts are in its journal, not lost)."""
        try:
            return await self.workers[0].call(message)
        except WorkerGone as exc:
            raise DealerError(f"{exc}: it is restarting, ask again in a moment") from exc

    async def tallies(self) -> Mapping[str, VariantTally]:
        return tallies_from_json((await self._call({"op": "tallies"}))["variants"])

    async def health(self, reset: bool) -> dict[str, Any]:
        return await self._call({"op": "health", "reset": reset})

    async def record_event(
        self, event: str, count: int, value: float, unit: str | None, variant: str | None
    ) -> dict[str, Any]:
        message: dict[str, Any] = {"op": "event", "event": event, "count": count, "value": value}
        if unit is not None:
            message["unit"] = unit
        elif variant is not None and (variant in self._routing.upstreams or variant in await self.tallies()):
            message["variant"] = variant
        else:
            raise DealerError("give a unit or a known variant")
        return await self._call(message)

    async def faults(self, faults: Mapping[str, Any] | None) -> dict[str, Any]:
        """The worker's faults in force (chaos drills), replaced first by ``faults`` when given."""
        message: dict[str, Any] = {"op": "faults"}
        if faults is not None:
            message["faults"] = faults
        return await self._call(message)

    async def persist(self) -> None:
        """The worker compacts its journal into a snapshot now (in a child process; a 10M-unit one takes
        ~35 s here). A worker that is gone has nothing to write: its journal holds every count."""
        with contextlib.suppress(WorkerGone):
            await self.workers[0].call({"op": "persist"}, PERSIST_TIMEOUT)


def _saved_routing(state_dir: Path) -> Routing | None:
    """The last switch saved in ``state_dir`` (``start_dealer`` removes it: its config is authoritative)."""
    path = state_dir / ROUTING_FILE
    if not path.exists():
        return None
    raw = read_json(path)
    try:
        return make_routing(raw["upstreams"], raw["weights"], raw.get("layers", ()))
    except (KeyError, TypeError) as exc:
        raise DealerError(f"{path}: expected upstreams and weights: {exc!r}") from exc
    except DealerError as exc:
        raise DealerError(f"{path}: {exc}") from exc
