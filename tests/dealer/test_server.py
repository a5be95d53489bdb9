"""The Dealer's HTTP/1.1 server on its own: framing, pipelining, limits, HTTP/1.0, ``Expect`` and the stop.

Each test runs the server in-process on uvloop (the Dealer's loop) with a small handler and talks to it over a
raw socket on 127.0.0.1, so what is asserted is the bytes on the wire.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable

import uvloop

from squals_action.dealer.request import HIGH_WATER, Handler, Request
from squals_action.dealer.server import MAX_FIELD, MAX_URL, HttpServer

Talk = Callable[[int], Awaitable[None]]


async def echo(request: Request) -> None:
    """Answers ``<method> <target> <body size>``; ``/stream`` streams three pieces of unknown length."""
    size = len(await request.body.read(1 << 30)) if request.body is not None else 0
    if request.raw_path == "/stream":
        request.start(200, "OK", b"", framed=False)
        for piece in (b"one ", b"two ", b"three"):
            await request.write(piece)
        return request.end()
    if request.raw_path == "/fail":
        raise RuntimeError("the handler broke")
    text = f"{request.method} {request.raw_path} {size}"
    request.text(200, text)


def run(talk: Talk, handler: Handler = echo) -> None:
    async def main() -> None:
        server = HttpServer(handler, 5.0)
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        await server.start(sock)
        try:
            await asyncio.wait_for(talk(sock.getsockname()[1]), 20)
        finally:
            await server.close(2.0)

    uvloop.run(main())


async def exchange(port: int, data: bytes) -> bytes:
    """Send ``data`` and read until the server closes the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    try:
        return await reader.read(1 << 20) + await reader.read()
    finally:
        writer.close()


