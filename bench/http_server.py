"""Benchmark: the Dealer's own HTTP/1.1 server against aiohttp's, the same tiny answer, one run, on loopback.

    .venv/bin/python bench/http_server.py [--requests 30000] [--concurrency 32] [--rounds 3]

Each server runs in its own process on uvloop and answers every request with the same 36-byte body: aiohttp's
low-level ``web.Server`` (what the Dealer's workers served with until issue 15's fourth session) and
``squals_action.dealer.server.HttpServer`` (what they serve with now). bench/dealer.py's load generator
(raw asyncio keep-alive connections, fixed request counts) drives both in alternating rounds; the median
round's requests/s and each server's CPU time per request (from ``/proc``: the figure the machine's load moves
least) are printed, and the ratio of the two in the same run. The Dealer pays this cost once per proxied
request on its public side, so it is the part of the Dealer's CPU that the server choice decides.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

from dealer import load

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BODY = b"green ok\n" * 4


def serve(kind: str) -> None:
    """The server process: print the bound port, answer until killed."""
    import asyncio
    import socket

    import uvloop

    async def main() -> None:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        if kind == "aiohttp":
            from aiohttp import web

            async def handler(request: web.BaseRequest) -> web.Response:
                return web.Response(body=BODY, content_type="text/plain")

            runner = web.ServerRunner(web.Server(handler, access_log=None), access_log=None)
            await runner.setup()
            await web.SockSite(runner, sock, backlog=1024).start()
        else:
            from squals_action.dealer.request import Request, date_line
            from squals_action.dealer.server import HttpServer

            def answer(request: Request) -> None:  # at once, as the proxy answers from callbacks
                head = b"Content-Type: text/plain\r\nContent-Length: %d\r\n%s" % (len(BODY), date_line())
                request.answer(200, "OK", head, BODY)

            await HttpServer(answer, 10.0).start(sock)
        print(sock.getsockname()[1], flush=True)
        await asyncio.Event().wait()

    uvloop.run(main())


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--requests", type=int, default=30_000, help="requests per round and server")
    parser.add_argument("--concurrency", type=int, default=32, help="connections of the load generator")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds; the median is reported")
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return 0
    kinds = ("aiohttp", "dealer")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    procs = {
        kind: subprocess.Popen(
            [sys.executable, __file__, "--serve", kind], stdout=subprocess.PIPE, text=True, env=env
        )
        for kind in kinds
    }
    try:
        ports = {kind: int(proc.stdout.readline()) for kind, proc in procs.items()}  # type: ignore[union-attr]
        rates: dict[str, list[float]] = {kind: [] for kind in kinds}
        cpu: dict[str, list[float]] = {kind: [] for kind in kinds}
        for kind in kinds:  # warm-up
            load([("127.0.0.1", ports[kind])], 2000, args.concurrency)
        for round_ in range(args.rounds):
            for kind in kinds:
                before = cpu_seconds(procs[kind].pid)
                result = load([("127.0.0.1", ports[kind])], args.requests, args.concurrency, seed=round_)
                if result.failures:
                    raise SystemExit(f"{kind}: {result.failures} answers were not 200")
                cpu[kind].append((cpu_seconds(procs[kind].pid) - before) * 1000.0 / args.requests)
                rates[kind].append(result.rps)
        for kind in kinds:
            print(
                f"{kind:<8}: {statistics.median(rates[kind]):>8.0f} req/s, "
                f"{statistics.median(cpu[kind]):.4f} ms of CPU per request (x{args.concurrency})"
            )
        ratio = statistics.median(cpu["dealer"]) / statistics.median(cpu["aiohttp"])
        print(f"ratio   : dealer/aiohttp CPU per request {ratio:.2f}, load average {os.getloadavg()[0]:.1f}")
    finally:
        for proc in procs.values():
            proc.kill()
            proc.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
