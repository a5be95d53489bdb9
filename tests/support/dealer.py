"""Support of the Dealer's tests: upstream processes, real Dealer daemons on 127.0.0.1 (all stopped at the
end), and a bounded load generator counting the ground truth."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from squals_action.dealer import (
    DealerClient,
    DealerConfig,
    connect_dealer,
    dealer_status,
    start_dealer,
    stop_dealer,
)

UPSTREAM_SCRIPT = Path(__file__).resolve().parent / "scripts" / "dealer_upstream.py"


class Upstreams:
    """Starts ``scripts/dealer_upstream.py`` processes and stops every one of them at the end of the test."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[str]] = []

    def start(self, name: str, port: int = 0) -> str:
        proc = subprocess.Popen(
            [sys.executable, str(UPSTREAM_SCRIPT), name, str(port)],
            stdout=subprocess.PIPE,
            text=True,
        )
        self.procs.append(proc)
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.isdigit(), f"upstream {name} did not start"
        return f"http://127.0.0.1:{line}"

    def stop_all(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
            if proc.stdout is not None:
                proc.stdout.close()


DealerFactory = Callable[..., DealerClient]


@pytest.fixture
def upstreams() -> Iterator[Upstreams]:
    ups = Upstreams()
    try:
        yield ups
    finally:
        ups.stop_all()


@pytest.fixture(scope="module")
def pair() -> Iterator[dict[str, str]]:
    """Two upstreams, ``a`` and ``b``, shared by a module's tests (starting processes is the slow part)."""
    ups = Upstreams()
    try:
        yield {"a": ups.start("a"), "b": ups.start("b")}
    finally:
        ups.stop_all()


@pytest.fixture
def dealer_factory(tmp_path: Path) -> Iterator[DealerFactory]:
    """``make(upstreams, weights, state=..., **config)`` starts a Dealer daemon; all stop afterwards."""
    states: list[Path] = []

    def make(
        upstreams: Mapping[str, str], weights: Mapping[str, float], state: Path | None = None, **kw: object
    ) -> DealerClient:
        state_dir = state or tmp_path / f"dealer{len(states)}"
        states.append(state_dir)
        return start_dealer(DealerConfig(upstreams=upstreams, weights=weights, **kw), state_dir)  # type: ignore[arg-type]

    try:
        yield make
    finally:
        for state_dir in states:
            stop_dealer(state_dir)
            assert dealer_status(state_dir).state == "stopped"


@dataclass
class Truth:
    """What the generator saw: per request (unit, variant header, upstream header, status), and the value of
    the header ``drive`` was asked to keep (``""`` when absent), in the same order."""

    results: list[tuple[str, str, str, int]] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)

    def variant_of(self) -> dict[str, set[str]]:
        seen: dict[str, set[str]] = {}
        for unit, variant, _, _ in self.results:
            seen.setdefault(unit, set()).add(variant)
        return seen

    def activations(self) -> Counter[str]:
        return Counter(variant for _, variant, _, _ in self.results)

    def units(self) -> dict[str, int]:
        by_variant: dict[str, set[str]] = {}
        for unit, variant, _, _ in self.results:
            by_variant.setdefault(variant, set()).add(unit)
        return {k: len(v) for k, v in by_variant.items()}


async def drive(
    url: str,
    plan: Iterable[tuple[str, str]],
    concurrency: int = 32,
    cookie: str = "squals_unit",
    keep: str = "x-seen-assignments",
) -> Truth:
    """Send one GET per (unit, path) with that unit's cookie over ``concurrency`` keep-alive connections.

    A minimal HTTP/1.1 client (Content-Length bodies only, which is what the test upstream sends) keeps the
    test's own CPU use low on a shared machine; the faithful-forwarding test uses full clients instead.
    """
    truth = Truth()
    queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
    for item in plan:
        queue.put_nowait(item)
    host, _, port = url.removeprefix("http://").partition(":")

    async def worker() -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            while True:
                try:
                    unit, path = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                writer.write(
                    f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nCookie: {cookie}={unit}\r\n\r\n".encode()
                )
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
                lines = head.decode("latin-1").split("\r\n")
                headers = {}
                for line in lines[1:]:
                    key, sep, value = line.partition(":")
                    if sep:
                        headers[key.strip().lower()] = value.strip()
                await reader.readexactly(int(headers.get("content-length", "0")))
                status = int(lines[0].split()[1])
                truth.results.append(
                    (unit, headers.get("x-squals-variant", ""), headers.get("x-upstream", ""), status)
                )
                truth.kept.append(headers.get(keep, ""))
        finally:
            writer.close()
            await writer.wait_closed()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return truth


@contextlib.contextmanager
def steady_load(url: str, *, workers: int, units: int, path: str) -> Iterator[list[tuple[int, str]]]:
    """``workers`` clients on a thread sending ``GET url+path`` in a loop, each cycling through ``units``
    sticky units (cookie ``squals_unit=w<worker>-<n>``), until the ``with`` block ends; yields the list the
    answers are appended to as ``(status, X-Squals-Variant)``, growing while the block runs."""
    import aiohttp

    answers: list[tuple[int, str]] = []
    stop = threading.Event()

    async def load() -> None:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:

            async def worker(w: int) -> None:
                i = 0
                while not stop.is_set():
                    i += 1
                    headers = {"Cookie": f"squals_unit=w{w}-{i % units}"}
                    async with session.get(url + path, headers=headers) as response:
                        await response.read()
                        answers.append((response.status, response.headers.get("X-Squals-Variant", "")))

            await asyncio.gather(*(worker(w) for w in range(workers)))

    thread = threading.Thread(target=lambda: asyncio.run(load()))
    thread.start()
    try:
        yield answers
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not thread.is_alive(), "the load did not stop"


@contextlib.contextmanager
def bare_restart(state: Path, timeout: float = 15.0) -> Iterator[DealerClient]:
    """The daemon started by hand on ``state`` after ``stop_dealer``: unlike ``start_dealer`` it keeps the
    saved ``routing.json`` (what a crashed-and-restarted Dealer comes back on); stopped at the end."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "squals_action.dealer",
            "--config",
            str(state / "config.json"),
            "--state",
            str(state),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + timeout
        while dealer_status(state).url is None:
            assert proc.poll() is None and time.monotonic() < deadline, "the Dealer did not come back"
            time.sleep(0.05)
        yield connect_dealer(state)
        stop_dealer(state)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
