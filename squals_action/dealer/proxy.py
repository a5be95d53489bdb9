"""The Dealer's public side: recognise the unit, assign it, count it, forward the request and stream back.

Bodies stream in both directions with bounded buffers and are never decompressed; hop-by-hop headers are
dropped (RFC 9110 section 7.6.1). Paths under ``/_squals/`` are the Dealer's own and never reach an upstream.
The client connections are :mod:`~squals_action.dealer.server`'s, the upstream ones
:mod:`~squals_action.dealer.upstream`'s.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import secrets
from collections.abc import Awaitable, Callable

from squals_action.dealer.bucketing import unit_key
from squals_action.dealer.fallback import may_retry
from squals_action.dealer.faults import Faults
from squals_action.dealer.http1 import connection_tokens
from squals_action.dealer.interface import DealerConfig, DealerError
from squals_action.dealer.journal import Journal
from squals_action.dealer.layers import ASSIGNMENTS_HEADER
from squals_action.dealer.request import FIELDS, Request, date_line
from squals_action.dealer.routing import Assigner, Routing
from squals_action.dealer.tally import Counted, TallyBook, VariantCounter
from squals_action.dealer.tunnel import tunnel, upgrade_of
from squals_action.dealer.upstream import Origin, UpstreamError, UpstreamPool, UpstreamResponse

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
# Response headers never forwarded (lower case, as bytes): hop-by-hop ones and the event header the Dealer
# consumes.
_EVENT_FIELD = EVENT_HEADER.lower().encode()
_RESPONSE_DROP = frozenset({*(name.encode() for name in HOP_BY_HOP), _EVENT_FIELD})
_VARIANT_LINE = VARIANT_HEADER.encode() + b": %s\r\n"
_SMALL_BODY = 256 * 1024  # bodies up to this size with a Content-Length are read whole
_EVENT_BODY = 64 * 1024  # the largest JSON body the events endpoint reads

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
        self._cookie_name = config.unit_name if config.unit_kind == "cookie" else "squals_unit"
        self._unit_field = config.unit_name.lower().encode() if config.unit_kind == "header" else None
        #: the header fields the server keeps apart for every request: those below and the unit's header
        self.fields = FIELDS | {self._unit_field} if self._unit_field else FIELDS
        self._set_cookie = f"Set-Cookie: {self._cookie_name}=%s; Path=/; Max-Age={config.cookie_max_age}; "
        self._set_cookie += "HttpOnly; SameSite=Lax\r\n"
        self._pool: UpstreamPool | None = None
        #: With several workers: count a beacon for a unit this one never assigned in the book of one that
        #: did (``None``: no worker knows it). One worker: unset, such a beacon is refused at once.
        self.elsewhere: Callable[[int, str, float], Awaitable[Counted | None]] | None = None
        self.beacons_elsewhere = 0  # beacons another worker counted (GET /healthz shows it per worker)

    async def open(self) -> None:
        """The upstream client: keep-alive connections per upstream (docs/dealer.md, Forwarding)."""
        config = self.config
        events = frozenset({_EVENT_FIELD})
        self._pool = UpstreamPool(config.connect_timeout, config.read_timeout, fields=events)

    async def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def _unit_of(self, request: Request) -> tuple[str, bool]:
        """The request's unit id and whether it is new (then the response sets the cookie)."""
        if self._unit_field is not None:
            value = request.field(self._unit_field)
            if value:
                return value, False
        cookie = request.field(b"cookie")
        if cookie:
            value = _cookie_value(cookie, self._cookie_name)
            if value:
                return value, False
        return secrets.token_hex(16), True

    async def _durable(self) -> None:
        """Wait until what this request counted is written: an answer acknowledges only what is."""
        if self.journal is not None and self.journal.behind:  # most answers acknowledge nothing new
            with contextlib.suppress(OSError):  # a full disk must not take the site down (logged)
                await self.journal.durable()

    async def handle(self, request: Request) -> None:
        raw_path = request.raw_path
        if raw_path.startswith(RESERVED_PREFIX):
            return await self._public_endpoint(request)
        if not raw_path.startswith("/"):
            return request.text(400, "absolute-form request targets are not proxied\n")
        unit, new_unit = self._unit_of(request)
        routing = self.routing()
        placement, key = self._assign(unit, routing)
        name = placement.upstream
        counter = self.book.arrive(key, placement.cell)  # without layers the cell is the upstream
        counter.in_flight += 1
        try:
            fresh = unit if new_unit else None
            await self._forward(request, routing, name, counter, fresh, key, placement.header)
        finally:
            counter.in_flight -= 1

    def _request_head(
        self,
        request: Request,
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
        fields = request.fields
        drop = _REQUEST_DROP
        if b"connection" in fields:
            drop = drop | connection_tokens(fields[b"connection"])
        host = fields.get(b"host")
        target = f"{request.method} {origin.prefix}{request.raw_path} HTTP/1.1\r\n"
        lines = [target.encode("utf-8", "surrogateescape"), origin.host_line]
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
        forwarded.append(request.remote.encode())
        lines.append(b"X-Forwarded-For: %s\r\nX-Forwarded-Proto: http\r\n" % b", ".join(forwarded))
        if host:
            lines.append(b"X-Forwarded-Host: %s\r\n" % host)
        if assignments is not None:
            lines.append(f"{ASSIGNMENTS_HEADER}: {assignments}\r\n".encode("utf-8", "surrogateescape"))
        if upgrade is not None:  # the one hop-by-hop pair a tunnel needs, asked again on the upstream hop
            lines.append(f"Connection: Upgrade\r\nUpgrade: {upgrade}\r\n".encode("utf-8", "surrogateescape"))
        chunked = request.body is not None and not length
        if chunked:
            lines.append(b"Transfer-Encoding: chunked\r\n")
        lines.append(b"\r\n")
        return b"".join(lines), chunked

    def _response_head(self, upstream: UpstreamResponse, name: str, new_unit: str | None) -> bytes:
        """The upstream's headers to send on: hop-by-hop ones, those its ``Connection`` names and the event
        header dropped; ``X-Squals-Variant``, the new unit's cookie and a missing ``Date`` added."""
        fields = upstream.fields
        drop = _RESPONSE_DROP
        if b"connection" in fields:
            drop = drop | connection_tokens(fields[b"connection"])
        lines = [b"%s: %s\r\n" % (k, v) for k, v in upstream.raw if k.lower() not in drop]
        lines.append(_VARIANT_LINE % name.encode())
        if new_unit is not None:
            lines.append((self._set_cookie % new_unit).encode())
        if b"date" not in fields:
            lines.append(date_line())
        return b"".join(lines)

    async def _forward(
        self,
        request: Request,
        routing: Routing,
        name: str,
        counter: VariantCounter,
        new_unit: str | None,
        key: int,
        assignments: str | None = None,
        spare: bool = True,
    ) -> None:
        """Send ``request`` to ``name``; one it could not take goes once to its fallback (docs/dealer.md)."""
        assert self._pool is not None
        origin = routing.origins[name]
        upgrade = upgrade_of(request)
        head, chunked = self._request_head(request, origin, new_unit, assignments, upgrade)
        if request.body is not None:
            request.send_continue()
        loop = self._pool.loop  # not asyncio.get_running_loop(): on 3.11 that is a getpid() system call
        started = loop.time()
        if self.faults.active and (abort := await self.faults.inject(name)) is not None:
            counter.add_server_error()
            return await self._error(request, abort, f"fault injected into {name}", name, new_unit)
        try:
            upstream = await self._pool.request(origin, request.method, head, request.body, chunked)
        except TimeoutError:
            counter.add_connection_error()
            return await self._error(request, 504, f"upstream {name} timed out", name, new_unit)
        except UpstreamError as exc:
            counter.add_connection_error()
            other = routing.fallback.get(name) if spare else None
            if other is not None and may_retry(exc, request.method, request.body is not None):
                retry = self.book.arrive(key, other)
                return await self._forward(request, routing, other, retry, new_unit, key, assignments, False)
            text = f"upstream {name} unreachable: {type(exc).__name__}"
            return await self._error(request, 502, text, name, new_unit)
        try:
            took = loop.time() - started
            await self._answer(request, upstream, counter, key, name, new_unit, upgrade, took)
        finally:
            upstream.release()

    async def _answer(
        self,
        request: Request,
        upstream: UpstreamResponse,
        counter: VariantCounter,
        key: int,
        name: str,
        new_unit: str | None,
        upgrade: str | None,
        took: float,
    ) -> None:
        """Send the upstream's answer on: whole when small, else streamed; a ``101`` opens the tunnel."""
        counter.add_latency(took * 1000.0)
        if upstream.status >= 500:
            counter.add_server_error()
        events = upstream.field(_EVENT_FIELD)
        if events is not None:
            self._app_events(events, key)
        head = self._response_head(upstream, name, new_unit)
        if upgrade is not None and upstream.status == 101:
            await self._durable()
            switched = upstream.field(b"upgrade") or upgrade
            upgraded = f"Connection: Upgrade\r\nUpgrade: {switched}\r\n".encode("utf-8", "surrogateescape")
            counter.in_flight -= 1  # an open tunnel is not a request in flight: drain does not wait for it
            try:
                return await tunnel(request, upstream, head + upgraded)
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
                return await self._error(request, 502, text, name, new_unit)
            await self._durable()
            return request.answer(upstream.status, upstream.reason, head, data)
        await self._durable()
        request.start(upstream.status, upstream.reason, head, framed=length is not None)
        try:
            async for chunk in upstream.chunks():
                await request.write(chunk)
        except (UpstreamError, TimeoutError) as exc:
            counter.add_connection_error()
            # Headers are gone already: the only honest signal left is to cut the client connection.
            raise ConnectionResetError(f"upstream {name} broke off mid-body: {exc!r}") from exc
        request.end()

    def _app_events(self, value: str, key: int) -> None:
        """Events the app reported in its response (``X-Squals-Event: checkout, revenue=12.5``; repeated
        headers joined), for its unit; malformed ones are skipped (the app's answer still goes out)."""
        for item in value.split(","):
            event, _, raw = item.strip().partition("=")
            try:
                if valid_event(event):
                    self.book.event(key, event, 1, event_value(raw or None))
            except DealerError as exc:
                log.warning("event %r from the app not counted: %s", item.strip(), exc.one_line())

    async def _error(self, request: Request, status: int, text: str, name: str, new_unit: str | None) -> None:
        await self._durable()
        head = f"{VARIANT_HEADER}: {name}\r\n" + (self._set_cookie % new_unit if new_unit is not None else "")
        request.text(status, text + "\n", head.encode())

    async def _public_endpoint(self, request: Request) -> None:
        """``POST /_squals/events`` lets a page report a conversion (and its value) for the unit sending the
        request; only a unit this Dealer assigned counts, once per event kind unless its cap allows more."""
        if request.path != "/_squals/events":
            return request.text(404, "unknown Dealer endpoint\n")
        if request.method != "POST":
            return request.text(405, "only POST\n", b"Allow: POST\r\n")
        query = request.query
        event, raw_value = query.get("event"), query.get("value")
        raw_value = raw_value if raw_value is not None else request.headers.get(VALUE_HEADER)
        if event is None and request.body is not None:
            request.send_continue()
            try:
                body = json.loads(await request.body.read(_EVENT_BODY))
            except (ValueError, UnicodeDecodeError):
                return request.text(400, 'expected JSON {"event": name, "value": number} (at most 64 KiB)\n')
            if isinstance(body, dict):
                event, raw_value = body.get("event"), body.get("value", raw_value)
        if not isinstance(event, str) or not valid_event(event):
            return request.text(400, "event must be 1-64 of [A-Za-z0-9-_.:]\n")
        unit, new_unit = self._unit_of(request)
        if new_unit:
            return request.text(400, "no unit: send the Dealer's cookie or unit header\n")
        key = unit_key(unit)
        try:
            value = event_value(raw_value)
            counted = self.book.event(key, event, 1, value)
        except DealerError as exc:
            return request.text(400, exc.one_line() + "\n")
        if counted is None and self.elsewhere is not None:
            try:  # another worker may have served the page: it counts it (its book, its journal)
                counted = await self.elsewhere(key, event, value)
            except DealerError as exc:
                return request.text(503, f"the event could not be counted: {exc.one_line()}\n")
            if counted is not None:
                self.beacons_elsewhere += 1
                return self._counted(request, counted)
        if counted is None:
            return request.text(403, "unknown unit: this Dealer never assigned it a variant\n")
        if self.journal is not None:
            try:
                await self.journal.durable()
            except OSError as exc:
                return request.text(503, f"the event could not be recorded: {exc.strerror}\n")
        return self._counted(request, counted)

    @staticmethod
    def _counted(request: Request, counted: Counted) -> None:
        head = f"{VARIANT_HEADER}: {counted.variant}\r\n{COUNTED_HEADER}: {counted.counted}\r\n"
        request.answer(204, "No Content", head.encode() + date_line())
