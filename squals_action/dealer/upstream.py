"""The Dealer's upstream client: pooled keep-alive HTTP/1.1 connections, responses parsed by ``httptools``.

aiohttp's ``ClientSession`` was the largest share of the Dealer's CPU per proxied request (~36 %: a
``ClientRequest``, a ``ClientResponse``, header merging, URL handling and timers per request). A proxy needs
none of that: the request head is one string built from headers already checked by the server's parser,
and the response head is parsed in C by ``httptools`` (llhttp, the parser behind Node.js and uvicorn).

One request at a time per connection (no pipelining). A response body is buffered up to a bound, then the
upstream is no longer read until the client has taken some (flow control both ways). ``read_timeout`` bounds
the wait for each piece of the answer (head or body; checked every ``min(1 s, read_timeout / 4)``),
``connect_timeout`` the connection; a pooled connection idle for ``keepalive`` seconds is closed rather than
reused.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, cast

import httptools
from yarl import URL

from squals_action.dealer.http1 import WriteFlow, text

#: Methods a request of which may be sent again (RFC 9110 section 9.2.2).
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
#: The answer's header fields kept apart as they are parsed (lower case; repeated ones joined by ", ").
FIELDS = frozenset({b"content-length", b"transfer-encoding", b"connection", b"upgrade", b"date"})
_HIGH = 512 * 1024  # buffered response bytes above which the upstream is no longer read (> the small body)
_LOW = 64 * 1024  # reading resumes below this


class UpstreamError(Exception):
    """The upstream could not give an answer."""


class Unreachable(UpstreamError):
    """No connection could be made: nothing was sent."""


class Dropped(UpstreamError):
    """The connection was closed or reset before the answer's head: the request may have reached it."""


class BrokenOff(UpstreamError):
    """The connection broke in the middle of the answer's body."""


def resendable(exc: BaseException, conn: Connection, method: str) -> bool:
    """Whether a request without a body that ``exc`` ended on a pooled connection may go once more on a new
    one: the connection was dropped before any byte of the answer (the upstream closed it while idle) and the
    method is idempotent. One the upstream may have acted on is never sent twice."""
    return isinstance(exc, Dropped) and not conn.received and method in IDEMPOTENT


class BodySource(Protocol):
    """The request body as the server's stream gives it."""

    async def readany(self) -> bytes: ...


@dataclass(frozen=True)
class Origin:
    """Where an upstream's requests go: host, port, TLS, path prefix and the ``Host`` header it expects."""

    host: str
    port: int
    tls: bool
    prefix: str
    authority: str
    #: ``Host: <authority>\r\n`` as the request head carries it
    host_line: bytes = b""
    #: what the pool files its idle connections under (a string hashes in C, the dataclass in Python)
    key: str = ""

    @classmethod
    def of(cls, url: URL) -> Origin:
        assert url.host is not None and url.port is not None
        authority = url.host_port_subcomponent or url.host
        host_line = b"Host: %s\r\n" % authority.encode("utf-8", "surrogateescape")
        prefix = url.raw_path.rstrip("/")
        key = f"{url.scheme}://{url.host}:{url.port}{prefix}"
        return cls(url.host, url.port, url.scheme == "https", prefix, authority, host_line, key)


