"""The Dealer's worker processes: a killed worker comes back with its counts, and a switch reaches every
worker at one instant. Real upstream processes, a real Dealer (supervisor and workers) on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
import time
from pathlib import Path

import psutil
import pytest
import requests

from squals_action.dealer import DealerError
from squals_action.dealer.config import ENDPOINT_FILE
from tests.support.dealer import DealerFactory, activations_per_worker, drive


def _worker_pids(state: Path) -> list[int | None]:
    return list(json.loads((state / ENDPOINT_FILE).read_text())["worker_pids"])


def test_a_worker_killed_with_sigkill_is_restarted_and_its_persisted_counts_stay(
    pair: dict[str, str], dealer_factory: DealerFactory, tmp_path: Path
) -> None:
    state = tmp_path / "kill"
    dealer = dealer_factory(pair, {"a": 1, "b": 1}, state=state, workers=2, persist_interval=0.1)
    truth = asyncio.run(drive(dealer.url, [(f"k{i}", "/event/buy") for i in range(400)]))
    assert all(status == 200 for *_, status in truth.results)
    served = activations_per_worker(dealer, state, 2)  # also writes both books now
    assert all(served), served
    before = dealer.tallies()
    assert sum(t.activations for t in before.values()) == 400

    victim = _worker_pids(state)[0]
    assert victim is not None and psutil.Process(victim).cmdline()[-4:] == [
        "--worker",
        "0",
        "--port",
        dealer.url.rsplit(":", 1)[1],
    ]
    os.kill(victim, signal.SIGKILL)
    assert dealer.tallies() == before  # while it is down, its written book stands in for it
    deadline = time.monotonic() + 20
    while (pids := _worker_pids(state))[0] in (None, victim):
        assert time.monotonic() < deadline, "the killed worker was not restarted"
        time.sleep(0.05)
    assert pids[0] is not None and psutil.Process(pids[0]).is_running()
    assert dealer.tallies() == before  # the restarted worker carries on from its book

    again = asyncio.run(drive(dealer.url, [(f"k{i}", "/event/buy") for i in range(400)]))
    assert all(status == 200 for *_, status in again.results)
    after = dealer.tallies()
    assert sum(t.activations for t in after.values()) == 800
    assert {n: t.units for n, t in after.items()} == {n: t.units for n, t in before.items()}  # same 400 units
    assert all(activations_per_worker(dealer, state, 2))
    assert f"worker 0 (pid {victim}) exited with code -9: restarting" in (state / "dealer.log").read_text()


def test_a_switch_reaches_every_worker_at_once(
    pair: dict[str, str], dealer_factory: DealerFactory, tmp_path: Path
) -> None:
    """All traffic flips between ``a`` and ``b`` while 16 connections keep asking. Once any answer came
    from the new routing, every request sent after it gets the new routing too, whichever worker takes it."""
    state = tmp_path / "flip"
    dealer = dealer_factory(pair, {"a": 1, "b": 0}, state=state, workers=2)
    host, port = dealer.url.removeprefix("http://").split(":")
    log: list[tuple[float, float, str]] = []  # (sent, received, variant)
    stop = threading.Event()

    async def connection(c: int) -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        i = 0
        while not stop.is_set():
            i += 1
            sent = time.perf_counter()
            writer.write(f"GET / HTTP/1.1\r\nHost: x\r\nCookie: squals_unit=f{c}-{i % 20}\r\n\r\n".encode())
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            received = time.perf_counter()
            fields = dict(line.split(": ", 1) for line in head.split("\r\n")[1:] if ": " in line)
            await reader.readexactly(int(fields["Content-Length"]))
            log.append((sent, received, fields["X-Squals-Variant"]))
        writer.close()

    async def load() -> None:
        await asyncio.gather(*(connection(c) for c in range(16)))

    thread = threading.Thread(target=lambda: asyncio.run(load()))
    thread.start()
    switches: list[tuple[float, str]] = []
    try:
        time.sleep(0.3)
        for k in range(10):
            to = "b" if k % 2 == 0 else "a"
            switches.append((time.perf_counter(), to))
            dealer.set_weights({to: 1, "a" if to == "b" else "b": 0})
            time.sleep(0.15)
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not thread.is_alive()
    assert len(log) > 300
    for k, (issued, to) in enumerate(switches):
        # A request is assigned between its sending and its answer: one sent after the first answer from the
        # new routing and answered before the next switch was even asked for had no reason to get the old.
        until = switches[k + 1][0] if k + 1 < len(switches) else float("inf")
        phase = [entry for entry in log if issued <= entry[0] and entry[1] < until]
        first_new = min(received for _, received, variant in phase if variant == to)
        late = [entry for entry in phase if entry[0] > first_new and entry[2] != to]
        assert not late, (
            f"switch {k} to {to}: {len(late)} requests sent after the first new answer got the old"
        )
    assert all(activations_per_worker(dealer, state, 2))
    assert requests.get(dealer.url, timeout=10).headers["X-Squals-Variant"] == "a"  # the last switch


def test_a_worker_that_cannot_start_says_why(tmp_path: Path, dealer_factory: DealerFactory) -> None:
    state = tmp_path / "damaged"
    state.mkdir()
    (state / "tally-w1.json").write_text('{"format": 1, "variants": {"a": {"units": ["x"]}}}')
    with pytest.raises(DealerError, match=r"worker 1: .*tally-w1\.json: damaged tally file"):
        dealer_factory({"a": "http://127.0.0.1:9"}, {"a": 1}, state=state, workers=2)


def test_each_worker_reuses_its_connections_to_the_upstream(
    pair: dict[str, str], dealer_factory: DealerFactory
) -> None:
    dealer = dealer_factory({"a": pair["a"]}, {"a": 1}, workers=2)
    with requests.Session() as session:  # one client connection: one worker serves all of it
        ports = {session.get(dealer.url + "/peer", timeout=10).text for _ in range(50)}
    assert len(ports) == 1, ports  # 50 requests, one pooled upstream connection


def test_the_worker_count_comes_from_the_config_else_the_environment_else_the_cores(
    dealer_factory: DealerFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    up = {"a": "http://127.0.0.1:9"}
    monkeypatch.setenv("SQUALS_DEALER_WORKERS", "1")
    dealer_factory(up, {"a": 1}, state=tmp_path / "env")
    assert json.loads((tmp_path / "env" / ENDPOINT_FILE).read_text())["workers"] == 1
    dealer_factory(up, {"a": 1}, state=tmp_path / "config", workers=3)
    assert len(_worker_pids(tmp_path / "config")) == 3
    monkeypatch.delenv("SQUALS_DEALER_WORKERS")
    dealer_factory(up, {"a": 1}, state=tmp_path / "cores")
    assert len(_worker_pids(tmp_path / "cores")) == len(os.sched_getaffinity(0))
    monkeypatch.setenv("SQUALS_DEALER_WORKERS", "two")
    with pytest.raises(DealerError, match="SQUALS_DEALER_WORKERS must be a whole number of workers >= 1"):
        dealer_factory(up, {"a": 1}, state=tmp_path / "bad")
