"""The Dealer's supervisor: holds the public port, runs the workers on it, serves the admin endpoint.

It binds the public port first (``SO_REUSEPORT``, never listening: it only keeps the port while a worker comes
and goes), publishes the routing on the shared board, starts the workers and restarts one that dies. Admin
switches go to the board (see ``board``). Tallies, events and load figures are the workers', asked over
their control channels; while a worker restarts they are an error, never zeros.

Each worker counts in its own book and journal. ``GET /tallies`` merges the books by unit (a unit two
workers served counts once); an event for a unit is counted by one worker that assigned it, asked in turn by
the supervisor (``POST /events``) or on behalf of the worker a page's beacon reached (a worker->supervisor
request on the control channel), and refused only when no worker knows the unit.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from aiohttp import web

from squals_action.dealer.admin import admin_app
from squals_action.dealer.board import BOARD_FILE, RoutingBoard
from squals_action.dealer.bucketing import unit_key
from squals_action.dealer.config import (
    RECOVERY_BYTES_PER_S,
    ROUTING_FILE,
    TALLY_DIR,
    WORKERS_ENV,
    atomic_write,
    journal_dir,
    read_json,
    tally_bytes,
)
from squals_action.dealer.faults import Faults
from squals_action.dealer.interface import DealerConfig, DealerError, VariantTally
from squals_action.dealer.routing import Routing, make_routing
from squals_action.dealer.tally import tallies_from_json
from squals_action.dealer.worker import reuse_port_socket

log = logging.getLogger("squals.dealer")

MODULE = "squals_action.dealer"
PERSIST_TIMEOUT = 600.0  # seconds a worker has to compact its journal (other messages: control_timeout)
_MAX_LINE = 1 << 24  # control answers carry every variant's tallies


def worker_count(config: DealerConfig) -> int:
    """The worker processes to run: ``config.workers`` when set, else ``SQUALS_DEALER_WORKERS``, else one per
    core this process may run on; a bad value is a one-line error."""
    if config.workers:
        return config.workers
    raw = os.environ.get(WORKERS_ENV, "").strip()
    if not raw:
        if hasattr(os, "sched_getaffinity"):  # Linux: the cores this process may run on
            return len(os.sched_getaffinity(0)) or 1
        return os.cpu_count() or 1
    if not raw.isdigit() or int(raw) < 1:
        raise DealerError(f"{WORKERS_ENV} must be a whole number of workers >= 1, got {raw!r}")
    return int(raw)


class WorkerGone(DealerError):
    """The worker's process has exited or is exiting: its control channel is closed."""


class UnknownUnit(DealerError):
    """No worker has assigned the unit a variant."""


#: What the supervisor does with a request a worker sent it (``{"request": id, "op": ...}``).
RequestHandler = Callable[["WorkerProcess", dict[str, Any]], Awaitable[dict[str, Any]]]