class UpstreamResponse:
    """The answer's head (status, reason, headers) once :meth:`Connection.exchange` returns; the body is read
    with :meth:`read` (whole) or :meth:`chunk` (streamed), then :meth:`release` hands the connection back.

    ``raw`` holds the header fields as received (bytes, order and repeats kept; what the proxy sends on),
    ``fields`` those of :data:`FIELDS` and the names the caller asked for (what it looks at).
    """

    __slots__ = (
        "_conn",
        "_head",
        "_ready",
        "_waiter",
        "_whole",
        "body",
        "buffered",
        "complete",
        "content_length",
        "error",
        "fields",
        "head_time",
        "raw",
        "reason",
        "status",
        "upgraded",
    )

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self.status = 0
        self.reason = ""
        self.raw: list[tuple[bytes, bytes]] = []
        self.fields: dict[bytes, bytes] = {}
        self.content_length: int | None = None
        self.head_time = 0.0  # when the head was in (the loop's clock): the upstream's latency ends there
        self.body: deque[bytes] = deque()
        self.buffered = 0
        self.complete = False
        self.upgraded = b""  # after a 101: bytes the upstream sent past its head
        self.error: BaseException | None = None
        self._head = False
        self._waiter: asyncio.Future[None] | None = None
        #: :meth:`Connection.send`'s callback, called once (then ``None``)
        self._ready: Callable[[UpstreamResponse], None] | None = None
        self._whole = 0  # the body size up to which ``_ready`` waits for the whole answer

    @property
    def connection(self) -> Connection:
        return self._conn

    def field(self, name: bytes) -> str | None:
        return text(self.fields.get(name))

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _notify(self) -> None:
        """Call :meth:`Connection.send`'s callback once the answer is complete, failed, or has its head and
        will not be read whole (no length, or over the bound): then the caller reads it as a coroutine."""
        ready = self._ready
        if ready is not None and (
            self.complete
            or self.error is not None
            or (self._head and (self.content_length is None or self.content_length > self._whole))
        ):
            self._ready = None
            ready(self)

    def take(self) -> bytes:
        """The body of a complete answer, at once."""
        data = b"".join(self.body) if len(self.body) != 1 else self.body[0]
        self.body.clear()
        self.buffered = 0
        return data

    async def _wait(self) -> None:
        self._waiter = self._conn.loop.create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    async def read(self) -> bytes:
        """The whole body."""
        while not self.complete:
            if self.error is not None:
                raise self.error
            self._conn.resume()
            await self._wait()
        if self.error is not None and not self.complete:
            raise self.error
        return self.take()

    async def chunk(self) -> bytes:
        """The next piece of the body as it arrives, ``b""`` at its end (the upstream is read again as the
        pieces are taken). A loop of awaits rather than an async generator: mypyc compiles this module."""
        while True:
            if self.body:
                data = b"".join(self.body)
                self.body.clear()
                self.buffered = 0
                self._conn.resume()
                return data
            elif self.complete:
                return b""
            elif self.error is not None:
                raise self.error
            else:
                await self._wait()

    def release(self) -> None:
        """Done with the answer: the connection goes back to the pool only if the answer was read whole."""
        self._conn.finished(self)