async def answer(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """One answer with a Content-Length: its head and body."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    length = next(int(line[15:]) for line in lines if line.lower().startswith(b"content-length:"))
    return head, await reader.readexactly(length)


def test_pipelined_requests_are_answered_in_order_with_their_bodies() -> None:
    async def talk(port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\n"
            b"POST /2 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
            b"PUT /3 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
        )
        bodies = [(await answer(reader))[1] for _ in range(3)]
        assert bodies == [b"GET /1 0", b"POST /2 5", b"PUT /3 3"]
        writer.close()

    run(talk)


def test_a_handler_answering_from_callbacks_is_served_in_order_and_its_errors_are_500s() -> None:
    """The proxy's common path: the handler returns nothing and answers from a later callback (an upstream
    connection's); pipelined requests still leave in order, and a raise (at once, or in the callback)
    is a 500 on a connection that stays good."""

    def later(request: Request) -> None:
        path = request.raw_path
        if path == "/raise":
            raise RuntimeError("the handler broke")
        loop = asyncio.get_running_loop()
        if path == "/raise-later":
            loop.call_soon(request.fail, RuntimeError("a callback broke"))
        else:  # the slow one is asked first and must still come first
            loop.call_later(0.03 if path == "/slow" else 0.0, request.text, 200, path)

    async def talk(port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        paths = (b"/slow", b"/fast", b"/raise", b"/raise-later", b"/last")
        writer.write(b"".join(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path for path in paths))
        answers = [await answer(reader) for _ in paths]
        assert [body for _, body in answers[:2]] == [b"/slow", b"/fast"]
        for head, body in answers[2:4]:
            assert head.startswith(b"HTTP/1.1 500 ") and body == b"the Dealer failed to answer this request\n"
        assert answers[4][1] == b"/last"
        writer.close()

    run(talk, later)


def test_bytes_that_are_not_http_behind_a_request_under_way_close_the_connection_after_its_answer() -> None:
    async def talk(port: int) -> None:
        got = await exchange(
            port, b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nok\x16\x03 junk\r\n\r\n"
        )
        assert got.startswith(b"HTTP/1.1 200 ") and got.endswith(b"POST /up 2")  # answered, then closed

    run(talk)


def test_an_answer_of_unknown_length_is_chunked_for_http_1_1_and_ends_with_the_connection_for_1_0() -> None:
    async def talk(port: int) -> None:
        chunked = await exchange(port, b"GET /stream HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        head, _, body = chunked.partition(b"\r\n\r\n")
        assert b"Transfer-Encoding: chunked" in head and b"Connection: close" in head
        assert body == b"4\r\none \r\n4\r\ntwo \r\n5\r\nthree\r\n0\r\n\r\n"
        old = await exchange(port, b"GET /stream HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        head, _, body = old.partition(b"\r\n\r\n")
        assert b"Transfer-Encoding" not in head and b"Connection: close" in head
        assert body == b"one two three"

    run(talk)


def test_http_1_0_keeps_the_connection_only_when_asked() -> None:
    async def talk(port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for path in (b"/a", b"/b"):
            writer.write(b"GET %s HTTP/1.0\r\nConnection: keep-alive\r\n\r\n" % path)
            head, body = await answer(reader)
            assert b"Connection: keep-alive" in head and body == b"GET %s 0" % path
        writer.close()
        closed = await exchange(port, b"GET /c HTTP/1.0\r\n\r\n")
        assert b"Connection: close" in closed and closed.endswith(b"GET /c 0")

    run(talk)


def test_heads_over_the_limits_and_garbage_are_refused_in_one_line_and_closed() -> None:
    async def talk(port: int) -> None:
        long_target = await exchange(port, b"GET /" + b"a" * MAX_URL + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        assert long_target.startswith(b"HTTP/1.1 414 ")
        long_field = await exchange(port, b"GET / HTTP/1.1\r\nX-Big: " + b"b" * (MAX_FIELD + 1) + b"\r\n\r\n")
        assert long_field.startswith(b"HTTP/1.1 431 ")
        garbage = await exchange(port, b"\x16\x03\x01 not http at all\r\n\r\n")
        assert garbage.startswith(b"HTTP/1.1 400 Bad Request\r\n")
        for refused in (long_target, long_field, garbage):
            head, _, body = refused.partition(b"\r\n\r\n")
            assert b"Connection: close" in head and body.count(b"\n") == 1  # one line, then closed

    run(talk)


def test_expect_100_continue_is_answered_when_the_body_is_read_and_a_handler_error_is_a_500() -> None:
    async def talk(port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
        assert await reader.readuntil(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
        writer.write(b"data")
        assert (await answer(reader))[1] == b"POST /up 4"
        writer.write(b"GET /fail HTTP/1.1\r\nHost: x\r\n\r\n")
        head, body = await answer(reader)
        assert head.startswith(b"HTTP/1.1 500 ") and body == b"the Dealer failed to answer this request\n"
        writer.write(b"GET /after HTTP/1.1\r\nHost: x\r\n\r\n")  # the connection is still good
        assert (await answer(reader))[1] == b"GET /after 0"
        writer.close()

    async def continue_then_echo(request: Request) -> None:
        if request.body is not None:
            request.send_continue()
        await echo(request)

    run(talk, continue_then_echo)


def test_an_answer_before_the_body_was_read_closes_the_connection() -> None:
    """The server cannot tell where the next request starts in an unread body: it says so and closes."""

    async def talk(port: int) -> None:
        refused = await exchange(port, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\nabc")
        assert refused.startswith(b"HTTP/1.1 413 ") and b"Connection: close" in refused

    async def refuse(request: Request) -> None:
        request.text(413, "too large\n")

    run(talk, refuse)


def test_a_big_upload_is_read_no_faster_than_the_handler_takes_it() -> None:
    most: list[int] = []

    async def slow_reader(request: Request) -> None:
        assert request.body is not None
        size = 0
        while data := await request.body.readany():
            size += len(data)
            most.append(len(data))
            await asyncio.sleep(0.002)
        request.text(200, str(size))

    async def talk(port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        total = 16 * 1024 * 1024
        writer.write(b"PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % total)
        for _ in range(total // 65536):
            writer.write(b"x" * 65536)
            await writer.drain()
        assert (await answer(reader))[1] == str(total).encode()
        writer.close()

    run(talk, slow_reader)
    assert max(most) <= HIGH_WATER + 512 * 1024  # buffered: one read past the high-water mark at most


def test_a_stop_lets_the_answer_under_way_finish_closes_idle_connections_and_refuses_new_ones() -> None:
    async def slow(request: Request) -> None:
        await asyncio.sleep(0.5)
        request.text(200, "late but whole")

    async def main() -> None:
        server = HttpServer(slow, 5.0)
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        await server.start(sock)
        port = sock.getsockname()[1]
        busy_reader, busy = await asyncio.open_connection("127.0.0.1", port)
        idle_reader, idle = await asyncio.open_connection("127.0.0.1", port)
        busy.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        await asyncio.sleep(0.1)
        stopping = asyncio.create_task(server.close(5.0))
        assert await asyncio.wait_for(idle_reader.read(), 2) == b""  # closed without an answer
        head, body = await answer(busy_reader)
        assert body == b"late but whole" and b"Connection: close" in head
        await stopping
        try:
            await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            pass
        else:
            raise AssertionError("a stopped server still accepts connections")
        busy.close()
        idle.close()

    uvloop.run(main())


class _Transport:
    """Just enough of a transport to feed a connection bytes in any pieces and read what it wrote."""

    def __init__(self) -> None:
        self.written = bytearray()
        self.closing = False

    def write(self, data: bytes) -> None:
        self.written += data

    def get_extra_info(self, name: str) -> object:
        return ("127.0.0.1", 5000) if name == "peername" else None

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    abort = close


def test_a_request_split_at_every_byte_reads_the_same() -> None:
    """However the bytes arrive, the handler sees the same request (target, fields, body) and the client the
    same answer: the target and the fields may come in pieces, a chunked body in any cut."""
    wire = (
        b"POST /split/path?q=1&r=%20 HTTP/1.1\r\nHost: example\r\nCookie: squals_unit=u1; x=y\r\n"
        b"Connection: keep-alive, X-Hop\r\nX-Hop: 1\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    )
    pairs = tuple[tuple[bytes, bytes], ...]
    seen: list[tuple[str, str, pairs, pairs, bytes]] = []  # hashable: one value when every cut reads the same

    async def record(request: Request) -> None:
        body = await request.body.read(1024) if request.body is not None else b""
        fields = tuple(sorted(request.fields.items()))
        seen.append((request.method, request.raw_path, tuple(request.raw_headers), fields, body))
        request.text(200, "ok")

    async def main() -> None:
        from squals_action.dealer.server import HttpProtocol

        server = HttpServer(record, 5.0)
        answers = []
        for cut in range(1, len(wire)):
            transport = _Transport()
            conn = HttpProtocol(server)
            conn.connection_made(transport)  # type: ignore[arg-type]
            conn.data_received(wire[:cut])
            await asyncio.sleep(0)
            conn.data_received(wire[cut:])
            for _ in range(5):
                await asyncio.sleep(0)
            answers.append(bytes(transport.written).split(b"\r\n", 1)[0])
            conn.connection_lost(None)
        assert set(answers) == {b"HTTP/1.1 200 OK"}

    uvloop.run(main())
    assert len(seen) == len(wire) - 1 and len(set(seen)) == 1
    method, target, raw, fields, body = seen[0]
    assert (method, target, body) == ("POST", "/split/path?q=1&r=%20", b"hello world")
    assert (b"cookie", b"squals_unit=u1; x=y") in fields and (b"connection", b"keep-alive, X-Hop") in fields
    assert (b"X-Hop", b"1") in raw
