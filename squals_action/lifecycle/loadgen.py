"""Synthetic traffic for the demo: a few visitors browsing and checking out, bounded and on loopback only.

Each visitor keeps its own Dealer cookie, so assignments stay sticky as for real users. The rate is capped
(``rate`` requests per second in total) and the target must be a loopback address: this never leaves the
machine. Every answer is counted, so a report can say "N requests, 0 failed".
"""

from __future__ import annotations

import http.client
import ipaddress
import random
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from squals_action.errors import UsageError


@dataclass(frozen=True, kw_only=True)
class LoadSummary:
    requests: int
    ok: int
    failed: int
    checkouts: int
    first_failures: tuple[str, ...]


class SyntheticLoad:
    """Background visitors against ``url``: start with :meth:`start`, end with :meth:`stop` (idempotent)."""

    def __init__(self, url: str, *, visitors: int = 40, rate: float = 60.0, threads: int = 3, seed: int = 7):
        parts = urlsplit(url)
        host = parts.hostname or ""
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = host == "localhost"
        if not loopback or parts.port is None:
            raise UsageError(f"synthetic traffic goes to loopback addresses only, not {url!r}")
        self.host, self.port = host, parts.port
        self.visitors = [f"visitor-{seed}-{i}" for i in range(visitors)]
        self.pause = threads / rate
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._random = random.Random(seed)
        self.requests = self.ok = self.checkouts = 0
        self.failures: list[str] = []
        self._threads = [
            threading.Thread(target=self._run, name=f"squals-load-{i}", daemon=True) for i in range(threads)
        ]

    def start(self) -> SyntheticLoad:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> LoadSummary:
        self._stop.set()
        for thread in self._threads:
            if thread.is_alive():
                thread.join(timeout=15)
        return self.summary()

    def summary(self) -> LoadSummary:
        with self._lock:
            return LoadSummary(
                requests=self.requests,
                ok=self.ok,
                failed=self.requests - self.ok,
                checkouts=self.checkouts,
                first_failures=tuple(self.failures[:5]),
            )

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                visitor = self._random.choice(self.visitors)
                checkout = self._random.random() < 0.2
            method, path = ("POST", "/checkout") if checkout else ("GET", "/")
            outcome = self._one(method, path, visitor)
            with self._lock:
                self.requests += 1
                if outcome is None:
                    self.ok += 1
                    self.checkouts += int(checkout)
                elif len(self.failures) < 50:
                    self.failures.append(outcome)
            self._stop.wait(self.pause)

    def _one(self, method: str, path: str, visitor: str) -> str | None:
        """``None`` for a 2xx answer, else what went wrong."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
        try:
            body = b"" if method == "POST" else None
            conn.request(method, path, body=body, headers={"Cookie": f"squals_unit={visitor}"})
            response = conn.getresponse()
            response.read()
            if 200 <= response.status < 300:
                return None
            return f"{method} {path}: HTTP {response.status}"
        except (OSError, http.client.HTTPException) as exc:
            return f"{method} {path}: {type(exc).__name__}: {exc}"
        finally:
            conn.close()


def wait(seconds: float) -> None:
    time.sleep(seconds)