class WorkerProcess:
    """One worker index: its current process (replaced on restart) and its control channel.

    Each supervisor message carries an ``id`` its answer repeats, so a slow one (a compaction) holds no other
    up and the late answer of a call that timed out is dropped; a line carrying ``request`` is the worker
    asking the supervisor something (an event for a unit it does not know), answered with ``reply``.
    """

    def __init__(self, index: int, on_request: RequestHandler, timeout: float) -> None:
        self.index, self.timeout = index, timeout
        self.process: asyncio.subprocess.Process | None = None
        self.started = 0.0
        self._on_request = on_request
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._ids = itertools.count(1)
        self._tasks: set[asyncio.Task[None]] = set()

    def attach(self, process: asyncio.subprocess.Process) -> None:
        """Talk to ``process`` from now on (its ready line read already)."""
        self.process, self._pending = process, {}
        self._keep(self._read(process, self._pending))

    def _keep(self, work: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def _read(
        self, process: asyncio.subprocess.Process, pending: dict[int, asyncio.Future[dict[str, Any]]]
    ) -> None:
        """Route the worker's lines: answers to the calls waiting for them, requests to the handler."""
        assert process.stdout is not None
        with contextlib.suppress(OSError, ValueError):  # ValueError: a line longer than _MAX_LINE
            while line := await process.stdout.readline():
                message: dict[str, Any] = json.loads(line)
                if "request" in message:
                    self._keep(self._serve(process, message))
                    continue
                waiter = pending.pop(int(message.pop("id", 0)), None)
                if waiter is not None and not waiter.done():  # else its call timed out: dropped
                    waiter.set_result(message)
        for waiter in pending.values():
            if not waiter.done():
                waiter.set_exception(WorkerGone(f"worker {self.index} closed its control channel"))
        pending.clear()

    async def _serve(self, process: asyncio.subprocess.Process, message: dict[str, Any]) -> None:
        try:
            reply = await self._on_request(self, message)
        except UnknownUnit:
            reply = {"unknown": True}
        except DealerError as exc:
            reply = {"error": exc.one_line()}
        reply["reply"] = message["request"]
        if process.stdin is not None and process.returncode is None:
            with contextlib.suppress(OSError, RuntimeError):
                process.stdin.write(json.dumps(reply).encode() + b"\n")
                await process.stdin.drain()

    async def call(self, message: Mapping[str, Any], timeout: float | None = None) -> dict[str, Any]:
        """Send one control message and wait for its answer (at most ``timeout`` seconds, by default the
        config's ``control_timeout``)."""
        timeout = self.timeout if timeout is None else timeout
        process = self.process
        if process is None or process.stdin is None or process.returncode is not None:
            raise WorkerGone(f"worker {self.index} is not running")
        ask, pending = next(self._ids), self._pending
        waiter: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        pending[ask] = waiter
        try:
            process.stdin.write(json.dumps({**message, "id": ask}).encode() + b"\n")
            await process.stdin.drain()
            answer = await asyncio.wait_for(waiter, timeout)
        except TimeoutError as exc:
            raise DealerError(f"worker {self.index} did not answer within {timeout:g}s") from exc
        except (OSError, RuntimeError) as exc:  # uvloop: RuntimeError on a closed pipe
            raise WorkerGone(f"worker {self.index} is gone: {type(exc).__name__}") from exc
        finally:
            pending.pop(ask, None)
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
        timeout = config.control_timeout
        self.workers = [WorkerProcess(i, self._worker_request, timeout) for i in range(worker_count(config))]
        self._faults: Mapping[str, Any] = {}  # what PUT /faults set last: a restarted worker gets it too
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
            await asyncio.to_thread(_fold_retired_journals, self.state_dir, len(self.workers))
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
            "--workers",
            str(len(self.workers)),
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
        if self._faults:
            await worker.call({"op": "faults", "faults": self._faults})

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

    async def change(self, edit: Callable[[Routing], Routing]) -> Routing:
        """Apply ``edit`` to the routing in force under the switch lock, so concurrent admin calls (two
        experiments' slots) each build on the other's result; save it (a restarted Dealer comes back on it),
        then switch every worker in one store of the board."""
        async with self._switch_lock:
            routing = edit(self._routing)
            if routing is not self._routing:
                atomic_write(self.state_dir / ROUTING_FILE, json.dumps(routing.to_json(), indent=2) + "\n")
                assert self._board is not None
                self._board.publish(routing)
                self._routing = routing
                log.info(
                    "upstreams now %s, weights %s, %d slot(s)",
                    routing.to_json()["upstreams"],
                    dict(routing.weights),
                    len(routing.layers),
                )
        return routing

    async def _call(self, worker: WorkerProcess, message: Mapping[str, Any]) -> dict[str, Any]:
        """Ask a worker; while it restarts, a one-line error (its counts are in its journal, not lost)."""
        try:
            return await worker.call(message)
        except WorkerGone as exc:
            raise DealerError(f"{exc}: it is restarting, ask again in a moment") from exc

    async def _call_all(self, message: Mapping[str, Any]) -> list[dict[str, Any]]:
        return list(await asyncio.gather(*(self._call(w, message) for w in self.workers)))

    async def tallies(self) -> Mapping[str, VariantTally]:
        """One worker's tallies as it counts them; several workers' merged by unit (off the event loop)."""
        if len(self.workers) == 1:
            return tallies_from_json((await self._call(self.workers[0], {"op": "tallies"}))["variants"])
        asked = [self._call(w, {"op": "columns"}) for w in self.workers]
        answers = await asyncio.gather(*asked, return_exceptions=True)
        exports = [a for a in answers if isinstance(a, dict)]
        paths = [Path(e["path"]) for e in exports]
        failed = [a for a in answers if isinstance(a, BaseException)]
        if failed:
            for path in paths:
                path.unlink(missing_ok=True)
            raise failed[0]
        merged = await asyncio.to_thread(_merge_exports, paths, self.config.event_caps)
        in_flight = _summed([e["in_flight"] for e in exports])
        errors = _summed([e["in_flight_errors"] for e in exports])
        return {
            name: dataclasses.replace(
                tally, in_flight=in_flight.get(name, 0), in_flight_errors=errors.get(name, 0)
            )
            for name, tally in merged.items()
        }

    async def health(self, reset: bool) -> dict[str, Any]:
        """The workers' figures: requests in flight per cell and store sizes summed, the largest loop lag, and
        each worker's own."""
        answers = await self._call_all({"op": "health", "reset": reset})
        return {
            "in_flight": _summed([a["in_flight"] for a in answers]),
            "loop_lag_max_ms": max(a["loop_lag_max_ms"] for a in answers),
            "units": sum(a["units"] for a in answers),
            "unit_store_bytes": sum(a["unit_store_bytes"] for a in answers),
            "workers": answers,
        }

    async def record_event(
        self, event: str, count: int, value: float, unit: str | None, variant: str | None
    ) -> dict[str, Any]:
        message: dict[str, Any] = {"op": "event", "event": event, "count": count, "value": value}
        if unit is not None:
            try:
                return await self._count_for_unit({**message, "key": unit_key(unit)}, None)
            except UnknownUnit as exc:
                raise UnknownUnit(f"unknown unit {unit[:64]!r}: {exc}") from exc
        if variant is not None and (variant in self._routing.upstreams or variant in await self.tallies()):
            return await self._call(self.workers[0], {**message, "variant": variant})
        raise DealerError("give a unit or a known variant")

    async def _count_for_unit(self, message: dict[str, Any], skip: WorkerProcess | None) -> dict[str, Any]:
        """Count an event in the book of the first worker (by index) that assigned the unit, so it is in one
        book only; refused (UnknownUnit) only when every worker answered that it does not know the unit."""
        restarting = []
        for worker in self.workers:
            if worker is skip:
                continue
            try:
                answer = await worker.call(message)
            except WorkerGone:
                restarting.append(worker.index)
                continue
            if answer.get("variant") is not None:
                return answer
        if restarting:
            raise DealerError(
                f"worker {restarting[0]} is restarting and may know the unit: ask again in a moment"
            )
        raise UnknownUnit("this Dealer never assigned it a variant")

    async def _worker_request(self, worker: WorkerProcess, message: dict[str, Any]) -> dict[str, Any]:
        """A worker asks: count this event for a unit it does not know, in the book of one that does."""
        if message.get("op") != "event":
            raise DealerError(f"unknown worker request {message.get('op')!r}")
        fields = {k: message[k] for k in ("event", "count", "value", "key")}
        return await self._count_for_unit({"op": "event", **fields}, worker)

    async def faults(self, faults: Mapping[str, Any] | None) -> dict[str, Any]:
        """The faults in force (chaos drills), replaced first by ``faults`` in every worker when given; what
        they did, summed over the workers."""
        message: dict[str, Any] = {"op": "faults"}
        if faults is not None:
            Faults().replace(faults)  # checked first: then in force in every worker, a restarting one too
            self._faults = message["faults"] = dict(faults)
        answers = await self._call_all(message)
        injected: dict[str, dict[str, int]] = {}
        for answer in answers:
            for name, counts in answer["injected"].items():
                mine = injected.setdefault(name, {})
                for key, n in counts.items():
                    mine[key] = mine.get(key, 0) + int(n)
        return {"faults": answers[0]["faults"], "injected": injected}

    async def persist(self) -> None:
        """Every worker compacts its journal into a snapshot now (in a child process; a 10M-unit one takes
        ~35 s here). A worker that is gone has nothing to write: its journal holds every count."""

        async def one(worker: WorkerProcess) -> None:
            with contextlib.suppress(WorkerGone):
                await worker.call({"op": "persist"}, PERSIST_TIMEOUT)

        await asyncio.gather(*(one(w) for w in self.workers))


def _summed(counts: Sequence[Mapping[str, int]]) -> dict[str, int]:
    """Per-name counts of several workers added up."""
    out: dict[str, int] = {}
    for one in counts:
        for name, count in one.items():
            out[name] = out.get(name, 0) + int(count)
    return out


def _merge_exports(paths: Sequence[Path], caps: Mapping[str, int]) -> dict[str, VariantTally]:
    """The tallies of the workers' exported books, merged by unit (numpy: runs in a thread)."""
    from squals_action.dealer import columns as cols
    from squals_action.dealer.tally import merged_tallies

    try:
        return merged_tallies([cols.load(path) for path in paths], caps)
    finally:
        for path in paths:
            path.unlink(missing_ok=True)


def _fold_retired_journals(state_dir: Path, workers: int) -> None:
    """Journals of worker indices this Dealer does not run (it ran more workers before) move into worker 0's,
    so their counts stay in the tallies."""
    retired = [
        path
        for path in sorted((state_dir / TALLY_DIR).glob("w[0-9]*"))
        if path.name[1:].isdigit() and int(path.name[1:]) >= workers
    ]
    if retired:
        from squals_action.dealer.journal import fold

        for path in retired:
            log.info("worker %s is not run any more: its journal moves into worker 0's", path.name[1:])
            fold(path, journal_dir(state_dir, 0))


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
