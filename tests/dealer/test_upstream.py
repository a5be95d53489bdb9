"""The Dealer's upstream client against scripted HTTP/1.1 servers on 127.0.0.1 (raw sockets, so every framing
case is exactly what the test writes): keep-alive reuse, a pooled connection the upstream closed, bodies
delimited by length, chunks or the end of the connection, informational answers, HEAD, timeouts, refusals."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable

import pytest
from yarl import URL

from squals_action.dealer.fallback import may_retry
from squals_action.dealer.upstream import (
    BrokenOff,
    Dropped,
    Origin,
    Unreachable,
    UpstreamPool,
    UpstreamResponse,
    resendable,
)

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            head += await reader.readexactly(int(line.split(b":")[1]))
    return head


async def _with_server(handler: Handler, test: Callable[[Origin, list[int]], Awaitable[None]]) -> None:
    """Run ``test`` against a server calling ``handler`` per connection; the list counts connections."""
    connections: list[int] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        try:
            await handler(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        await asyncio.wait_for(test(Origin.of(URL(f"http://127.0.0.1:{port}/base/")), connections), 20)
    finally:
        server.close()


def _head(origin: Origin, method: str = "GET", path: str = "/") -> bytes:
    return f"{method} {origin.prefix}{path} HTTP/1.1\r\nHost: {origin.authority}\r\n\r\n".encode()


def test_keep_alive_reuses_a_connection_and_replaces_one_closed_or_idle_too_long() -> None:
    seen: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            seen.append(await _read_request(reader))
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Twice: 1\r\nX-Twice: 2\r\n\r\nok")
            await writer.drain()
            if len(seen) == 3:  # then closes this connection while the client keeps it pooled
                return

    async def test(origin: Origin, connections: list[int]) -> None:
        pool = UpstreamPool(5.0, 5.0)
        for _ in range(3):
            answer = await pool.request(origin, "GET", _head(origin), None, False)
            assert (answer.status, answer.reason, await answer.read()) == (200, "OK", b"ok")
            assert [v for k, v in answer.raw if k == b"X-Twice"] == [b"1", b"2"]  # repeats kept, in order
            answer.release()
        await asyncio.sleep(0.2)  # the upstream's close reaches the pooled connection
        answer = await pool.request(origin, "GET", _head(origin), None, False)
        assert await answer.read() == b"ok"
        answer.release()
        assert len(connections) == 2
        pool.keepalive = 0.05  # idle longer than this: closed, not reused
        await asyncio.sleep(0.1)
        answer = await pool.request(origin, "GET", _head(origin), None, False)
        assert await answer.read() == b"ok"
        answer.release()
        assert len(connections) == 3
        assert seen[0].startswith(b"GET /base/ HTTP/1.1\r\nHost: 127.0.0.1:")
        pool.close()

    asyncio.run(_with_server(handler, test))


def test_chunked_close_delimited_informational_and_head_answers() -> None:
    answers = [
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",  # an answer to HEAD: no body follows
        b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end",
    ]

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for answer in answers:
            await _read_request(reader)
            writer.write(answer)
            await writer.drain()

    async def test(origin: Origin, connections: list[int]) -> None:
        pool = UpstreamPool(5.0, 5.0)
        answer = await pool.request(origin, "POST", _head(origin, "POST"), None, False)
        assert answer.status == 201 and answer.content_length is None
        pieces = []
        while piece := await answer.chunk():
            pieces.append(piece)
        assert b"".join(pieces) == b"abcde" and await answer.chunk() == b""
        answer.release()
        answer = await pool.request(origin, "HEAD", _head(origin, "HEAD"), None, False)
        assert (answer.status, answer.content_length, await answer.read()) == (200, 5, b"")
        answer.release()
        answer = await pool.request(origin, "GET", _head(origin), None, False)
        assert await answer.read() == b"until the end"
        answer.release()
        assert len(connections) == 1
        pool.close()

    asyncio.run(_with_server(handler, test))


def test_a_silent_upstream_times_out_and_a_broken_body_is_broken_off() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await _read_request(reader)
        if b"/broken" in request:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part")
            await writer.drain()
            return
        await asyncio.sleep(10)

    async def test(origin: Origin, connections: list[int]) -> None:
        pool = UpstreamPool(5.0, 0.3)
        with pytest.raises(TimeoutError):
            await pool.request(origin, "GET", _head(origin), None, False)
        answer = await pool.request(origin, "GET", _head(origin, path="/broken"), None, False)
        with pytest.raises(BrokenOff):
            await answer.read()
        answer.release()
        pool.close()

    asyncio.run(_with_server(handler, test))


def test_refused_and_dropped_connections_say_whether_a_retry_is_safe() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)  # read, then close without answering

    async def test(origin: Origin, connections: list[int]) -> None:
        pool = UpstreamPool(5.0, 5.0)
        with pytest.raises(Dropped) as dropped:
            await pool.request(origin, "POST", _head(origin, "POST"), None, False)
        assert may_retry(dropped.value, "GET", False) and not may_retry(dropped.value, "POST", False)
        with socket.socket() as sock:  # a port nobody listens on
            sock.bind(("127.0.0.1", 0))
            closed = Origin.of(URL(f"http://127.0.0.1:{sock.getsockname()[1]}"))
        with pytest.raises(Unreachable) as refused:
            await pool.request(closed, "POST", _head(closed, "POST"), None, False)
        assert may_retry(refused.value, "POST", True)
        pool.close()

    asyncio.run(_with_server(handler, test))


def test_send_calls_back_once_per_answer_whole_or_at_its_head_and_on_every_failure() -> None:
    """:meth:`UpstreamPool.send`, the proxy's common path: no task, one callback per answer."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            request = await _read_request(reader)
            if b"/long" in request:
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789")
            elif b"/broken" in request:
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nonly")
                return
            elif b"/silent" in request:
                await asyncio.sleep(10)
            else:
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()
            if b"/then-drop" in request:  # the next request finds the connection closed by the upstream
                await _read_request(reader)
                return

    async def test(origin: Origin, connections: list[int]) -> None:
        pool = UpstreamPool(5.0, 0.3)
        called: list[UpstreamResponse] = []
        done = asyncio.Event()

        def ready(response: UpstreamResponse) -> None:
            called.append(response)
            done.set()

        async def send(path: str, whole: int = 5) -> UpstreamResponse:
            done.clear()
            assert pool.send(origin, "GET", _head(origin, path=path), ready, whole)
            await done.wait()
            return called[-1]

        assert not pool.send(origin, "GET", _head(origin), ready, 5)  # nothing pooled: the caller connects
        first = await pool.request(origin, "GET", _head(origin, path="/then-drop"), None, False)
        await first.read()
        first.release()
        stale = await send("/ok")
        assert isinstance(stale.error, Dropped) and resendable(stale.error, stale.connection, "GET")
        assert not resendable(stale.error, stale.connection, "POST")
        stale.release()
        warm = await pool.request(origin, "GET", _head(origin), None, False, reuse=False)
        await warm.read()
        warm.release()
        whole = await send("/ok")
        assert (whole.complete, whole.take()) == (True, b"ok")
        whole.release()
        long = await send("/long")  # 10 bytes > whole: called at its head, read on as a coroutine
        assert long.status == 200 and long.content_length == 10
        assert await long.read() == b"0123456789"
        long.release()
        silent = await send("/silent", 100)
        assert isinstance(silent.error, TimeoutError)
        silent.release()
        warm = await pool.request(origin, "GET", _head(origin), None, False)
        await warm.read()
        warm.release()
        broken = await send("/broken", 100)
        assert isinstance(broken.error, BrokenOff) and broken.status == 200
        broken.release()
        assert len(called) == 5  # once per answer
        pool.close()

    asyncio.run(_with_server(handler, test))
