"""The Dealer itself: an aiohttp reverse proxy with sticky weighted routing, tallies and a loopback admin API.

One event loop owns everything, so routing and tallies need no locks: a weight switch replaces the
immutable :class:`Routing` in one assignment, and a request that already picked its upstream keeps it to the
end (nothing in flight is dropped). Bodies stream in both directions with bounded buffers; nothing is
decompressed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import math
import os
import secrets
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from squals_action.dealer.bucketing import normalise_weights, unit_key
from squals_action.dealer.config import (
    ROUTING_FILE,
    TALLY_DIR,
    atomic_write,
    read_json,
)
from squals_action.dealer.fallback import may_retry
from squals_action.dealer.faults import Faults
from squals_action.dealer.interface import DealerConfig, DealerError
from squals_action.dealer.journal import Journal, recover, release_free_memory
from squals_action.dealer.lag import LagProbe
from squals_action.dealer.layers import ASSIGNMENTS_HEADER, Placement, check_slots
from squals_action.dealer.routing import Routing, make_routing
from squals_action.dealer.tally import TallyBook, VariantCounter, tally_to_json

log = logging.getLogger("squals.dealer")

# RFC 9110 section 7.6.1 (and RFC 7230 6.1): connection-specific headers a proxy must not forward.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
EVENT_HEADER = "X-Squals-Event"
VALUE_HEADER = "X-Squals-Value"
COUNTED_HEADER = "X-Squals-Counted"
#: The largest event value taken (in absolute value): sums of squares stay exact enough in a float.
MAX_VALUE = 1e12
VARIANT_HEADER = "X-Squals-Variant"
RESERVED_PREFIX = "/_squals/"
_EVENT_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:")
# Request headers never forwarded: hop-by-hop ones, Host (the upstream's instead), Expect (answered here).
_REQUEST_DROP = (*sorted(HOP_BY_HOP), "host", "expect")
# Response headers never forwarded: hop-by-hop ones and the event header the Dealer consumes.
_RESPONSE_DROP = (*sorted(HOP_BY_HOP), EVENT_HEADER.lower())
_CHUNK = 64 * 1024
_SMALL_BODY = 256 * 1024  # bodies up to this size with a Content-Length are read whole
# Units whose (variant, unit key) is remembered for the current routing; cleared when full or on a switch.
_ASSIGN_CACHE = 65_536


def valid_event(name: str) -> bool:
    return 0 < len(name) <= 64 and all(c in _EVENT_CHARS for c in name)


def event_value(raw: object) -> float:
    """An event's value (absent: 0): a finite number within MAX_VALUE, else DealerError saying so."""
    if raw is None:
        return 0.0
    try:
        value = float(raw) if isinstance(raw, (str, int, float)) and not isinstance(raw, bool) else math.nan
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or abs(value) > MAX_VALUE:
        raise DealerError(f"value must be a finite number within +-{MAX_VALUE:g}, got {raw!r}")
    return value


def _connection_tokens(headers: Any) -> set[str]:
    return {token.strip().lower() for value in headers.getall("Connection", ()) for token in value.split(",")}


def _forwardable(headers: Any, drop: tuple[str, ...]) -> CIMultiDict[str]:
    """A copy of ``headers`` (order, case and repeats kept) without ``drop`` and what ``Connection`` names.

    One copy in C and a few deletions: cheaper per request than filtering header by header in Python.
    """
    out: CIMultiDict[str] = CIMultiDict(headers)
    for name in drop:
        if name in out:
            del out[name]
    if "Connection" in headers:
        for token in _connection_tokens(headers):
            if token and token in out:
                del out[token]
    return out


def _cookie_value(header: str, name: str) -> str | None:
    if ";" not in header:  # one cookie, the common case: no split, same answer as the loop below
        key, sep, value = header.strip().partition("=")
        return (value.strip().strip('"') or None) if sep and key == name else None
    for part in header.split(";"):
        key, sep, value = part.strip().partition("=")
        if sep and key == name:
            return value.strip().strip('"') or None
    return None


