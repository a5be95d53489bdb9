"""A small upstream app for the Dealer's tests and bench: ``python dealer_upstream.py NAME`` prints its port.

Routes: ``/echo`` (JSON of what arrived, body hashed), ``/event/<name>`` (answers with ``X-Squals-Event``),
``/status/<code>``, ``/stream?chunks=N&size=B`` (chunked body), ``/slow?ms=M``, ``/gzip``, ``/cookies``,
``/ws`` (a WebSocket answering each text message with ``NAME:message`` and each binary one unchanged),
``/peer`` (the client's port: which connection the request came on);
anything else answers the upstream's name. Every answer carries ``X-Upstream: NAME``; ``/event/<name>`` and
the name's answer also carry the request's ``X-Squals-Assignments`` back as ``X-Seen-Assignments``.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import sys

from aiohttp import web


def make_app(name: str) -> web.Application:
    tag = {"X-Upstream": name}

    def seen(request: web.Request) -> dict[str, str]:
        """The tag, and the app-side variants the Dealer told this request (what an app would read)."""
        told = request.headers.get("X-Squals-Assignments")
        return {**tag, "X-Seen-Assignments": told} if told is not None else tag

    async def echo(request: web.Request) -> web.Response:
        digest = hashlib.sha256()
        size = 0
        async for chunk in request.content.iter_any():
            digest.update(chunk)
            size += len(chunk)
        payload = {
            "upstream": name,
            "method": request.method,
            "raw_path": request.raw_path,
            "headers": [[k, v] for k, v in request.headers.items()],
            "body_sha256": digest.hexdigest(),
            "body_size": size,
        }
        return web.Response(text=json.dumps(payload), content_type="application/json", headers=tag)

    async def event(request: web.Request) -> web.Response:
        headers = {**seen(request), "X-Squals-Event": request.match_info["name"]}
        return web.Response(text=name, headers=headers)

    async def status(request: web.Request) -> web.Response:
        code = int(request.match_info["code"])
        return web.Response(status=code, text=None if code in (204, 304) else name, headers=tag)

    async def stream(request: web.Request) -> web.StreamResponse:
        chunks = int(request.query.get("chunks", "10"))
        size = int(request.query.get("size", "1024"))
        response = web.StreamResponse(headers=tag)
        response.enable_chunked_encoding()
        await response.prepare(request)
        for i in range(chunks):
            await response.write(bytes([i % 256]) * size)
        await response.write_eof()
        return response

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(int(request.query.get("ms", "50")) / 1000)
        return web.Response(text=name, headers=tag)

    async def gz(request: web.Request) -> web.Response:
        body = gzip.compress(b"compressed " * 100)
        return web.Response(
            body=body, headers={**tag, "Content-Encoding": "gzip", "Content-Type": "text/plain"}
        )

    async def cookies(request: web.Request) -> web.Response:
        response = web.Response(text=name, headers=tag)
        response.headers.add("Set-Cookie", "a=1; Path=/")
        response.headers.add("Set-Cookie", "b=2; Path=/")
        response.headers["Connection"] = "keep-alive, X-Private"
        response.headers["X-Private"] = "hop"
        return response

    async def ws(request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        async for message in socket:
            if message.type == web.WSMsgType.TEXT:
                await socket.send_str(f"{name}:{message.data}")
            elif message.type == web.WSMsgType.BINARY:
                await socket.send_bytes(message.data)
        return socket

    async def peer(request: web.Request) -> web.Response:
        assert request.transport is not None
        return web.Response(text=str(request.transport.get_extra_info("peername")[1]), headers=tag)

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text=name, headers=seen(request))

    app = web.Application()
    app.add_routes(
        [
            web.route("*", "/echo", echo),
            web.route("*", "/event/{name}", event),
            web.route("*", "/status/{code}", status),
            web.get("/stream", stream),
            web.get("/slow", slow),
            web.get("/gzip", gz),
            web.get("/cookies", cookies),
            web.get("/ws", ws),
            web.get("/peer", peer),
            web.route("*", "/{tail:.*}", hello),
        ]
    )
    return app


async def serve(name: str, port: int) -> None:
    runner = web.AppRunner(make_app(name), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, backlog=1024)
    await site.start()
    print(runner.addresses[0][1], flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(serve(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 0))
