"""The floor of a Python proxy, for bench/dealer.py's ``python-floor`` target: what no feature costs.

    python bench/floor_proxy.py PORT UPSTREAM_PORT [UPSTREAM_PORT ...]

One process on uvloop, bound with ``SO_REUSEPORT`` (start several for several workers). Requests are parsed
by httptools and sent on pooled keep-alive upstream connections chosen by the unit cookie, answers parsed
by httptools and written back in one piece, all in protocol callbacks: no task, no future, no tally, no
journal, no timeout, no header rules beyond dropping ``Connection``. It handles only what the bench sends
(GET without a body, answers with a Content-Length) and is not a proxy to run; it shows how much of the
Dealer's cost per request is what Python and the loop charge for any proxy, and how much is the Dealer's.
"""

from __future__ import annotations

import asyncio
import socket
import sys

import httptools
import uvloop


class Upstream(asyncio.Protocol):
    """One keep-alive connection to an upstream: the answer goes back to ``client`` whole."""

    def __init__(self, idle: list[Upstream]) -> None:
        self.idle = idle
        self.transport: asyncio.Transport | None = None
        self.client: Client | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.head: list[bytes] = []
        self.body: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() != b"connection":
            self.head.append(b"%s: %s\r\n" % (name, value))

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        client, self.client = self.client, None
        answer = b"HTTP/1.1 200 OK\r\n%s\r\n%s" % (b"".join(self.head), b"".join(self.body))
        self.head, self.body = [], []
        self.idle.append(self)
        if client is not None and client.transport is not None and not client.transport.is_closing():
            client.transport.write(answer)  # a client gone meanwhile (wrk stopping) gets nothing


class Client(asyncio.Protocol):
    """One client connection: each request goes to the upstream its unit cookie picks."""

    def __init__(self, pools: list[list[Upstream]], ports: list[int]) -> None:
        self.pools = pools
        self.ports = ports
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.head: list[bytes] = []
        self.cookie = b""
        self.connecting: set[asyncio.Future[None]] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_url(self, url: bytes) -> None:
        self.url = url

    def on_header(self, name: bytes, value: bytes) -> None:
        low = name.lower()
        if low == b"cookie":
            self.cookie = value
        if low not in (b"host", b"connection"):
            self.head.append(b"%s: %s\r\n" % (name, value))

    def on_message_complete(self) -> None:
        choice = hash(self.cookie) % len(self.pools)
        head = b"GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%sX-Forwarded-For: 127.0.0.1\r\n\r\n" % (
            self.url,
            b"".join(self.head),
        )
        self.head = []
        idle = self.pools[choice]
        if idle:
            self._send(idle.pop(), head)
        else:
            self.connecting.add(task := asyncio.ensure_future(self._connect(choice, head)))
            task.add_done_callback(self.connecting.discard)

    async def _connect(self, choice: int, head: bytes) -> None:
        loop = asyncio.get_running_loop()
        pool = self.pools[choice]
        _, upstream = await loop.create_connection(lambda: Upstream(pool), "127.0.0.1", self.ports[choice])
        self._send(upstream, head)

    def _send(self, upstream: Upstream, head: bytes) -> None:
        upstream.client = self
        assert upstream.transport is not None
        upstream.transport.write(head)


async def serve(port: int, upstream_ports: list[int]) -> None:
    pools: list[list[Upstream]] = [[] for _ in upstream_ports]
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", port))
    loop = asyncio.get_running_loop()
    await loop.create_server(lambda: Client(pools, upstream_ports), sock=sock, backlog=1024)
    print("ready", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    uvloop.run(serve(int(sys.argv[1]), [int(p) for p in sys.argv[2:]]))
