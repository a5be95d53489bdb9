"""The Dealer's public HTTP/1.1 server: client connections parsed by ``httptools``, answered in order.

A proxy needs no request object graph, middleware or response objects: aiohttp's server side cost 0.052 ms
of CPU per request on the 2-core bench machine against 0.023 ms for this one (``bench/http_server.py``, the
same tiny answer), and was the largest share of what the Dealer itself costs. This module
owns the client connections: the request head (size limits, ``header_timeout`` from a connection's start or
its last answer until a request's headers are in), request bodies (streamed with flow control), keep-alive
and pipelining (requests answered one after the other), upgraded connections handed to a tunnel, and a
graceful stop. What a handler gets and answers through is :mod:`~squals_action.dealer.request`'s; what to
answer is the handler's (:class:`~squals_action.dealer.proxy.Proxy`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections import deque
from collections.abc import Awaitable
from typing import cast

import httptools

from squals_action.dealer.http1 import WriteFlow
from squals_action.dealer.request import FIELDS, HIGH_WATER, Body, Handler, Request, Sink, reason_of

log = logging.getLogger("squals.dealer")

MAX_URL = 8190  # bytes of a request target (aiohttp's limit, kept)
MAX_FIELD = 8190  # bytes of one header field's name or value
MAX_HEAD = 64 * 1024  # bytes of all header fields together
_METHODS: dict[bytes, str] = {}


class _Refused(Exception):
    """A request head over a limit: answered with ``status`` and the connection closed."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status


