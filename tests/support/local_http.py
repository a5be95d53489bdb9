"""HTTP servers on 127.0.0.1 for the tests: one way to bind, answer, serve and stop, so that each fake says
only what it answers (the tests' fakes had grown a dozen copies of the same start/stop and send lines)."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self


class QuietHandler(BaseHTTPRequestHandler):
    """A request handler that answers in one call and writes no access line per request to the test's
    output."""

    def reply(self, status: int, body: bytes, headers: Mapping[str, str] | None = None) -> None:
        """Send ``status``, ``headers`` (in that order), the body's Content-Length, then ``body``."""
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


class LocalServer:
    """A threading HTTP server on a free port of 127.0.0.1, bound at construction and served from a daemon
    thread by :meth:`start` (or ``with``); :meth:`stop` shuts it down, closes the socket and joins."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=10)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
