"""What the Dealer's server hands its handler: a request as parsed, its body as it arrives, its answer.

:mod:`~squals_action.dealer.server` owns the connections; a :class:`Request` reaches back to its connection
only through :class:`Connection` (write, drain, flow control), so the handler never sees a transport's
details. The answer goes out whole (:meth:`Request.answer`) or streamed (:meth:`Request.start`,
:meth:`Request.write`, :meth:`Request.end`); the server adds the framing (chunks for a body of unknown
length) and ``Connection`` when it closes after.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from email.utils import formatdate
from http import HTTPStatus
from typing import Protocol
from urllib.parse import parse_qsl, unquote

from multidict import CIMultiDict

from squals_action.dealer.http1 import multidict, text

#: The request header fields kept apart on every request (the proxy's hot path reads only these).
FIELDS = frozenset(
    {b"cookie", b"host", b"connection", b"upgrade", b"expect", b"content-length", b"transfer-encoding"}
)
HIGH_WATER = 256 * 1024  # request body bytes buffered before the client is no longer read
_NO_BODY = frozenset({204, 304})


class Sink(Protocol):
    """Where an upgraded connection's bytes go (a tunnel's pipe)."""

    def feed_data(self, data: bytes) -> None: ...

    def feed_eof(self) -> None: ...


class Connection(Protocol):
    """The client connection a request came on, as the request uses it."""

    loop: asyncio.AbstractEventLoop
    remote: str
    closed: bool
    transport: asyncio.Transport | None

    def write(self, data: bytes) -> None: ...

    async def drain(self) -> None: ...

    def reading(self) -> None: ...

    def closes_after(self, request: Request) -> bool: ...

    def hand_over(self, sink: Sink) -> None: ...

    def answered(self, request: Request) -> None: ...

    def failed(self, request: Request, exc: BaseException) -> None: ...

    def continue_with(self, request: Request, pending: Awaitable[None]) -> None: ...


def reason_of(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


_date_second = 0
_date_line = b""


def date_line() -> bytes:
    """``Date: ...\\r\\n`` for now (RFC 9110 section 6.6.1), formatted once a second."""
    global _date_second, _date_line
    now = int(time.time())
    if now != _date_second:
        _date_second = now
        _date_line = b"Date: %s\r\n" % formatdate(now, usegmt=True).encode()
    return _date_line


class Body:
    """A request body as it arrives, for the handler to take piece by piece (``readany``) or whole."""

    __slots__ = ("_chunks", "_conn", "_error", "_waiter", "eof", "size")

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._chunks: list[bytes] = []
        self.size = 0
        self.eof = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def feed(self, data: bytes) -> None:
        self._chunks.append(data)
        self.size += len(data)
        if self.size > HIGH_WATER:
            self._conn.reading()
        self._wake()

    def feed_eof(self) -> None:
        self.eof = True
        self._wake()

    def fail(self, error: BaseException) -> None:
        if not self.eof:
            self._error = error
            self._wake()

    async def readany(self) -> bytes:
        """What arrived since the last call (waiting for some), ``b""`` at the end of the body."""
        while not self._chunks:
            if self.eof:
                return b""
            if self._error is not None:
                raise self._error
            self._waiter = self._conn.loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        data = b"".join(self._chunks) if len(self._chunks) > 1 else self._chunks[0]
        self._chunks.clear()
        full = self.size > HIGH_WATER
        self.size = 0
        if full:
            self._conn.reading()
        return data

    async def read(self, limit: int) -> bytes:
        """The whole body; more than ``limit`` bytes raise ValueError (the caller answers 413)."""
        pieces: list[bytes] = []
        size = 0
        while data := await self.readany():
            size += len(data)
            if size > limit:
                raise ValueError(f"a body of more than {limit} bytes")
            pieces.append(data)
        return b"".join(pieces)


class Request:
    """One request on a client connection, and the way its answer goes out.

    ``raw_headers`` are the fields as received (bytes, order and repeats kept); the few the proxy needs on
    every request are in ``fields`` (lower-case name -> value; ``Connection`` values joined). The answer is
    either whole (:meth:`answer`) or streamed (:meth:`start`, :meth:`write`, :meth:`end`); the server adds
    the framing it needs (chunks for a body of unknown length) and ``Connection`` when it closes after.
    """

    __slots__ = (
        "_chunked",
        "_conn",
        "_headers",
        "body",
        "fields",
        "finished",
        "keep_alive",
        "method",
        "raw_headers",
        "raw_path",
        "started",
        "upgrade",
        "version",
    )

    def __init__(
        self,
        conn: Connection,
        method: str,
        raw_path: str,
        version: str,
        raw_headers: list[tuple[bytes, bytes]],
        fields: dict[bytes, bytes],
        keep_alive: bool,
        upgrade: bool,
        body: Body | None,
    ) -> None:
        self._conn = conn
        self.method = method
        self.raw_path = raw_path
        self.version = version
        self.raw_headers = raw_headers
        self.fields = fields
        self.keep_alive = keep_alive
        self.upgrade = upgrade
        self.body = body
        self.started = False
        self.finished = False
        self._chunked = False
        self._headers: CIMultiDict[str] | None = None

    # -- what was asked -------------------------------------------------------------------------------------

    @property
    def remote(self) -> str:
        return self._conn.remote

    def field(self, name: bytes) -> str | None:
        """One of :data:`FIELDS` (lower-case) as text."""
        return text(self.fields.get(name))

    @property
    def headers(self) -> CIMultiDict[str]:
        """All fields in a case-insensitive multi-dict (built on first use: the hot path never needs it)."""
        if self._headers is None:
            self._headers = multidict(self.raw_headers)
        return self._headers

    @property
    def path(self) -> str:
        return unquote(self.raw_path.partition("?")[0])

    @property
    def query(self) -> dict[str, str]:
        """The query's parameters, the first of repeated ones."""
        pairs = parse_qsl(self.raw_path.partition("?")[2], keep_blank_values=True)
        query: dict[str, str] = {}
        for key, value in pairs:
            query.setdefault(key, value)
        return query

    @property
    def transport(self) -> asyncio.Transport | None:
        return self._conn.transport

    # -- the answer -----------------------------------------------------------------------------------------

    def send_continue(self) -> None:
        """``100 Continue`` to a client that waits for it before sending the body (``Expect``)."""
        if self.fields.get(b"expect", b"").lower() == b"100-continue" and not self.started:
            self._conn.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def _status_line(self, status: int, reason: str, head: bytes) -> bytes:
        conn = self._conn
        if status == 101:
            extra = b""
        elif conn.closes_after(self):
            extra = b"Connection: close\r\n"
        elif self.version == "1.0":
            extra = b"Connection: keep-alive\r\n"
        else:
            extra = b""
        line = b"HTTP/1.1 %d %s\r\n" % (status, reason.encode("utf-8", "surrogateescape"))
        return b"%s%s%s\r\n" % (line, head, extra)

    def answer(self, status: int, reason: str, head: bytes, body: bytes = b"") -> None:
        """The whole answer in one write. ``head`` holds its header lines (each ending in CRLF), with the
        ``Content-Length`` when there is a body; a HEAD request's answer leaves without the body."""
        self.started = self.finished = True
        out = self._status_line(status, reason, head)
        self._conn.write(out + body if body and self.method != "HEAD" else out)
        self._conn.answered(self)

    def text(self, status: int, text: str, head: bytes = b"") -> None:
        """A short plain-text answer of the Dealer's own."""
        data = text.encode()
        length = b"Content-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\n" % len(data)
        self.answer(status, reason_of(status), head + length + date_line(), data)

    def start(self, status: int, reason: str, head: bytes, framed: bool) -> None:
        """Send the head of an answer whose body follows with :meth:`write`; ``framed``: ``head`` says the
        body's length (else the body goes in chunks, or until the connection closes for HTTP/1.0)."""
        self.started = True
        body_follows = status >= 200 and status not in _NO_BODY and self.method != "HEAD"
        if not framed and body_follows:
            if self.version == "1.1":
                self._chunked = True
                head += b"Transfer-Encoding: chunked\r\n"
            else:
                self.keep_alive = False  # the body ends with the connection
        self._conn.write(self._status_line(status, reason, head))

    async def write(self, data: bytes) -> None:
        """A piece of the body; waits while the client does not read (raises ConnectionResetError once the
        client is gone, so the caller stops reading the upstream)."""
        conn = self._conn
        if conn.closed:
            raise ConnectionResetError("the client is gone")
        if data:
            conn.write(b"%x\r\n%b\r\n" % (len(data), data) if self._chunked else data)
            await conn.drain()

    def end(self) -> None:
        if self._chunked:
            self._conn.write(b"0\r\n\r\n")
        self.finished = True
        self._conn.answered(self)

    # -- answering from callbacks ---------------------------------------------------------------------------

    def then(self, pending: Awaitable[None]) -> None:
        """A callback hands the rest of the answer to a coroutine, run as the request's task (as a handler's
        coroutine is)."""
        self._conn.continue_with(self, pending)

    def fail(self, exc: BaseException) -> None:
        """A callback answering this request raised: handled as a handler's exception is (a ``500``, or the
        connection cut once the answer started)."""
        self._conn.failed(self, exc)

    def take_over(self, sink: Sink) -> None:
        """The connection is upgraded: from now on every byte the client sends goes to ``sink``."""
        self._conn.hand_over(sink)


#: Answers a request: at once, from callbacks (returning ``None``; then it must finish the answer or call
#: :meth:`Request.fail` eventually), or in the coroutine it returns.
Handler = Callable[[Request], Awaitable[None] | None]
