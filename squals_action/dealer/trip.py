"""One proxied request's trip to an upstream and back: the header rules both ways, the answer, its failures.

The common request (no body, an idle pooled connection, a small answer) goes from the client's callback to the
upstream connection's and back with no task and no future: on the 2-core bench machine a task and two futures
per request were a quarter of the Dealer's CPU per proxied request. Anything else continues in a coroutine.
Bodies stream in both directions with bounded buffers and are never decompressed; hop-by-hop headers are
dropped (RFC 9110 section 7.6.1).
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable
from typing import Protocol

from squals_action.dealer.fallback import may_retry
from squals_action.dealer.faults import Faults
from squals_action.dealer.http1 import connection_tokens
from squals_action.dealer.journal import Journal
from squals_action.dealer.layers import ASSIGNMENTS_HEADER
from squals_action.dealer.request import Request, date_line
from squals_action.dealer.routing import Routing
from squals_action.dealer.tally import TallyBook, VariantCounter
from squals_action.dealer.tunnel import tunnel, upgrade_of
from squals_action.dealer.upstream import Origin, UpstreamError, UpstreamPool, UpstreamResponse, resendable

VARIANT_HEADER = "X-Squals-Variant"
EVENT_HEADER = "X-Squals-Event"
EVENT_FIELD = EVENT_HEADER.lower().encode()
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
# With a Host, the X-Forwarded-Host the client sent is replaced by it.
_REQUEST_DROP_HOSTED = _REQUEST_DROP | {b"x-forwarded-host"}
# Response headers never forwarded (lower case, as bytes): hop-by-hop ones and the event header the Dealer
# consumes.
_RESPONSE_DROP = frozenset({*(name.encode() for name in HOP_BY_HOP), EVENT_FIELD})
_VARIANT_LINE = VARIANT_HEADER.encode() + b": %s\r\n"
_SMALL_BODY = 256 * 1024  # bodies up to this size with a Content-Length are read whole


class Forwarder(Protocol):
    """What a trip uses of the proxy it belongs to (:class:`~squals_action.dealer.proxy.Proxy`)."""

    book: TallyBook
    journal: Journal | None
    faults: Faults
    pool: UpstreamPool | None
    cookie_name: str
    #: ``Set-Cookie`` for a new unit, ``%s`` its id
    set_cookie: str

    def app_events(self, value: str, key: int) -> None: ...


class Trip:
    """One proxied request on its way to an upstream and back: where it goes, what it counts, its answer.

    :meth:`start` sends a request without a body on an idle pooled connection and answers from the
    upstream connection's callback (:meth:`_ready`): no task and no future for the common case. Everything
    else (a body, an upgrade, faults in force, a new connection to open, a failed upstream, an answer too
    long to hold, an answer that must wait for the journal) continues in a coroutine run as the request's
    task (:meth:`Request.then`); both ways share every rule below. The variant serving the request counts it
    as in flight until its answer is done (a fallback takes it over), and the errors counted for it meanwhile
    as in-flight errors: a KPI window judges answered requests only (``VariantTally.answered``).
    """

    __slots__ = (
        "assignments",
        "chunked",
        "counter",
        "head",
        "key",
        "mark",
        "name",
        "new_unit",
        "proxy",
        "request",
        "routing",
        "started",
        "unsettled",
        "upgrade",
    )

    def __init__(
        self,
        proxy: Forwarder,
        request: Request,
        routing: Routing,
        name: str,
        counter: VariantCounter,
        new_unit: str | None,
        key: int,
        assignments: str | None,
    ) -> None:
        self.proxy = proxy
        self.request = request
        self.routing = routing
        self.name = name
        self.counter = counter
        counter.in_flight += 1
        self.unsettled = 0  # errors counted for this request on ``counter`` before its answer is done
        self.new_unit = new_unit
        self.key = key
        self.mark = 0
        self._counted()
        self.assignments = assignments
        self.upgrade = upgrade_of(request)
        self.head = b""
        self.chunked = False
        self.started = 0.0

    def start(self) -> Awaitable[None] | None:
        """Send the request: ``None`` when its answer comes from callbacks, else the coroutine that does."""
        request, proxy = self.request, self.proxy
        self._aim()
        pool = proxy.pool
        assert pool is not None
        if request.body is None and self.upgrade is None and not proxy.faults.active:
            self.started = pool.loop.time()
            origin = self.routing.origins[self.name]
            if pool.send(origin, request.method, self.head, self._ready, _SMALL_BODY):
                return None
        return self._through(self._forward())

    def _counted(self) -> None:
        """The request's answer acknowledges what the journal holds up to here (and waits for no more)."""
        journal = self.proxy.journal
        if journal is not None:
            self.mark = journal.counted

    def _aim(self) -> None:
        """The request head for the upstream ``name``."""
        origin = self.routing.origins[self.name]
        self.head, self.chunked = self._request_head(origin)

    async def _through(self, work: Awaitable[None]) -> None:
        try:
            await work
        finally:
            self._settle()

    def _settle(self) -> None:
        """The answer is done (or the request handed to a fallback): the request and the errors counted for it
        leave the variant's in-flight figures in the same step, so no reading sees one without the other."""
        counter = self.counter
        counter.in_flight -= 1
        counter.in_flight_errors -= self.unsettled
        self.unsettled = 0

    def _count_error(self, *, connection: bool = False) -> None:
        """Count an error of this request (a 5xx or an abort; ``connection``: refused, reset, timed out) on
        its variant, in flight with it until :meth:`_settle`. One request is one error at most: a 5xx whose
        body then breaks off is that 5xx (counted twice, a window could read more than 100 %)."""
        if self.unsettled:
            return
        counter = self.counter
        if connection:
            counter.add_connection_error()
        else:
            counter.add_server_error()
        counter.in_flight_errors += 1
        self.unsettled += 1

    def _request_head(self, origin: Origin) -> tuple[bytes, bool]:
        """The headers to send upstream: hop-by-hop ones dropped, X-Forwarded-* added, the unit's app-side
        variants in ``X-Squals-Assignments`` (replacing any the client sent).

        A unit the Dealer just made up is added to the forwarded Cookie header, so that the app sees the same
        unit on the first request as on the following ones. Returns the head as bytes and whether the body
        goes chunked (a body without a Content-Length).
        """
        request, new_unit = self.request, self.new_unit
        fields = request.fields
        host = fields.get(b"host")
        drop = _REQUEST_DROP_HOSTED if host else _REQUEST_DROP
        if b"connection" in fields:
            drop = drop | connection_tokens(fields[b"connection"])
        if new_unit is not None:  # the cookies go in one field, with the new unit's
            drop = drop | {b"cookie"}
        target = f"{request.method} {origin.prefix}{request.raw_path} HTTP/1.1\r\n"
        lines = [target.encode("utf-8", "surrogateescape"), origin.host_line]
        cookies: list[bytes] = []
        forwarded: list[bytes] = []
        for name, value in request.raw_headers:  # as received: no decoding, no copy into a multidict
            low = name.lower()
            if low not in drop:
                lines.append(b"%s: %s\r\n" % (name, value))
            elif low == b"x-forwarded-for":
                forwarded.append(value)
            elif low == b"cookie":
                cookies.append(value)
        if new_unit is not None:
            cookies.append(f"{self.proxy.cookie_name}={new_unit}".encode())
            lines.append(b"Cookie: %s\r\n" % b"; ".join(cookies))
        forwarded.append(request.remote.encode())
        lines.append(b"X-Forwarded-For: %s\r\nX-Forwarded-Proto: http\r\n" % b", ".join(forwarded))
        if host:
            lines.append(b"X-Forwarded-Host: %s\r\n" % host)
        assignments, upgrade = self.assignments, self.upgrade
        if assignments is not None:
            lines.append(f"{ASSIGNMENTS_HEADER}: {assignments}\r\n".encode("utf-8", "surrogateescape"))
        if upgrade is not None:  # the one hop-by-hop pair a tunnel needs, asked again on the upstream hop
            lines.append(f"Connection: Upgrade\r\nUpgrade: {upgrade}\r\n".encode("utf-8", "surrogateescape"))
        chunked = request.body is not None and (b"content-length" not in fields or b"content-length" in drop)
        if chunked:
            lines.append(b"Transfer-Encoding: chunked\r\n")
        lines.append(b"\r\n")
        return b"".join(lines), chunked

    def _response_head(self, upstream: UpstreamResponse) -> bytes:
        """The upstream's headers to send on: hop-by-hop ones, those its ``Connection`` names and the event
        header dropped; ``X-Squals-Variant``, the new unit's cookie and a missing ``Date`` added."""
        fields = upstream.fields
        drop = _RESPONSE_DROP
        if b"connection" in fields:
            drop = drop | connection_tokens(fields[b"connection"])
        lines = [b"%s: %s\r\n" % (k, v) for k, v in upstream.raw if k.lower() not in drop]
        lines.append(_VARIANT_LINE % self.name.encode())
        if self.new_unit is not None:
            lines.append((self.proxy.set_cookie % self.new_unit).encode())
        if b"date" not in fields:
            lines.append(date_line())
        return b"".join(lines)

    def _ready(self, upstream: UpstreamResponse) -> None:
        """:meth:`start`'s answer is complete, failed or too long to hold (called by the upstream
        connection)."""
        request = self.request
        try:
            error = upstream.error
            if error is not None:
                upstream.release()
                if upstream.status:  # the head came (counted as the coroutine path does), then it broke off
                    self._account(upstream)
                    return request.then(self._through(self._broke_off(error)))
                if resendable(error, upstream.connection, request.method):
                    return request.then(self._through(self._forward(reuse=False)))
                return request.then(self._through(self._failed(error)))
            if not upstream.complete:
                return request.then(self._through(self._answer(upstream)))
            head = self._account(upstream)
            data = upstream.take()
            upstream.release()
            journal = self.proxy.journal
            if journal is not None and not journal.written(self.mark):
                return request.then(self._through(self._reply(upstream.status, upstream.reason, head, data)))
            request.answer(upstream.status, upstream.reason, head, data)
        except Exception as exc:
            upstream.release()  # once only: a connection whose answer was not taken whole is closed
            request.fail(exc)
        self._settle()

    async def _forward(self, spare: bool = True, reuse: bool = True) -> None:
        """Send the request to ``name`` and answer; one it could not take goes once to its fallback
        (docs/dealer.md)."""
        proxy, request = self.proxy, self.request
        assert proxy.pool is not None
        if request.body is not None:
            request.send_continue()
        self.started = proxy.pool.loop.time()
        if proxy.faults.active and (abort := await proxy.faults.inject(self.name)) is not None:
            self._count_error()
            return await self._error(abort, f"fault injected into {self.name}")
        origin = self.routing.origins[self.name]
        try:
            upstream = await proxy.pool.request(
                origin, request.method, self.head, request.body, self.chunked, reuse
            )
        except (TimeoutError, UpstreamError) as exc:
            return await self._failed(exc, spare)
        await self._answer(upstream)

    async def _failed(self, exc: BaseException, spare: bool = True) -> None:
        """No answer came: a timeout is a 504; an upstream that could not take the request hands it to its
        fallback when that is safe (once), else a 502."""
        name = self.name
        self._count_error(connection=True)
        if isinstance(exc, TimeoutError):
            return await self._error(504, f"upstream {name} timed out")
        request = self.request
        other = self.routing.fallback.get(name) if spare else None
        if other is not None and may_retry(exc, request.method, request.body is not None):
            self._settle()  # BLUE's part is over (its answer was this error): the fallback's variant takes it
            self.name, self.counter = other, self.proxy.book.arrive(self.key, other)
            self.counter.in_flight += 1
            self._counted()
            self._aim()
            return await self._forward(spare=False)
        await self._error(502, f"upstream {name} unreachable: {type(exc).__name__}")

    def _account(self, upstream: UpstreamResponse) -> bytes:
        """Count the answer (latency, a server error, the app's events) and make the head sent on."""
        counter, proxy = self.counter, self.proxy
        counter.add_latency((upstream.head_time - self.started) * 1000.0)
        if upstream.status >= 500:
            self._count_error()
        events = upstream.fields.get(EVENT_FIELD)
        if events is not None:
            proxy.app_events(events.decode("utf-8", "surrogateescape"), self.key)
            self._counted()
        return self._response_head(upstream)

    async def _answer(self, upstream: UpstreamResponse) -> None:
        """Send the upstream's answer on: whole when small, else streamed; a ``101`` opens the tunnel."""
        try:
            await self._send_on(upstream, self._account(upstream))
        finally:
            upstream.release()

    async def _send_on(self, upstream: UpstreamResponse, head: bytes) -> None:
        request, name = self.request, self.name
        if self.upgrade is not None and upstream.status == 101:
            await self._durable()
            switched = upstream.field(b"upgrade") or self.upgrade
            upgraded = f"Connection: Upgrade\r\nUpgrade: {switched}\r\n".encode("utf-8", "surrogateescape")
            self._settle()  # an open tunnel is not a request in flight: drain never waits for it
            try:
                return await tunnel(request, upstream, head + upgraded)
            finally:
                self.counter.in_flight += 1  # taken off again when the trip ends
        length = upstream.content_length
        if length is not None and length <= _SMALL_BODY and request.method != "HEAD":
            # Read it whole so that headers and body leave in one send (the common, small case).
            try:
                data = await upstream.read()
            except (UpstreamError, TimeoutError) as exc:
                return await self._broke_off(exc)
            return await self._reply(upstream.status, upstream.reason, head, data)
        await self._durable()
        request.start(upstream.status, upstream.reason, head, framed=length is not None)
        try:
            while chunk := await upstream.chunk():
                await request.write(chunk)
        except (UpstreamError, TimeoutError) as exc:
            self._count_error(connection=True)
            # Headers are gone already: the only honest signal left is to cut the client connection.
            raise ConnectionResetError(f"upstream {name} broke off mid-body: {exc!r}") from exc
        request.end()

    async def _broke_off(self, exc: BaseException) -> None:
        self._count_error(connection=True)
        await self._error(502, f"upstream {self.name} broke off: {type(exc).__name__}")

    async def _durable(self) -> None:
        """Wait until what this request counted is written: an answer acknowledges only what is."""
        journal = self.proxy.journal
        if journal is not None and not journal.written(self.mark):
            with contextlib.suppress(OSError):  # a full disk must not take the site down (logged)
                await journal.durable(self.mark)

    async def _reply(self, status: int, reason: str, head: bytes, data: bytes) -> None:
        await self._durable()
        self.request.answer(status, reason, head, data)

    async def _error(self, status: int, text: str) -> None:
        await self._durable()
        new_unit = self.new_unit
        cookie = self.proxy.set_cookie % new_unit if new_unit is not None else ""
        self.request.text(status, text + "\n", f"{VARIANT_HEADER}: {self.name}\r\n{cookie}".encode())