class DealerServer:
    """The proxy and admin servers of one Dealer; ``start``/``stop`` from a running event loop."""

    def __init__(self, config: DealerConfig, state_dir: Path | None = None) -> None:
        if not config.token:
            raise DealerError("the Dealer's admin token is empty")
        self.config = config
        self.state_dir = state_dir
        self.book = TallyBook(config.event_caps, config.max_units)
        self._journal: Journal | None = None
        self._next_segment = 1
        self.lag = LagProbe()
        self.faults = Faults()
        self.routing = make_routing(config.upstreams, config.weights)
        if state_dir is not None:
            self._load_state(state_dir)
        self._seed = config.seed
        self._unit_kind = config.unit_kind
        self._unit_name = config.unit_name
        self._cookie_name = config.unit_name if config.unit_kind == "cookie" else "squals_unit"
        self._cookie_suffix = f"; Path=/; Max-Age={config.cookie_max_age}; HttpOnly; SameSite=Lax"
        self._session: aiohttp.ClientSession | None = None
        self._assigned: dict[str, tuple[Placement, int]] = {}  # unit -> (placement, key) under _assigned_for
        self._assigned_for: Routing | None = None
        self._proxy_runner: web.ServerRunner | None = None
        self._admin_runner: web.AppRunner | None = None
        self.port = 0
        self.admin_port = 0

    # -- state ---------------------------------------------------------------------------------------------

    def _load_state(self, state_dir: Path) -> None:
        if (state_dir / TALLY_DIR).is_dir():
            columns, self._next_segment = recover(state_dir / TALLY_DIR)
            self.book = TallyBook.from_columns(columns, self.config.event_caps, self.config.max_units)
            del columns
            release_free_memory()
        routing_path = state_dir / ROUTING_FILE
        if routing_path.exists():
            raw = read_json(routing_path)
            try:
                self.routing = make_routing(raw["upstreams"], raw["weights"], raw.get("layers", ()))
            except (KeyError, TypeError) as exc:
                raise DealerError(f"{routing_path}: expected upstreams and weights: {exc!r}") from exc
            except DealerError as exc:
                raise DealerError(f"{routing_path}: {exc}") from exc

    def _save_routing(self) -> None:
        if self.state_dir is not None:
            atomic_write(self.state_dir / ROUTING_FILE, json.dumps(self.routing.to_json(), indent=2) + "\n")

    async def persist(self) -> None:
        """Compact the journal into a snapshot now (in a child process; the loop only awaits it)."""
        if self._journal is not None:
            await self._journal.compact()

    # -- lifecycle -----------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind the proxy and the admin endpoint; on failure release whatever was already set up."""
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> None:
        cfg = self.config
        timeout = aiohttp.ClientTimeout(
            total=None,
            connect=cfg.connect_timeout,
            sock_connect=cfg.connect_timeout,
            sock_read=cfg.read_timeout,
        )
        self._session = aiohttp.ClientSession(
            timeout=timeout,
            auto_decompress=False,
            connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=30.0, ttl_dns_cache=300),
            cookie_jar=aiohttp.DummyCookieJar(),
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
            trust_env=False,
        )
        # aiohttp's keep-alive timer runs from the connection's start until a request's headers are parsed
        # (aiohttp >= 3.14.5): the header-read timeout. A handler at work is never cut by it.
        server = web.Server(self._handle, access_log=None, keepalive_timeout=cfg.header_timeout)
        self._proxy_runner = web.ServerRunner(server, access_log=None, shutdown_timeout=cfg.shutdown_timeout)
        await self._proxy_runner.setup()
        site = web.TCPSite(self._proxy_runner, cfg.host, cfg.port, backlog=1024)
        await site.start()
        self.port = _bound_port(self._proxy_runner)

        admin = web.Application(middlewares=[self._auth])
        admin.add_routes(
            [
                web.get("/healthz", self._admin_health),
                web.get("/tallies", self._admin_tallies),
                web.get("/routing", self._admin_routing),
                web.put("/weights", self._admin_weights),
                web.put("/upstreams", self._admin_upstreams),
                web.put("/layers", self._admin_layers),
                web.post("/events", self._admin_events),
                web.post("/persist", self._admin_persist),
                web.get("/faults", self._admin_faults),
                web.put("/faults", self._admin_faults),
            ]
        )
        self._admin_runner = web.AppRunner(admin, access_log=None, shutdown_timeout=2.0)
        await self._admin_runner.setup()
        await web.TCPSite(self._admin_runner, "127.0.0.1", cfg.admin_port).start()
        self.admin_port = _bound_port(self._admin_runner)
        if self.state_dir is not None:
            self._journal = Journal(
                self.state_dir / TALLY_DIR, self._next_segment, self.book.names, self.config.journal_bytes
            )
            self.book.journal = self._journal.append
            self.book.names_changed = self._journal.names_changed
            self._journal.names_changed()
        self.lag.start()

    async def stop(self) -> None:
        """Stop accepting, let in-flight requests finish (up to shutdown_timeout), then close the journal
        (everything counted is written already)."""
        await self.lag.stop()
        if self._proxy_runner is not None:
            await self._proxy_runner.cleanup()
        if self._admin_runner is not None:
            await self._admin_runner.cleanup()
        if self._session is not None:
            await self._session.close()
        self._proxy_runner = self._admin_runner = self._session = None
        if self._journal is not None:
            await self._journal.close()
            self._journal = None
        self.book.close()

    # -- proxy ---------------------------------------------------------------------------------------------

    def _unit_of(self, request: web.BaseRequest) -> tuple[str, bool]:
        """The request's unit id and whether it is new (then the response sets the cookie)."""
        headers = request.headers
        if self._unit_kind == "header":
            value = headers.get(self._unit_name)
            if value:
                return value, False
        cookie = headers.get("Cookie")
        if cookie:
            value = _cookie_value(cookie, self._cookie_name)
            if value:
                return value, False
        return secrets.token_hex(16), True

    def _assign(self, unit: str, routing: Routing) -> tuple[Placement, int]:
        """The unit's placement under ``routing`` and its unit key, remembered until the routing changes.

        Both are pure functions of the unit (and the routing), so remembering them changes no answer; it saves
        three keyed hashes and two logarithms per request of a returning unit.
        """
        if routing is not self._assigned_for:
            self._assigned.clear()
            self._assigned_for = routing
        hit = self._assigned.get(unit)
        if hit is None:
            if len(self._assigned) >= _ASSIGN_CACHE:
                self._assigned.clear()
            hit = self._assigned[unit] = (routing.place(unit, self._seed), unit_key(unit))
        return hit

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        raw_path = request.raw_path
        if raw_path.startswith(RESERVED_PREFIX):
            return await self._public_endpoint(request)
        if not raw_path.startswith("/"):
            return web.Response(status=400, text="absolute-form request targets are not proxied\n")
        unit, new_unit = self._unit_of(request)
        routing = self.routing
        placement, key = self._assign(unit, routing)
        name = placement.upstream
        counter = self.book.arrive(key, placement.cell)  # without layers the cell is the upstream
        counter.in_flight += 1
        try:
            return await self._forward(
                request, routing, name, counter, unit if new_unit else None, key, placement.header
            )
        finally:
            counter.in_flight -= 1
            if self._journal is not None:  # answered only once what it counted is written
                with contextlib.suppress(OSError):  # a full disk must not take the site down (logged)
                    await self._journal.durable()

    def _request_headers(
        self, request: web.BaseRequest, new_unit: str | None, assignments: str | None
    ) -> CIMultiDict[str]:
        """The headers to send upstream: hop-by-hop ones dropped, X-Forwarded-* added, the unit's app-side
        variants in ``X-Squals-Assignments`` (replacing any the client sent).

        A unit the Dealer just made up is added to the forwarded Cookie header, so that the app sees the same
        unit on the first request as on the following ones.
        """
        headers = request.headers
        out = _forwardable(headers, _REQUEST_DROP)
        if new_unit is not None:
            unit_cookie = f"{self._cookie_name}={new_unit}"
            cookies = out.popall("Cookie", [])
            out["Cookie"] = "; ".join([*cookies, unit_cookie])
        remote = request.remote or ""
        if "X-Forwarded-For" in headers:
            previous = ", ".join(headers.getall("X-Forwarded-For"))
            out["X-Forwarded-For"] = f"{previous}, {remote}"
        else:
            out["X-Forwarded-For"] = remote
        out.popall(ASSIGNMENTS_HEADER, None)
        if assignments is not None:
            out[ASSIGNMENTS_HEADER] = assignments
        out["X-Forwarded-Proto"] = request.scheme
        if request.host:
            out["X-Forwarded-Host"] = request.host
        return out

    async def _forward(
        self,
        request: web.BaseRequest,
        routing: Routing,
        name: str,
        counter: VariantCounter,
        new_unit: str | None,
        key: int,
        assignments: str | None = None,
        spare: bool = True,
    ) -> web.StreamResponse:
        """Send ``request`` to ``name``; one it could not take goes once to its fallback (docs/dealer.md)."""
        assert self._session is not None
        url = URL(routing.bases[name] + request.raw_path, encoded=True)
        headers = self._request_headers(request, new_unit, assignments)
        data: Any = None
        if request.body_exists:
            if request.headers.get("Expect", "").lower() == "100-continue" and request.writer is not None:
                await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            data = request.content
        loop = asyncio.get_running_loop()
        started = loop.time()
        if self.faults.active and (abort := await self.faults.inject(name)) is not None:
            counter.add_server_error()
            return self._error(abort, f"fault injected into {name}", name, new_unit)
        try:
            upstream = await self._session.request(
                request.method, url, headers=headers, data=data, allow_redirects=False
            )
        except TimeoutError:
            counter.add_connection_error()
            return self._error(504, f"upstream {name} timed out", name, new_unit)
        except (aiohttp.ClientError, OSError) as exc:
            counter.add_connection_error()
            other = routing.fallback.get(name) if spare else None
            if other is not None and may_retry(exc, request.method, request.body_exists):
                retry = self.book.arrive(key, other)
                return await self._forward(request, routing, other, retry, new_unit, key, assignments, False)
            return self._error(502, f"upstream {name} unreachable: {type(exc).__name__}", name, new_unit)
        try:
            counter.add_latency((loop.time() - started) * 1000.0)
            if upstream.status >= 500:
                counter.add_server_error()
            answered = upstream.headers
            if EVENT_HEADER in answered:
                self._app_events(answered.getall(EVENT_HEADER), key)
            out = _forwardable(answered, _RESPONSE_DROP)
            out[VARIANT_HEADER] = name
            if new_unit is not None:
                out.add("Set-Cookie", f"{self._cookie_name}={new_unit}{self._cookie_suffix}")
            length = upstream.content_length
            if length is not None and length <= _SMALL_BODY and request.method != "HEAD":
                # Read it whole so that headers and body leave in one send (the common, small case).
                try:
                    body = await upstream.read()
                except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, TimeoutError) as exc:
                    counter.add_connection_error()
                    text = f"upstream {name} broke off: {type(exc).__name__}"
                    return self._error(502, text, name, new_unit)
                return web.Response(body=body, status=upstream.status, reason=upstream.reason, headers=out)
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason, headers=out)
            try:
                await response.prepare(request)
                async for chunk in upstream.content.iter_chunked(_CHUNK):
                    await response.write(chunk)
            except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, TimeoutError) as exc:
                counter.add_connection_error()
                # Headers are gone already: the only honest signal left is to cut the client connection.
                raise ConnectionResetError(f"upstream {name} broke off mid-body: {exc!r}") from exc
            await response.write_eof()
            return response
        finally:
            upstream.release()

    def _app_events(self, values: list[str], key: int) -> None:
        """Events the app reported in its response (``X-Squals-Event: checkout, revenue=12.5``), for its unit;
        malformed ones are skipped (the app's answer still goes out)."""
        for value in values:
            for item in value.split(","):
                event, _, raw = item.strip().partition("=")
                try:
                    if valid_event(event):
                        self.book.event(key, event, 1, event_value(raw or None))
                except DealerError as exc:
                    log.warning("event %r from the app not counted: %s", item.strip(), exc.one_line())

    def _error(self, status: int, text: str, name: str, new_unit: str | None) -> web.Response:
        response = web.Response(status=status, text=text + "\n")
        response.headers[VARIANT_HEADER] = name
        if new_unit is not None:
            response.headers.add("Set-Cookie", f"{self._cookie_name}={new_unit}{self._cookie_suffix}")
        return response

    async def _public_endpoint(self, request: web.BaseRequest) -> web.StreamResponse:
        """``POST /_squals/events`` lets a page report a conversion (and its value) for the unit sending the
        request; only a unit this Dealer assigned counts, once per event kind unless its cap allows more."""
        if request.path != "/_squals/events":
            return web.Response(status=404, text="unknown Dealer endpoint\n")
        if request.method != "POST":
            return web.Response(status=405, headers={"Allow": "POST"})
        event, raw_value = request.query.get("event"), request.query.get("value")
        raw_value = raw_value if raw_value is not None else request.headers.get(VALUE_HEADER)
        if event is None and request.can_read_body:
            try:
                body = await request.json()
            except (ValueError, UnicodeDecodeError):
                return web.Response(status=400, text='expected JSON {"event": name, "value": number}\n')
            if isinstance(body, dict):
                event, raw_value = body.get("event"), body.get("value", raw_value)
        if not isinstance(event, str) or not valid_event(event):
            return web.Response(status=400, text="event must be 1-64 of [A-Za-z0-9-_.:]\n")
        unit, new_unit = self._unit_of(request)
        if new_unit:
            return web.Response(status=400, text="no unit: send the Dealer's cookie or unit header\n")
        try:
            counted = self.book.event(unit_key(unit), event, 1, event_value(raw_value))
        except DealerError as exc:
            return web.Response(status=400, text=exc.one_line() + "\n")
        if counted is None:
            return web.Response(status=403, text="unknown unit: this Dealer never assigned it a variant\n")
        if self._journal is not None:
            try:
                await self._journal.durable()
            except OSError as exc:
                return web.Response(status=503, text=f"the event could not be recorded: {exc.strerror}\n")
        return web.Response(
            status=204, headers={VARIANT_HEADER: counted.variant, COUNTED_HEADER: str(counted.counted)}
        )

    # -- admin ---------------------------------------------------------------------------------------------

    @web.middleware
    async def _auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path != "/healthz":
            given = request.headers.get("Authorization", "")
            expected = f"Bearer {self.config.token}"
            if not hmac.compare_digest(given.encode(), expected.encode()):
                return web.json_response({"error": "missing or wrong admin token"}, status=401)
        try:
            response: web.StreamResponse = await handler(request)
        except DealerError as exc:
            return web.json_response({"error": exc.one_line()}, status=400)
        return response

    async def _admin_health(self, request: web.Request) -> web.Response:
        """Liveness, and the loop's largest lag in ms (``?reset=1`` starts a new measurement)."""
        lag = self.lag.read(reset=request.query.get("reset") == "1")
        return web.json_response(
            {
                "ok": True,
                "pid": os.getpid(),
                "time": time.time(),
                "loop_lag_max_ms": round(lag, 3),
                "units": self.book.store.units,
                "unit_store_bytes": self.book.store.nbytes(),
            }
        )

    async def _admin_tallies(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"variants": {name: tally_to_json(t) for name, t in self.book.snapshot().items()}}
        )

    async def _admin_routing(self, request: web.Request) -> web.Response:
        return web.json_response(self.routing.to_json())

    async def _json_body(self, request: web.Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError) as exc:
            raise DealerError(f"request body is not JSON: {exc}") from exc
        if not isinstance(body, dict):
            raise DealerError("request body must be a JSON object")
        return body

    async def _admin_weights(self, request: web.Request) -> web.Response:
        body = await self._json_body(request)
        weights = body.get("weights")
        if not isinstance(weights, dict):
            raise DealerError('expected {"weights": {name: weight}}')
        current = self.routing
        self.routing = replace(current, weights=normalise_weights(weights, tuple(current.upstreams)))
        self._save_routing()
        log.info("weights now %s", dict(self.routing.weights))
        return web.json_response(self.routing.to_json())

    async def _admin_upstreams(self, request: web.Request) -> web.Response:
        body = await self._json_body(request)
        upstreams = body.get("upstreams")
        weights = body.get("weights")
        if not isinstance(upstreams, dict):
            raise DealerError('expected {"upstreams": {name: url}, "weights": {...}}')
        if weights is None:
            weights = {k: v for k, v in self.routing.weights.items() if k in upstreams}
        if not isinstance(weights, dict):
            raise DealerError("weights must be an object")
        self.routing = make_routing(upstreams, weights, [s.to_json() for s in self.routing.layers])
        self._save_routing()
        log.info("upstreams now %s, weights %s", dict(upstreams), dict(self.routing.weights))
        return web.json_response(self.routing.to_json())

    async def _admin_layers(self, request: web.Request) -> web.Response:
        """``PUT /layers``: the experiments placed at once (an empty list: back to the weights alone)."""
        body = await self._json_body(request)
        current = self.routing
        self.routing = replace(current, layers=check_slots(body.get("layers"), current.upstreams))
        self._save_routing()
        log.info("layers now %s", [s.to_json() for s in self.routing.layers])
        return web.json_response(self.routing.to_json())

    async def _admin_events(self, request: web.Request) -> web.Response:
        body = await self._json_body(request)
        event = body.get("event")
        if not isinstance(event, str) or not valid_event(event):
            raise DealerError("event must be 1-64 of [A-Za-z0-9-_.:]")
        count = body.get("count", 1)
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise DealerError("count must be a positive integer")
        value = event_value(body.get("value"))
        unit, variant = body.get("unit"), body.get("variant")
        if isinstance(unit, str) and unit:
            counted = self.book.event(unit_key(unit), event, count, value)
            if counted is None:
                raise DealerError(f"unknown unit {unit[:64]!r}: this Dealer never assigned it a variant")
            result = {"variant": counted.variant, "counted": counted.counted}
        elif isinstance(variant, str) and variant in set(self.routing.upstreams) | set(self.book.variants):
            self.book.plain_event(variant, event, count)
            result = {"variant": variant, "counted": count}
        else:
            raise DealerError("give a unit or a known variant")
        if self._journal is not None:
            try:
                await self._journal.durable()
            except OSError as exc:
                raise DealerError(f"the event could not be recorded: {exc.strerror}") from exc
        return web.json_response(result)

    async def _admin_faults(self, request: web.Request) -> web.Response:
        """``GET``: the faults in force and what they did; ``PUT {"faults": {...}}``: replace them."""
        if request.method == "PUT":
            body = await self._json_body(request)
            self.faults.replace(body.get("faults"))
            log.info("faults now %s", self.faults.to_json()["faults"])
        return web.json_response(self.faults.to_json())

    async def _admin_persist(self, request: web.Request) -> web.Response:
        await self.persist()
        return web.json_response({"ok": True})


def _bound_port(runner: web.BaseRunner) -> int:
    addresses = runner.addresses
    if not addresses:
        raise DealerError("the Dealer did not bind any socket")
    port = addresses[0][1]
    return int(port)
