"""Upgraded connections (WebSocket, ``Upgrade: tcp``): after the upstream's ``101``, bytes flow both ways.

The request was assigned and counted like any other (sticky by unit, one activation); once the upstream
switched protocols, the client's and the upstream's connections are joined until either side closes, whatever
the routing does meanwhile: a weight switch never moves an open connection. Each direction keeps a bounded
buffer: when the receiving side is slow, the sending side's reading pauses.

Only ``websocket`` and ``tcp`` are tunnelled; a request asking for another protocol (``h2c``, ...) is
forwarded without its ``Upgrade`` header, as a plain request, and its connection closes after the answer.
"""

from __future__ import annotations

import asyncio
import contextlib

from squals_action.dealer.http1 import connection_tokens
from squals_action.dealer.request import Request
from squals_action.dealer.upstream import UpstreamResponse

UPGRADES = frozenset({"websocket", "tcp"})
_HIGH = 256 * 1024  # bytes waiting towards one side before the other side stops being read
_LOW = 64 * 1024


def upgrade_of(request: Request) -> str | None:
    """The protocol a request asks to switch to, when the Dealer can tunnel it (``None`` otherwise)."""
    if not request.upgrade or request.body is not None:
        return None
    wanted = request.field(b"upgrade")
    if not wanted or wanted.lower() not in UPGRADES:
        return None
    return wanted if b"upgrade" in connection_tokens(request.fields.get(b"connection")) else None


class _Pipe:
    """Writes what one side sends to the other side's transport (fed by that side's protocol)."""

    def __init__(self, source: asyncio.BaseTransport, sink: asyncio.Transport, done: asyncio.Future[None]):
        self._source = source
        self._sink = sink
        self._done = done
        self._resuming: asyncio.Task[None] | None = None

    def feed_data(self, data: bytes) -> None:
        if data and not self._sink.is_closing():
            self._sink.write(data)
            if self._resuming is None and self._sink.get_write_buffer_size() > _HIGH:
                assert isinstance(self._source, asyncio.ReadTransport)
                self._source.pause_reading()
                self._resuming = asyncio.get_running_loop().create_task(self._resume())

    async def _resume(self) -> None:
        while self._sink.get_write_buffer_size() > _LOW and not self._done.done():
            await asyncio.sleep(0.005)
        assert isinstance(self._source, asyncio.ReadTransport)
        with contextlib.suppress(RuntimeError, OSError):
            self._source.resume_reading()
        self._resuming = None

    def feed_eof(self) -> None:
        if not self._done.done():
            self._done.set_result(None)


async def tunnel(request: Request, upstream: UpstreamResponse, head: bytes) -> None:
    """Answer the client's upgrade with the upstream's ``101`` and pipe both connections until one closes."""
    connection = upstream.connection
    client = request.transport
    if connection.closed or connection.transport is None or client is None or client.is_closing():
        raise ConnectionResetError("a side of the upgraded connection is already gone")
    request.start(101, upstream.reason, head, framed=True)
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    towards_client = _Pipe(connection.transport, client, done)
    request.take_over(_Pipe(client, connection.transport, done))
    connection.tunnel(towards_client)
    try:
        await done
    finally:
        connection.close()  # the connection never goes back to the pool
        client.close()
        request.end()
