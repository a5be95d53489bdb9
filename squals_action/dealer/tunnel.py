"""Upgraded connections (WebSocket, ``Upgrade: tcp``): after the upstream's ``101``, bytes flow both ways.

The request was assigned and counted like any other (sticky by unit, one activation); once the upstream
switched protocols, the client's and the upstream's connections are joined until either side closes, whatever
the routing does meanwhile: a weight switch never moves an open connection. Each direction keeps a bounded
buffer: when the receiving side is slow, the sending side's reading pauses.

aiohttp hands a connection over after a ``101`` only for the upgrades its HTTP parser knows (``websocket``
and ``tcp``); a request asking for another one is forwarded without its ``Upgrade`` header, as a plain
request.
"""

from __future__ import annotations

import asyncio
import contextlib

from aiohttp import web
from multidict import CIMultiDict

from squals_action.dealer.upstream import UpstreamResponse

UPGRADES = frozenset({"websocket", "tcp"})
_HIGH = 256 * 1024  # bytes waiting towards one side before the other side stops being read
_LOW = 64 * 1024


def upgrade_of(request: web.BaseRequest) -> str | None:
    """The protocol a request asks to switch to, when the Dealer can tunnel it (``None`` otherwise)."""
    headers = request.headers
    wanted = headers.get("Upgrade")
    if not wanted or wanted.lower() not in UPGRADES or request.body_exists:
        return None
    tokens = {t.strip().lower() for v in headers.getall("Connection", ()) for t in v.split(",")}
    return wanted if "upgrade" in tokens else None


class _Pipe:
    """Writes what one side sends to the other side's transport (fed by that side's aiohttp protocol)."""

    def __init__(self, source: asyncio.BaseTransport, sink: asyncio.Transport, done: asyncio.Future[None]):
        self._source = source
        self._sink = sink
        self._done = done
        self._resuming: asyncio.Task[None] | None = None

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        if data and not self._sink.is_closing():
            self._sink.write(data)
            if self._resuming is None and self._sink.get_write_buffer_size() > _HIGH:
                assert isinstance(self._source, asyncio.ReadTransport)
                self._source.pause_reading()
                self._resuming = asyncio.get_running_loop().create_task(self._resume())
        return False, b""

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

    def set_exception(self, exc: BaseException, cause: BaseException | None = None) -> None:
        self.feed_eof()


async def tunnel(
    request: web.BaseRequest, upstream: UpstreamResponse, headers: CIMultiDict[str]
) -> web.StreamResponse:
    """Answer the client's upgrade with the upstream's ``101`` and pipe both connections until one closes."""
    connection = upstream.connection
    client = request.transport
    if connection.closed or connection.transport is None or client is None:
        raise ConnectionResetError("a side of the upgraded connection is already gone")
    response = web.StreamResponse(status=101, reason=upstream.reason, headers=headers)
    await response.prepare(request)
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    towards_client = _Pipe(connection.transport, client, done)
    towards_upstream = _Pipe(client, connection.transport, done)
    request.protocol.keep_alive(False)
    request.protocol.set_parser(towards_upstream)  # type: ignore[arg-type]  # duck-typed like WebSocketReader
    connection.tunnel(towards_client)
    try:
        await done
    finally:
        connection.close()  # the connection never goes back to the pool
        client.close()
    return response
