"""The Dealer itself: the proxy (``proxy``) and the admin endpoint (``admin``) over one book and routing.

One event loop owns everything, so routing and tallies need no locks: a weight switch replaces the
immutable :class:`Routing` in one assignment, and a request that already picked its upstream keeps it to the
end (nothing in flight is dropped).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Mapping
from pathlib import Path

from aiohttp import web

from squals_action.dealer.admin import admin_app
from squals_action.dealer.config import ROUTING_FILE, TALLY_FILE, atomic_write, read_json
from squals_action.dealer.interface import DealerConfig, DealerError, VariantTally
from squals_action.dealer.proxy import Proxy
from squals_action.dealer.routing import Assigner, Routing, make_routing
from squals_action.dealer.tally import TallyBook

log = logging.getLogger("squals.dealer")


class DealerServer:
    """The proxy and admin servers of one Dealer; ``start``/``stop`` from a running event loop."""

    def __init__(self, config: DealerConfig, state_dir: Path | None = None) -> None:
        if not config.token:
            raise DealerError("the Dealer's admin token is empty")
        self.config = config
        self.state_dir = state_dir
        book = TallyBook()
        routing = make_routing(config.upstreams, config.weights)
        if state_dir is not None:
            book, routing = _load_state(state_dir, book, routing)
        self.proxy = Proxy(config, book, routing)
        self._assign = Assigner(config.seed)
        self._proxy_runner: web.ServerRunner | None = None
        self._admin_runner: web.AppRunner | None = None
        self._persist_task: asyncio.Task[None] | None = None
        self._persist_lock = asyncio.Lock()
        self.port = 0
        self.admin_port = 0

    @property
    def book(self) -> TallyBook:
        return self.proxy.book

    @property
    def routing(self) -> Routing:
        return self.proxy.routing

    # -- state ---------------------------------------------------------------------------------------------

    async def switch(self, routing: Routing) -> None:
        self.proxy.routing = routing
        if self.state_dir is not None:
            atomic_write(self.state_dir / ROUTING_FILE, json.dumps(routing.to_json(), indent=2) + "\n")
        log.info("upstreams now %s, weights %s", routing.to_json()["upstreams"], dict(routing.weights))

    async def tallies(self) -> Mapping[str, VariantTally]:
        return self.book.snapshot()

    async def record_event(self, event: str, count: int, unit: str | None, variant: str | None) -> str:
        key = None
        if unit is not None:
            variant, key = self._assign(unit, self.routing)
        if variant is None or variant not in set(self.routing.upstreams) | set(self.book.variants):
            raise DealerError("give a unit or a known variant")
        if not self.book.variant(variant).add_event(event, count, unit=key):
            raise DealerError("too many distinct event names for this variant")
        self.book.dirty = True
        return variant

    async def persist(self) -> None:
        """Write the tallies now (the JSON is built on the loop)."""
        self.book.dirty = True
        await self._persist_if_dirty()

    async def _persist_if_dirty(self) -> None:
        if self.state_dir is None:
            return
        async with self._persist_lock:  # one writer at a time, so an older snapshot never lands last
            if not self.book.dirty:
                return
            self.book.dirty = False
            text = json.dumps(self.book.to_json(), separators=(",", ":"))
            try:
                await asyncio.to_thread(atomic_write, self.state_dir / TALLY_FILE, text)
            except BaseException:
                self.book.dirty = True
                raise

    async def _persist_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.persist_interval)
            try:
                await self._persist_if_dirty()
            except OSError as exc:  # keep serving; the next round retries
                log.warning("could not persist tallies: %s", exc)

    # -- lifecycle -----------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind the proxy and the admin endpoint; on failure release whatever was already set up."""
        try:
            await self._start()
        except BaseException:
            await self.stop(persist=False)
            raise

    async def _start(self) -> None:
        cfg = self.config
        await self.proxy.open()
        # aiohttp's keep-alive timer runs from the connection's start until a request's headers are parsed
        # (aiohttp >= 3.14.5): the header-read timeout. A handler at work is never cut by it.
        server = web.Server(self.proxy.handle, access_log=None, keepalive_timeout=cfg.header_timeout)
        self._proxy_runner = web.ServerRunner(server, access_log=None, shutdown_timeout=cfg.shutdown_timeout)
        await self._proxy_runner.setup()
        site = web.TCPSite(self._proxy_runner, cfg.host, cfg.port, backlog=1024)
        await site.start()
        self.port = _bound_port(self._proxy_runner)

        self._admin_runner = web.AppRunner(admin_app(self, cfg.token), access_log=None, shutdown_timeout=2.0)
        await self._admin_runner.setup()
        await web.TCPSite(self._admin_runner, "127.0.0.1", cfg.admin_port).start()
        self.admin_port = _bound_port(self._admin_runner)
        if self.state_dir is not None:
            self._persist_task = asyncio.create_task(self._persist_loop())

    async def stop(self, *, persist: bool = True) -> None:
        """Stop accepting, let in-flight requests finish (up to shutdown_timeout), then persist."""
        if self._persist_task is not None:
            self._persist_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._persist_task
        if self._proxy_runner is not None:
            await self._proxy_runner.cleanup()
        if self._admin_runner is not None:
            await self._admin_runner.cleanup()
        await self.proxy.close()
        self._persist_task = self._proxy_runner = self._admin_runner = None
        if persist:
            await self.persist()


def _load_state(state_dir: Path, book: TallyBook, routing: Routing) -> tuple[TallyBook, Routing]:
    """The tallies and the last switch saved in ``state_dir`` (the given ones where nothing was saved)."""
    tally_path = state_dir / TALLY_FILE
    if tally_path.exists():
        book = TallyBook.from_json(read_json(tally_path), str(tally_path))
    routing_path = state_dir / ROUTING_FILE
    if routing_path.exists():
        raw = read_json(routing_path)
        try:
            routing = make_routing(raw["upstreams"], raw["weights"])
        except (KeyError, TypeError) as exc:
            raise DealerError(f"{routing_path}: expected upstreams and weights: {exc!r}") from exc
        except DealerError as exc:
            raise DealerError(f"{routing_path}: {exc}") from exc
    return book, routing


def _bound_port(runner: web.BaseRunner) -> int:
    addresses = runner.addresses
    if not addresses:
        raise DealerError("the Dealer did not bind any socket")
    port = addresses[0][1]
    return int(port)
