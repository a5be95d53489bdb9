"""The Dealer's worker process: a killed worker comes back with every acknowledged count, a switch is seen at
one instant, events count for assigned units whichever connection brings them, and more than one worker is
refused. Real upstream processes, a real Dealer (supervisor and worker) on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
import requests

from squals_action.dealer import DealerError, stop_dealer
from squals_action.dealer.config import ENDPOINT_FILE
from tests.support.dealer import DealerFactory, drive


def _worker_pids(state: Path) -> list[int | None]:
    return list(json.loads((state / ENDPOINT_FILE).read_text())["worker_pids"])


def test_a_worker_killed_with_sigkill_is_restarted_with_every_acknowledged_count(
    pair: dict[str, str], dealer_factory: DealerFactory, tmp_path: Path
) -> None:
    state = tmp_path / "kill"
    dealer = dealer_factory(pair, {"a": 1, "b": 1}, state=state)
    truth = asyncio.run(drive(dealer.url, [(f"k{i}", "/event/buy") for i in range(400)]))
    assert all(status == 200 for *_, status in truth.results)
    for i in range(0, 400, 4):
        dealer.record_event("checkout", unit=f"k{i}")
    before = dealer.tallies()
    assert sum(t.activations for t in before.values()) == 400
    assert sum(t.event_units.get("checkout", 0) for t in before.values()) == 100

    victim = _worker_pids(state)[0]
    assert victim is not None and psutil.Process(victim).cmdline()[-4:] == [
        "--worker",
        "0",
        "--port",
        dealer.url.rsplit(":", 1)[1],
    ]
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 20
    while (pids := _worker_pids(state))[0] in (None, victim):
        assert time.monotonic() < deadline, "the killed worker was not restarted"
        time.sleep(0.05)
    assert pids[0] is not None and psutil.Process(pids[0]).is_running()
    assert dealer.tallies() == before  # the restarted worker read its journal back: nothing acknowledged lost

    again = asyncio.run(drive(dealer.url, [(f"k{i}", "/event/buy") for i in range(400)]))
    assert all(status == 200 for *_, status in again.results)
    after = dealer.tallies()
    assert sum(t.activations for t in after.values()) == 800
    assert {n: t.units for n, t in after.items()} == {n: t.units for n, t in before.items()}  # same 400 units
    assert f"worker 0 (pid {victim}) exited with code -9: restarting" in (state / "dealer.log").read_text()


def test_while_the_worker_is_down_tallies_and_health_are_errors_not_zeros(
    pair: dict[str, str], dealer_factory: DealerFactory, tmp_path: Path
) -> None:
    state = tmp_path / "down"
    dealer = dealer_factory(pair, {"a": 1, "b": 1}, state=state)
    asyncio.run(drive(dealer.url, [(f"d{i}", "/") for i in range(20)]))
    victim = _worker_pids(state)[0]
    assert victim is not None
    dealer.timeout = 30.0  # the supervisor gives the worker 10 s
    os.kill(victim, signal.SIGSTOP)  # alive but silent: the supervisor neither restarts it nor reads zeros
    try:
        with pytest.raises(DealerError, match=r"worker 0 did not answer within 10s"):
            dealer.tallies()
    finally:
        os.kill(victim, signal.SIGCONT)
    assert sum(t.activations for t in dealer.tallies().values()) == 20  # not the late answer's
    dealer.record_event("late", unit="d0")  # each call gets its own answer again
    assert sum(t.events.get("late", 0) for t in dealer.tallies().values()) == 1


def test_a_switch_reaches_every_worker_at_once(
    pair: dict[str, str], dealer_factory: DealerFactory, tmp_path: Path
) -> None:
    """All traffic flips between ``a`` and ``b`` while 16 connections keep asking. Once any answer came
    from the new routing, every request sent after it gets the new routing too, whichever worker takes it."""
    state = tmp_path / "flip"
    dealer = dealer_factory(pair, {"a": 1, "b": 0}, state=state)
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
    assert requests.get(dealer.url, timeout=10).headers["X-Squals-Variant"] == "a"  # the last switch


def test_a_worker_that_cannot_start_says_why(tmp_path: Path, dealer_factory: DealerFactory) -> None:
    state = tmp_path / "damaged"
    (state / "tallies").mkdir(parents=True)
    (state / "tallies" / "names.json").write_text('{"variants": ["a"]}')
    with pytest.raises(DealerError, match=r"worker 0: .*names\.json: expected variants and kinds"):
        dealer_factory({"a": "http://127.0.0.1:9"}, {"a": 1}, state=state)


def test_the_worker_reuses_its_connections_to_the_upstream(
    pair: dict[str, str], dealer_factory: DealerFactory
) -> None:
    dealer = dealer_factory({"a": pair["a"]}, {"a": 1})
    with requests.Session() as session:
        ports = {session.get(dealer.url + "/peer", timeout=10).text for _ in range(50)}
    assert len(ports) == 1, ports  # 50 requests, one pooled upstream connection


def test_beacons_on_their_own_connections_count_for_assigned_units_only(
    pair: dict[str, str], dealer_factory: DealerFactory
) -> None:
    """What more workers would break: a page served on one connection, its beacon on another (here each on a
    fresh connection). With the one worker, every assigned unit's beacon counts and no other unit's does."""
    dealer = dealer_factory(pair, {"a": 1, "b": 1})
    units = [f"b{i}" for i in range(40)]
    served = {u: requests.get(dealer.url, cookies={"squals_unit": u}, timeout=10) for u in units}
    for unit in units:
        answer = requests.post(
            dealer.url + "/_squals/events?event=signup", cookies={"squals_unit": unit}, timeout=10
        )
        assert answer.status_code == 204, answer.text
        assert answer.headers["X-Squals-Variant"] == served[unit].headers["X-Squals-Variant"]
        assert answer.headers["X-Squals-Counted"] == "1"
    stranger = requests.post(
        dealer.url + "/_squals/events?event=signup", cookies={"squals_unit": "never-seen"}, timeout=10
    )
    assert stranger.status_code == 403 and "never assigned" in stranger.text
    with pytest.raises(DealerError, match="unknown unit 'never-seen': this Dealer never assigned it"):
        dealer.record_event("signup", unit="never-seen")
    tallies = dealer.tallies()
    assert sum(t.event_units.get("signup", 0) for t in tallies.values()) == 40
    assert sum(t.events.get("signup", 0) for t in tallies.values()) == 40


@pytest.mark.parametrize("ask", ["config", "flag", "environment"])
def test_more_than_one_worker_is_refused_at_start_in_one_line(
    ask: str, dealer_factory: DealerFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two workers could not refuse beacons for units never assigned soundly (docs/dealer.md, Workers)."""
    up = {"a": "http://127.0.0.1:9"}
    expected = r"workers: 2 asked, but this Dealer runs 1 worker: .* \(docs/dealer\.md, Workers\)"
    if ask == "config":
        with pytest.raises(DealerError, match=expected):
            dealer_factory(up, {"a": 1}, state=tmp_path / "config", workers=2)
    elif ask == "environment":
        monkeypatch.setenv("SQUALS_DEALER_WORKERS", "2")
        with pytest.raises(DealerError, match=expected):
            dealer_factory(up, {"a": 1}, state=tmp_path / "env")
    else:
        state = tmp_path / "flag"
        dealer_factory(up, {"a": 1}, state=state)
        config = state / "config.json"
        assert stop_dealer(state).state == "running"
        done = subprocess.run(
            [
                *(sys.executable, "-m", "squals_action.dealer", "--config", str(config)),
                *("--state", str(state), "--workers", "2"),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode != 0
        assert re.fullmatch(r"squals dealer: " + expected + "\n", done.stderr.splitlines(True)[-1])


def test_one_worker_may_be_asked_for_and_a_bad_count_is_one_line(
    dealer_factory: DealerFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    up = {"a": "http://127.0.0.1:9"}
    monkeypatch.setenv("SQUALS_DEALER_WORKERS", "1")
    dealer_factory(up, {"a": 1}, state=tmp_path / "env")
    assert json.loads((tmp_path / "env" / ENDPOINT_FILE).read_text())["workers"] == 1
    monkeypatch.delenv("SQUALS_DEALER_WORKERS")
    dealer_factory(up, {"a": 1}, state=tmp_path / "config", workers=1)
    assert len(_worker_pids(tmp_path / "config")) == 1
    monkeypatch.setenv("SQUALS_DEALER_WORKERS", "two")
    with pytest.raises(DealerError, match="SQUALS_DEALER_WORKERS must be a whole number of workers >= 1"):
        dealer_factory(up, {"a": 1}, state=tmp_path / "bad")