class Connection(WriteFlow, asyncio.Protocol):
    """One keep-alive connection to an upstream; the ``httptools`` parser calls the ``on_*`` methods."""

    def __init__(self, pool: UpstreamPool, origin: Origin) -> None:
        self.pool = pool
        self.origin = origin
        self.loop = pool.loop
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._response: UpstreamResponse | None = None
        self._parser: Any = None
        self._method = ""
        self._keep_alive = False
        self._last_read = 0.0
        self._paused = False  # reading paused: the client has not taken the buffered body yet
        self._sink: Any = None  # after a 101: what the upstream's bytes are fed to
        self.received = False  # any byte of the current answer

    # -- asyncio.Protocol -----------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not its subclasses

    def data_received(self, data: bytes) -> None:
        if self._sink is not None:
            self._sink.feed_data(data)
            return
        response = self._response
        if response is None:  # nothing asked: a broken upstream; never reuse the connection
            self._abort()
            return
        self.received = True
        self._last_read = self.loop.time()
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            response.upgraded = data[exc.args[0] :] if exc.args else b""
        except httptools.HttpParserError as exc:
            kind = BrokenOff if response._head else Dropped
            self._fail(kind(f"bad answer from the upstream: {exc}"))
            self._abort()
        if response._ready is not None:  # outside the parser: the callback may hand the connection back
            response._notify()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._not_waiting()
        if self._sink is not None:
            self._sink.feed_eof()
            return
        response = self._response
        if response is not None and not response.complete:
            if response._head and self._until_close(response):
                self.on_message_complete()  # a body delimited by the end of the connection
            else:
                kind = BrokenOff if response._head else Dropped
                self._fail(kind(f"the upstream closed the connection{f': {exc}' if exc else ''}"))
            response._notify()
        self.writers_gone(Dropped("the upstream closed the connection"))

    # -- httptools callbacks --------------------------------------------------------------------------------

    def on_status(self, status: bytes) -> None:
        assert self._response is not None
        self._response.reason += status.decode("utf-8", "surrogateescape")

    def on_header(self, name: bytes, value: bytes) -> None:
        response = self._response
        assert response is not None
        response.raw.append((name, value))
        low = name.lower()
        if low in self.pool.fields:
            fields = response.fields
            fields[low] = fields[low] + b", " + value if low in fields else value

    def on_headers_complete(self) -> None:
        response = self._response
        assert response is not None
        status = self._parser.get_status_code()
        if 100 <= status < 200 and status != 101:  # informational: the real answer follows
            response.raw.clear()
            response.fields.clear()
            response.reason = ""
            return
        response.status = status
        response.head_time = self._last_read
        length = response.fields.get(b"content-length")
        response.content_length = int(length) if length is not None and length.isdigit() else None
        response._head = True
        self._keep_alive = self._parser.should_keep_alive()  # llhttp forgets it once the message is complete
        if self._method == "HEAD" or status == 101:
            self.on_message_complete()
        response._wake()

    def on_body(self, body: bytes) -> None:
        response = self._response
        assert response is not None
        response.body.append(body)
        response.buffered += len(body)
        if response.buffered > _HIGH and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        response._wake()

    def on_message_complete(self) -> None:
        response = self._response
        if response is None or not response._head or response.complete:
            return  # an informational answer ended
        response.complete = True
        self._not_waiting()
        response._wake()

    # -- the client side ------------------------------------------------------------------------------------

    def _begin(self, method: str, head: bytes) -> UpstreamResponse:
        """Send a request's head; the answer is read into the response returned."""
        assert self.transport is not None
        response = self._response = UpstreamResponse(self)
        if self._parser is None or self._method == "HEAD":  # after a HEAD llhttp would wait for its body
            self._parser = httptools.HttpResponseParser(self)
        self._method = method
        self._keep_alive = False
        self.received = False
        self._last_read = self.loop.time()
        self.pool.busy.add(self)
        self.transport.write(head)
        return response

    def send(self, method: str, head: bytes, ready: Callable[[UpstreamResponse], None], whole: int) -> None:
        """Send a request without a body and call ``ready`` from the loop once the answer is complete (its
        body up to ``whole`` bytes long), failed (``error`` says why), or has a head and a longer or unsized
        body (read on with :meth:`UpstreamResponse.read` or ``chunk``): no task or future for the common
        case of a small answer."""
        response = self._begin(method, head)
        response._whole = whole
        response._ready = ready

    async def exchange(
        self, method: str, head: bytes, body: BodySource | None, chunked: bool
    ) -> UpstreamResponse:
        """Send one request (head, then the body streamed) and return once the answer's head is in."""
        response = self._begin(method, head)
        try:
            if body is not None:
                await self._send_body(body, chunked)
                self._last_read = self.loop.time()  # the read timeout runs from the end of the upload
            while not response._head:
                if response.error is not None:
                    raise response.error
                await response._wait()
        except BaseException:  # a failed upstream, a client gone mid-upload, a cancelled request
            self._response = None
            self._not_waiting()
            self._abort()
            raise
        return response

    async def _send_body(self, body: BodySource, chunked: bool) -> None:
        assert self.transport is not None
        while True:
            data = await body.readany()
            if self.closed:
                raise Dropped("the upstream closed the connection while the request body was sent")
            if not data:
                break
            self.transport.write(b"%x\r\n%b\r\n" % (len(data), data) if chunked else data)
            await self.drain()
        if chunked:
            self.transport.write(b"0\r\n\r\n")

    def resume(self) -> None:
        if self._paused and self.transport is not None and not self.closed:
            self._paused = False
            self._last_read = self.loop.time()
            self.transport.resume_reading()

    def tunnel(self, sink: Any) -> None:
        """After a ``101``: every byte the upstream sends (and sent past its head) goes to ``sink``."""
        response = self._response
        self._not_waiting()  # an idle tunnel is not a slow upstream
        self._sink = sink
        if response is not None and response.upgraded:
            sink.feed_data(response.upgraded)
        if self.closed:
            sink.feed_eof()

    def finished(self, response: UpstreamResponse) -> None:
        if self._response is not response:
            return
        self._response = None
        self._not_waiting()
        if (
            response.complete
            and response.error is None
            and response.status != 101
            and not self.closed
            and self._keep_alive
        ):
            self.pool.put(self)
        else:
            self._abort()

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.close()

    # -- internals ------------------------------------------------------------------------------------------

    def _until_close(self, response: UpstreamResponse) -> bool:
        return (
            response.content_length is None
            and b"chunked" not in response.fields.get(b"transfer-encoding", b"").lower()
            and response.status not in (204, 304)
        )

    def _fail(self, error: BaseException) -> None:
        response = self._response
        if response is not None and response.error is None:
            response.error = error
            response._wake()
            response._notify()

    def _abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def _not_waiting(self) -> None:
        self.pool.busy.discard(self)

    def check_timeout(self, now: float) -> None:
        """Called by the pool's sweep: fail the answer if nothing came for ``read_timeout`` (a paused read is
        the client's slowness, not the upstream's: its clock starts again)."""
        response = self._response
        if response is None or response.complete:
            self._not_waiting()
        elif self._paused:
            self._last_read = now
        elif now - self._last_read >= self.pool.read_timeout:
            self._not_waiting()
            self._fail(TimeoutError(f"no answer within {self.pool.read_timeout:g}s"))
            self._abort()


