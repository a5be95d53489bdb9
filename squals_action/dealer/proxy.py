"""The Dealer's public side: recognise the unit, assign it, count it, forward the request and stream back.

Bodies stream in both directions with bounded buffers and are never decompressed; hop-by-hop headers are
dropped (RFC 9110 section 7.6.1). Paths under ``/_squals/`` are the Dealer's own and never reach an upstream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from multidict import CIMultiDict

from squals_action.dealer.bucketing import unit_key
from squals_action.dealer.fallback import may_retry
from squals_action.dealer.faults import Faults
from squals_action.dealer.interface import DealerConfig, DealerError
from squals_action.dealer.journal import Journal
from squals_action.dealer.layers import ASSIGNMENTS_HEADER
from squals_action.dealer.routing import Assigner, Routing
from squals_action.dealer.tally import Counted, TallyBook, VariantCounter
from squals_action.dealer.tunnel import tunnel, upgrade_of
from squals_action.dealer.upstream import Origin, UpstreamError, UpstreamPool

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
# Request headers never forwarded as received (lower case, as bytes): hop-by-hop ones, Host (the upstream's
# instead), Expect (answered here), and those the Dealer writes itself.
_REQUEST_DROP = frozenset(
    name.encode()
    for name in (
        *HOP_BY_HOP,
        "host",
        "expect",
        "x-forwarded-for",
        "x-forwarded-proto",
        ASSIGNMENTS_HEADER.lower(),
    )
)
# Response headers never forwarded: hop-by-hop ones and the event header the Dealer consumes.
_RESPONSE_DROP = (*sorted(HOP_BY_HOP), EVENT_HEADER.lower())
_CHUNK = 64 * 1024
_SMALL_BODY = 256 * 1024  # bodies up to this size with a Content-Length are read whole

log = logging.getLogger("squals.dealer")


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


class Proxy:
    """Forwards public requests under the routing in force and counts them in ``book``.

    ``routing`` is asked once per request (the shared board in a worker), so a switch takes effect at the
    next assignment; a request keeps the upstream it picked. Only touched from one event loop: no locks.
    With a ``journal``, an answer leaves only once what it acknowledges is written.
    """

    def __init__(
        self,
        config: DealerConfig,
        book: TallyBook,
        routing: Callable[[], Routing],
        journal: Journal | None = None,
    ) -> None:
        self.config = config
        self.book = book
        self.journal = journal
        self.routing = routing
        #: latency and abort faults per upstream (chaos drills), set through the admin API
        self.faults = Faults()
        self._assign = Assigner(config.seed)
        self._unit_kind = config.unit_kind
        self._unit_name = config.unit_name
        self._cookie_name = config.unit_name if config.unit_kind == "cookie" else "squals_unit"
        self._cookie_suffix = f"; Path=/; Max-Age={config.cookie_max_age}; HttpOnly; SameSite=Lax"
        self._pool: UpstreamPool | None = None
        #: With several workers: count a beacon for a unit this one never assigned in the book of one that
        #: did (``None``: no worker knows it). One worker: unset, such a beacon is refused at once.
        self.elsewhere: Callable[[int, str, float], Awaitable[Counted | None]] | None = None
        self.beacons_elsewhere = 0  # beacons another worker counted (GET /healthz shows it per worker)

    async def open(self) -> None:
        """The upstream client: keep-alive connections per upstream (docs/dealer.md, Forwarding)."""
        self._pool = UpstreamPool(self.config.connect_timeout, self.config.read_timeout)

    async def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None

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

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        raw_path = request.raw_path
        if raw_path.startswith(RESERVED_PREFIX):
            return await self._public_endpoint(request)
        if not raw_path.startswith("/"):
            return web.Response(status=400, text="absolute-form request targets are not proxied\n")
        unit, new_unit = self._unit_of(request)
        routing = self.routing()
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
            if self.journal is not None:  # answered only once what it counted is written
                with contextlib.suppress(OSError):  # a full disk must not take the site down (logged)
                    await self.journal.durable()

    def _request_head(
        self,
        request: web.BaseRequest,
        origin: Origin,
        new_unit: str | None,
        assignments: str | None,
        upgrade: str | None,
    ) -> tuple[bytes, bool]:
        """The headers to send upstream: hop-by-hop ones dropped, X-Forwarded-* added, the unit's app-side
        variants in ``X-Squals-Assignments`` (replacing any the client sent).

        A unit the Dealer just made up is added to the forwarded Cookie header, so that the app sees the same
        unit on the first request as on the following ones. Returns the head as bytes and whether the body
        goes chunked (a body without a Content-Length).
        """
        headers = request.headers
        drop = _REQUEST_DROP
        if "Connection" in headers:
            drop = drop | {token.encode() for token in _connection_tokens(headers)}
        host = request.host
        start = f"{request.method} {origin.prefix}{request.raw_path} HTTP/1.1\r\nHost: {origin.authority}\r\n"
        lines = [start.encode("utf-8", "surrogateescape")]
        cookies: list[bytes] = []
        forwarded: list[bytes] = []
        length = False
        for name, value in request.raw_headers:  # as received: no decoding, no copy into a multidict
            low = name.lower()
            if low in drop:
                if low == b"x-forwarded-for":
                    forwarded.append(value)
            elif new_unit is not None and low == b"cookie":
                cookies.append(value)
            elif not (host and low == b"x-forwarded-host"):
                length = length or low == b"content-length"
                lines.append(b"%s: %s\r\n" % (name, value))
        if new_unit is not None:
            cookies.append(f"{self._cookie_name}={new_unit}".encode())
            lines.append(b"Cookie: %s\r\n" % b"; ".join(cookies))
        forwarded.append((request.remote or "").encode())
        added = [f"X-Forwarded-Proto: {request.scheme}"]
        if host:
            added.append(f"X-Forwarded-Host: {host}")
        if assignments is not None:
            added.append(f"{ASSIGNMENTS_HEADER}: {assignments}")
        if upgrade is not None:  # the one hop-by-hop pair a tunnel needs, asked again on the upstream hop
            added.append(f"Connection: Upgrade\r\nUpgrade: {upgrade}")
        chunked = request.body_exists and not length
        if chunked:
            added.append("Transfer-Encoding: chunked")
        lines.append(b"X-Forwarded-For: %s\r\n" % b", ".join(forwarded))
        lines.append(("\r\n".join(added) + "\r\n\r\n").encode("utf-8", "surrogateescape"))
        return b"".join(lines), chunked

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
        assert self._pool is not None
        origin = routing.origins[name]
        upgrade = upgrade_of(request) if "Upgrade" in request.headers else None
        head, chunked = self._request_head(request, origin, new_unit, assignments, upgrade)
        body: Any = None
        if request.body_exists:
            if request.headers.get("Expect", "").lower() == "100-continue" and request.writer is not None:
                await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            body = request.content
        loop = asyncio.get_running_loop()
        started = loop.time()
        if self.faults.active and (abort := await self.faults.inject(name)) is not None:
            counter.add_server_error()
            return self._error(abort, f"fault injected into {name}", name, new_unit)
        try:
            upstream = await self._pool.request(origin, request.method, head, body, chunked)
        except TimeoutError:
            counter.add_connection_error()
            return self._error(504, f"upstream {name} timed out", name, new_unit)
        except UpstreamError as exc:
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
            if upgrade is not None and upstream.status == 101:
                out["Connection"] = "Upgrade"
                out["Upgrade"] = answered.get("Upgrade", upgrade)
                counter.in_flight -= (
                    1  # an open tunnel is not a request in flight: drain does not wait for it
                )
                try:
                    return await tunnel(request, upstream, out)
                finally:
                    counter.in_flight += 1  # handle() takes it off again
            length = upstream.content_length
            if length is not None and length <= _SMALL_BODY and request.method != "HEAD":
                # Read it whole so that headers and body leave in one send (the common, small case).
                try:
                    data = await upstream.read()
                except (UpstreamError, TimeoutError) as exc:
                    counter.add_connection_error()
                    text = f"upstream {name} broke off: {type(exc).__name__}"
                    return self._error(502, text, name, new_unit)
                return web.Response(body=data, status=upstream.status, reason=upstream.reason, headers=out)
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason, headers=out)
            try:
                await response.prepare(request)
                async for chunk in upstream.chunks():
                    await response.write(chunk)
            except (UpstreamError, TimeoutError) as exc:
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
        key = unit_key(unit)
        try:
            value = event_value(raw_value)
            counted = self.book.event(key, event, 1, value)
        except DealerError as exc:
            return web.Response(status=400, text=exc.one_line() + "\n")
        if counted is None and self.elsewhere is not None:
            try:  # another worker may have served the page: it counts it (its book, its journal)
                counted = await self.elsewhere(key, event, value)
            except DealerError as exc:
                return web.Response(status=503, text=f"the event could not be counted: {exc.one_line()}\n")
            if counted is not None:
                self.beacons_elsewhere += 1
                return self._counted(counted)
        if counted is None:
            return web.Response(status=403, text="unknown unit: this Dealer never assigned it a variant\n")
        if self.journal is not None:
            try:
                await self.journal.durable()
            except OSError as exc:
                return web.Response(status=503, text=f"the event could not be recorded: {exc.strerror}\n")
        return self._counted(counted)

    @staticmethod
    def _counted(counted: Counted) -> web.Response:
        return web.Response(
            status=204, headers={VARIANT_HEADER: counted.variant, COUNTED_HEADER: str(counted.counted)}
        )