class HttpProtocol(WriteFlow, asyncio.Protocol):
    """One client connection; the ``httptools`` parser calls the ``on_*`` methods."""

    def __init__(self, server: HttpServer) -> None:
        self.server = server
        self.loop = server.loop
        self.transport: asyncio.Transport | None = None
        self.remote = ""
        self.closed = False
        self._parser = httptools.HttpRequestParser(self)
        self._wanted = server.fields
        self._url: list[bytes] = []
        self._raw: list[tuple[bytes, bytes]] = []
        self._fields: dict[bytes, bytes] = {}
        self._head_size = 0
        self._reading: Request | None = None  # whose body the parser is reading
        self._current: Request | None = None  # being answered
        self._task: asyncio.Task[None] | None = None  # runs a handler's coroutine for the current request
        self._queue: deque[Request] = deque()  # pipelined requests waiting for their turn
        self._closing = False  # close once the current answer is out
        self._upgraded: bytearray | None = None  # bytes past an upgrade request, until a tunnel takes them
        self._sink: Sink | None = None
        self._paused = False

    # -- asyncio.Protocol -----------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not its subclasses
        peer = transport.get_extra_info("peername")
        self.remote = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.opened(self)

    def data_received(self, data: bytes) -> None:
        if self._sink is not None:
            self._sink.feed_data(data)
            return
        if self._upgraded is not None:
            self._upgraded += data
            return
        if self._closing and self._current is None:  # refused or answered for the last time: closing
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            offset = int(exc.args[0]) if exc.args else len(data)
            self._upgraded = bytearray(data[offset:])
            self.reading()
        except httptools.HttpParserCallbackError as exc:
            refused = exc.__context__
            if isinstance(refused, _Refused):
                self._refuse(refused.status, str(refused))
            else:
                log.error("parsing a request from %s failed: %r", self.remote, refused)
                self._abort()
        except httptools.HttpParserError as exc:
            self._refuse(400, f"bad request: {exc}")

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.server.closed(self)
        gone = ConnectionResetError("the client closed the connection")
        for request in (self._reading, self._current, *self._queue):
            if request is not None and request.body is not None:
                request.body.fail(gone)
        if self._sink is not None:
            self._sink.feed_eof()
        self.writers_gone(gone)

    # -- httptools callbacks --------------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._url = []
        self._raw = []
        self._fields = {}
        self._head_size = 0

    def on_url(self, url: bytes) -> None:
        self._url.append(url)
        self._head_size += len(url)
        if self._head_size > MAX_URL:
            raise _Refused(414, f"the request target is longer than {MAX_URL} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._raw.append((name, value))
        self._head_size += len(name) + len(value)
        if len(name) > MAX_FIELD or len(value) > MAX_FIELD or self._head_size > MAX_HEAD:
            raise _Refused(431, f"a header field over {MAX_FIELD} bytes or fields over {MAX_HEAD} in all")
        low = name.lower()
        if low in self._wanted:
            fields = self._fields
            if low not in fields:
                fields[low] = value
            elif low == b"connection":
                fields[low] += b", " + value

    def on_headers_complete(self) -> None:
        parser = self._parser
        raw_method = parser.get_method()
        method = _METHODS.get(raw_method)
        if method is None:
            method = _METHODS.setdefault(raw_method, raw_method.decode("ascii", "replace"))
        fields = self._fields
        length = fields.get(b"content-length")
        sized = length is not None and length.strip() not in (b"0", b"")
        has_body = sized or b"transfer-encoding" in fields
        url = self._url[0] if len(self._url) == 1 else b"".join(self._url)
        request = Request(
            self,
            method,
            url.decode("utf-8", "surrogateescape"),
            parser.get_http_version(),
            self._raw,
            fields,
            parser.should_keep_alive(),
            parser.should_upgrade(),
            Body(self) if has_body else None,
        )
        self.server.waiting.pop(self, None)
        if request.body is not None:
            self._reading = request
        if self._current is None:
            self._serve(request)
        else:
            self._queue.append(request)
            self.reading()

    def on_body(self, body: bytes) -> None:
        if self._reading is not None and self._reading.body is not None:
            self._reading.body.feed(body)

    def on_message_complete(self) -> None:
        if self._reading is not None and self._reading.body is not None:
            self._reading.body.feed_eof()
        self._reading = None

    # -- serving --------------------------------------------------------------------------------------------

    def _serve(self, request: Request) -> None:
        """Answer ``request``. A handler answers at once or from callbacks (the proxy's common case: no task,
        no future), or returns a coroutine, which runs as the request's task; the connection moves on to
        the next request once the answer is finished (:meth:`answered`) and any such task has returned."""
        self._current = request
        try:
            pending = self.server.handler(request)
        except Exception as exc:
            return self.failed(request, exc)
        if pending is not None:
            self.continue_with(request, pending)

    def continue_with(self, request: Request, pending: Awaitable[None]) -> None:
        """The rest of ``request``'s answer is ``pending``'s, run as the request's task."""
        self._task = self.loop.create_task(self._run(request, pending))

    def answered(self, request: Request) -> None:
        """``request``'s answer is out: the next request may be served, unless a task still runs for it."""
        if self._task is None and request is self._current:
            self._done(request)

    def failed(self, request: Request, exc: BaseException) -> None:
        """A handler (or a callback answering for it) raised: a ``500`` if nothing was sent yet, else the
        connection is cut (an answer half sent cannot be mended)."""
        if isinstance(exc, (ConnectionError, asyncio.CancelledError)):
            log.debug("connection from %s cut: %r", self.remote, exc)
            self._abort()
        else:
            log.error("answering %s %s failed", request.method, request.raw_path[:200], exc_info=exc)
            if request.started:
                self._abort()
            elif not self.closed:
                request.text(500, "the Dealer failed to answer this request\n")
        if self._task is None and request is self._current:
            self._done(request)

    async def _run(self, request: Request, pending: Awaitable[None]) -> None:
        try:
            await pending
            if not request.finished and not self.closed:
                raise RuntimeError("the handler returned without finishing its answer")
        except (Exception, asyncio.CancelledError) as exc:
            self._task = None
            return self.failed(request, exc)
        self._task = None
        self._done(request)

    def closes_after(self, request: Request) -> bool:
        """Whether the connection closes once ``request`` is answered (then its answer says so)."""
        if not request.keep_alive or self._closing or self._upgraded is not None or self.server.stopping:
            self._closing = True
            return True
        if request.body is not None and not request.body.eof:  # cannot find where the next request starts
            self._closing = True
            return True
        return False

    def _done(self, request: Request) -> None:
        """``request`` is answered: serve a pipelined one (on the next loop turn, so that a long pipeline
        never nests), else wait for the next (the header timeout runs meanwhile), or close."""
        self._current = None
        if self.closed:
            return
        if self._closing or not request.finished:
            return self._close()
        if self._queue:
            following = self._current = self._queue.popleft()
            self.reading()
            self.loop.call_soon(self._serve, following)
        else:
            self.server.waiting[self] = self.loop.time()

    def reading(self) -> None:
        """Pause reading while a pipelined request waits, a body's buffer is full or an upgrade waits for
        its tunnel; resume when none of these holds."""
        transport = self.transport
        if transport is None or self.closed:
            return
        body = self._reading.body if self._reading is not None else None
        full = body is not None and body.size > HIGH_WATER
        pause = bool(self._queue) or self._upgraded is not None or full
        if pause != self._paused:
            self._paused = pause
            if pause:
                transport.pause_reading()
            else:
                transport.resume_reading()

    def hand_over(self, sink: Sink) -> None:
        rest = bytes(self._upgraded or b"")
        self._upgraded = None
        self._sink = sink
        if rest:
            sink.feed_data(rest)
        if self.closed:
            sink.feed_eof()
        self.reading()

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(data)

    def _refuse(self, status: int, text: str) -> None:
        """A request that cannot be parsed: answered (unless another answer is under way) and closed."""
        self._closing = True
        self.server.waiting.pop(self, None)
        if self._current is None and self.transport is not None and not self.closed:
            data = (text + "\n").encode()
            self.transport.write(
                b"HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\n"
                b"Connection: close\r\n\r\n%s" % (status, reason_of(status).encode(), len(data), data)
            )
            self._close()
        elif self.transport is not None:
            self.transport.pause_reading()

    def idle(self) -> bool:
        return self._current is None and not self._queue

    def _close(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.close()

    def _abort(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.abort()

    def stop(self) -> None:
        """The server stops: an idle connection closes now, a busy one after its answer."""
        if self.idle():
            self._close()
        else:
            self._closing = True

    def kill(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self._abort()


class HttpServer:
    """The public listener of one worker: its connections, the header-timeout sweep and the stop."""

    def __init__(self, handler: Handler, header_timeout: float, fields: frozenset[bytes] = FIELDS) -> None:
        self.loop = asyncio.get_running_loop()
        self.handler = handler
        self.header_timeout = header_timeout
        #: the lower-case header names kept apart in ``Request.fields``
        self.fields = fields
        self.connections: set[HttpProtocol] = set()
        #: connections waiting for a request's headers, since when (the connection's start or last answer)
        self.waiting: dict[HttpProtocol, float] = {}
        self.stopping = False
        self._server: asyncio.AbstractServer | None = None
        self._sweep: asyncio.TimerHandle | None = None
        self._empty: asyncio.Future[None] | None = None

    async def start(self, sock: socket.socket, backlog: int = 1024) -> None:
        """Listen on ``sock`` (bound already, e.g. with ``SO_REUSEPORT``)."""
        self._server = await self.loop.create_server(lambda: HttpProtocol(self), sock=sock, backlog=backlog)
        self._sweep = self.loop.call_later(self._every(), self._check)

    def _every(self) -> float:
        return min(1.0, self.header_timeout / 4)

    def opened(self, conn: HttpProtocol) -> None:
        self.connections.add(conn)
        self.waiting[conn] = self.loop.time()
        if self.stopping:
            conn.stop()

    def closed(self, conn: HttpProtocol) -> None:
        self.connections.discard(conn)
        self.waiting.pop(conn, None)
        if not self.connections and self._empty is not None and not self._empty.done():
            self._empty.set_result(None)

    def _check(self) -> None:
        """Close the connections that did not send a request's headers within ``header_timeout``."""
        deadline = self.loop.time() - self.header_timeout
        for conn, since in list(self.waiting.items()):
            if since <= deadline:
                del self.waiting[conn]
                conn.kill()
        self._sweep = self.loop.call_later(self._every(), self._check)

    async def close(self, timeout: float) -> None:
        """Stop accepting, close idle connections, let answers under way finish for up to ``timeout``
        seconds, then cut what is left (open tunnels, answers still running)."""
        self.stopping = True
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            conn.stop()
        if self.connections:
            self._empty = self.loop.create_future()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._empty), timeout)
        for conn in list(self.connections):
            conn.kill()
        if self._sweep is not None:
            self._sweep.cancel()
        if self._server is not None:
            await self._server.wait_closed()