class _Busy:
    """The connections waiting for an answer, swept every ``every`` seconds while there are any (a set
    held, not subclassed: mypyc compiles this module, and compiled classes cannot subclass ``set``)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, every: float) -> None:
        self._conns: set[Connection] = set()
        self._loop = loop
        self._every = every
        self._sweep: asyncio.TimerHandle | None = None

    def add(self, conn: Connection) -> None:
        self._conns.add(conn)
        if self._sweep is None:
            self._sweep = self._loop.call_later(self._every, self._check)

    def discard(self, conn: Connection) -> None:
        self._conns.discard(conn)

    def _check(self) -> None:
        now = self._loop.time()
        for conn in list(self._conns):
            conn.check_timeout(now)
        self._sweep = self._loop.call_later(self._every, self._check) if self._conns else None


class UpstreamPool:
    """Keep-alive connections per origin, for the worker's event loop only (no locks)."""

    def __init__(
        self,
        connect_timeout: float,
        read_timeout: float,
        keepalive: float = 30.0,
        fields: frozenset[bytes] = FIELDS,
    ) -> None:
        self.loop = asyncio.get_running_loop()
        #: the answers' header fields kept apart in ``UpstreamResponse.fields`` (lower case)
        self.fields = FIELDS | fields
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.keepalive = keepalive
        #: connections waiting for an answer: one sweep checks their read timeouts (a timer per request cost
        #: more than the rest of the bookkeeping of a request)
        self.busy: _Busy = _Busy(self.loop, min(1.0, read_timeout / 4))
        self._idle: dict[str, deque[Connection]] = {}
        self._tls: ssl.SSLContext | None = None

    async def request(
        self,
        origin: Origin,
        method: str,
        head: bytes,
        body: BodySource | None,
        chunked: bool,
        reuse: bool = True,
    ) -> UpstreamResponse:
        """Send a request and return the answer's head, on a pooled connection unless ``reuse`` is false.
        A pooled connection that turns out closed before any byte of the answer is replaced by a new one
        once, when :func:`resendable`."""
        conn = self._take(origin) if reuse else None
        if conn is not None:
            try:
                return await conn.exchange(method, head, body, chunked)
            except Dropped as exc:
                if body is not None or not resendable(exc, conn, method):
                    raise
        conn = await self._connect(origin)
        return await conn.exchange(method, head, body, chunked)

    def send(
        self, origin: Origin, method: str, head: bytes, ready: Callable[[UpstreamResponse], None], whole: int
    ) -> bool:
        """:meth:`Connection.send` on a pooled connection; ``False`` (nothing sent) when none is idle."""
        conn = self._take(origin)
        if conn is None:
            return False
        conn.send(method, head, ready, whole)
        return True

    def _take(self, origin: Origin) -> Connection | None:
        idle = self._idle.get(origin.key)
        now = self.loop.time()
        while idle:
            conn = idle.pop()
            if not conn.closed and now - conn.idle_since < self.keepalive:
                return conn
            conn.close()
        return None

    def put(self, conn: Connection) -> None:
        """An idle connection back in the pool; the oldest idle ones are closed once past ``keepalive`` (the
        newest is taken first, so the oldest would otherwise stay open until the upstream closed them)."""
        now = conn.idle_since = self.loop.time()
        idle = self._idle.get(conn.origin.key)
        if idle is None:
            idle = self._idle[conn.origin.key] = deque()
        while idle and (idle[0].closed or now - idle[0].idle_since >= self.keepalive):
            idle.popleft().close()
        idle.append(conn)

    async def _connect(self, origin: Origin) -> Connection:
        tls: ssl.SSLContext | None = None
        if origin.tls:
            tls = self._tls = self._tls or ssl.create_default_context()
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, conn = await self.loop.create_connection(
                    lambda: Connection(self, origin), origin.host, origin.port, ssl=tls
                )
        except TimeoutError:
            raise TimeoutError(f"no connection within {self.connect_timeout:g}s") from None
        except OSError as exc:
            raise Unreachable(f"{type(exc).__name__}: {exc.strerror or exc}") from exc
        return conn

    def close(self) -> None:
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()
