"""The Dealer's worker processes: a killed worker comes back with every acknowledged count while the others
serve, a switch is seen by every worker at one instant, a beacon counts once whichever worker it reaches, and
the worker count comes from the config, the environment or the cores. Real upstream processes, a real Dealer
(supervisor and workers) on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
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
    """Two workers: worker 0 is SIGKILLed; worker 1 serves every request meanwhile, and once worker 0 read its
    journal back the merged tallies hold every count either acknowledged."""
    state = tmp_path / "kill"
    dealer = dealer_factory(pair, {"a": 1, "b": 1}, state=state, workers=2)
    truth = asyncio.run(drive(dealer.url, [(f"k{i}", "/event/buy") for i in range(400)]))
    assert all(status == 200 for *_, status in truth.results)
    for i in range(0, 400, 4):
        dealer.record_event("checkout", unit=f"k{i}")
    before = dealer.tallies()
    assert sum(t.activations for t in before.values()) == 400
    assert sum(t.event_units.get("checkout", 0) for t in before.values()) == 100

    victim, survivor = _worker_pids(state)
    assert victim is not None and psutil.Process(victim).cmdline()[-4:] == [
        "--worker",
        "0",
        "--port",
        dealer.url.rsplit(":", 1)[1],
    ]
    os.kill(victim, signal.SIGKILL)
    with contextlib.suppress(psutil.NoSuchProcess):  # the supervisor may have reaped it already
        psutil.Process(victim).wait(timeout=10)
    meanwhile = [requests.get(dealer.url, cookies={"squals_unit": f"k{i}"}, timeout=10) for i in range(20)]
    assert all(r.status_code == 200 for r in meanwhile)  # the other worker serves (new connections)
    deadline = time.monotonic() + 20
    while (pids := _worker_pids(state))[0] in (None, victim):
        assert time.monotonic() < deadline, "the killed worker was not restarted"
        time.sleep(0.05)
    assert pids[0] is not None and psutil.Process(pids[0]).is_running() and pids[1] == survivor
    after_kill = dealer.tallies()  # the restarted worker read its journal back: nothing acknowledged lost
    assert sum(t.activations for t in after_kill.values()) == 420
    assert {n: t.events for n, t in after_kill.items()} == {n: t.events for n, t in before.items()}
    assert {n: t.units for n, t in after_kill.items()} == {n: t.units for n, t in before.items()}

    again = asyncio.run(drive(dealer.url, [(f"k{i}", "/event/buy") for i in range(400)]))
    assert all(status == 200 for *_, status in again.results)
    after = dealer.tallies()
    assert sum(t.activations for t in after.values()) == 820
    assert {n: t.units for n, t in after.items()} == {n: t.units for n, t in before.items()}  # same 400 units
    assert f"worker 0 (pid {victim}) exited with code -9: restarting" in (state / "dealer.log").read_text()


def test_while_the_worker_is_down_tallies_and_health_are_errors_not_zeros(
    pair: dict[str, str], dealer_factory: DealerFactory, tmp_path: Path
) -> None:
    state = tmp_path / "down"
    # the supervisor gives the worker 2 s (control_timeout; 10 s by default) before the call is an error
    dealer = dealer_factory(pair, {"a": 1, "b": 1}, state=state, control_timeout=2.0)
    asyncio.run(drive(dealer.url, [(f"d{i}", "/") for i in range(20)]))
    victim = _worker_pids(state)[0]
    assert victim is not None
    dealer.timeout = 30.0
    os.kill(victim, signal.SIGSTOP)  # alive but silent: the supervisor neither restarts it nor reads zeros
    try:
        with pytest.raises(DealerError, match=r"worker 0 did not answer within 2s"):
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
    assert requests.get(dealer.url, timeout=10).headers["X-Squals-Variant"] == "a"  # the last switch
    assert all(w["requests"] for w in dealer.load_figures()["workers"])  # both workers served


def test_a_worker_that_cannot_start_says_why(tmp_path: Path, dealer_factory: DealerFactory) -> None:
    state = tmp_path / "damaged"
    (state / "tallies").mkdir(parents=True)
    (state / "tallies" / "names.json").write_text('{"variants": ["a"]}')
    with pytest.raises(DealerError, match=r"worker 0: .*names\.json: expected variants and kinds"):
        dealer_factory({"a": "http://127.0.0.1:9"}, {"a": 1}, state=state)


def test_tallies_a_newer_squals_wrote_are_refused_and_left_as_they_are(
    tmp_path: Path, dealer_factory: DealerFactory
) -> None:
    """A Dealer started by an older squals on a newer squals's tallies (a downgrade) says so in one line and
    neither reads nor rewrites them: records of a layout it does not know would be misread as counts."""
    state = tmp_path / "newer"
    tallies = state / "tallies"
    tallies.mkdir(parents=True)
    names = '{"format": 2, "variants": ["a"], "kinds": []}'
    (tallies / "names.json").write_text(names)
    (tallies / "segment-000001.bin").write_bytes(b"\x07" * 48)
    refused = r"worker 0: .*names\.json: tallies written in format 2 .* reads format 1"
    with pytest.raises(DealerError, match=refused):
        dealer_factory({"a": "http://127.0.0.1:9"}, {"a": 1}, state=state)
    assert (tallies / "names.json").read_text() == names
    assert (tallies / "segment-000001.bin").read_bytes() == b"\x07" * 48
    assert sorted(p.name for p in tallies.iterdir()) == ["names.json", "segment-000001.bin"]


def test_each_worker_reuses_its_connections_to_the_upstream(
    pair: dict[str, str], dealer_factory: DealerFactory
) -> None:
    """Ten client connections one after the other, spread over 2 workers by the kernel: each worker keeps its
    one upstream connection, so the upstream sees at most 2 peers for 100 requests."""
    dealer = dealer_factory({"a": pair["a"]}, {"a": 1}, workers=2)
    ports = set()
    for _ in range(10):
        with requests.Session() as session:
            ports |= {session.get(dealer.url + "/peer", timeout=10).text for _ in range(10)}
    assert 1 <= len(ports) <= 2, ports
    assert sum(w["requests"] for w in dealer.load_figures()["workers"]) == 100


def test_a_beacon_counts_once_whichever_worker_it_reaches(
    pair: dict[str, str], dealer_factory: DealerFactory
) -> None:
    """A page served on one connection, its beacon on another (each on a fresh connection, so about half the
    beacons reach the worker that did not serve the page): every assigned unit's beacon counts once, in one
    book, and a unit no worker assigned is refused on the public and the admin path."""
    dealer = dealer_factory(pair, {"a": 1, "b": 1}, workers=2)
    units = [f"b{i}" for i in range(40)]
    served = {u: requests.get(dealer.url, cookies={"squals_unit": u}, timeout=10) for u in units}
    for unit in units:
        answer = requests.post(
            dealer.url + "/_squals/events?event=signup", cookies={"squals_unit": unit}, timeout=10
        )
        assert answer.status_code == 204, answer.text
        assert answer.headers["X-Squals-Variant"] == served[unit].headers["X-Squals-Variant"]
        assert answer.headers["X-Squals-Counted"] == "1"
    for unit in units[:10]:  # again, through the admin path: accepted, but past the cap of 1 (counted below)
        dealer.record_event("signup", unit=unit)
    stranger = requests.post(
        dealer.url + "/_squals/events?event=signup", cookies={"squals_unit": "never-seen"}, timeout=10
    )
    assert stranger.status_code == 403 and "never assigned" in stranger.text
    with pytest.raises(DealerError, match="unknown unit 'never-seen': this Dealer never assigned it"):
        dealer.record_event("signup", unit="never-seen")
    tallies = dealer.tallies()
    assert sum(t.event_units.get("signup", 0) for t in tallies.values()) == 40
    assert sum(t.events.get("signup", 0) for t in tallies.values()) == 40
    assert sum(t.units for t in tallies.values()) == 40
    workers = dealer.load_figures()["workers"]
    assert sum(w["units"] for w in workers) == 40  # each page served once: each unit in one worker's book
    assert all(w["units"] for w in workers)
    assert sum(w["beacons_elsewhere"] for w in workers) > 0  # some beacons reached the other worker


def test_a_dealer_restarted_with_fewer_workers_keeps_every_count(
    pair: dict[str, str], dealer_factory: DealerFactory, tmp_path: Path
) -> None:
    """Worker 1's journal is folded into worker 0's when a Dealer comes back with one worker, so its counts
    stay; units both workers saw count once."""
    state = tmp_path / "fewer"
    dealer = dealer_factory(pair, {"a": 1, "b": 1}, state=state, workers=2)
    asyncio.run(drive(dealer.url, [(f"f{i % 60}", "/event/buy") for i in range(300)]))
    before = dealer.tallies()
    assert sum(t.units for t in before.values()) == 60
    assert stop_dealer(state).state == "running"
    again = dealer_factory(pair, {"a": 1, "b": 1}, state=state, workers=1)
    assert again.tallies() == before
    assert not (state / "tallies" / "w1").exists()
    assert (
        "worker 1 is not run any more: its journal moves into worker 0's"
        in (state / "dealer.log").read_text()
    )


def test_the_worker_count_comes_from_the_config_the_environment_or_the_cores(
    dealer_factory: DealerFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    up = {"a": "http://127.0.0.1:9"}
    monkeypatch.setenv("SQUALS_DEALER_WORKERS", "2")
    dealer_factory(up, {"a": 1}, state=tmp_path / "env")
    assert json.loads((tmp_path / "env" / ENDPOINT_FILE).read_text())["workers"] == 2
    dealer_factory(up, {"a": 1}, state=tmp_path / "config", workers=1)  # the config wins
    assert len(_worker_pids(tmp_path / "config")) == 1
    monkeypatch.delenv("SQUALS_DEALER_WORKERS")
    dealer_factory(up, {"a": 1}, state=tmp_path / "cores")
    assert len(_worker_pids(tmp_path / "cores")) == len(os.sched_getaffinity(0))
    monkeypatch.setenv("SQUALS_DEALER_WORKERS", "two")
    with pytest.raises(DealerError, match="SQUALS_DEALER_WORKERS must be a whole number of workers >= 1"):
        dealer_factory(up, {"a": 1}, state=tmp_path / "bad")
