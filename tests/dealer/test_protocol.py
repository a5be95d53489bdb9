"""A Dealer daemon started by another squals: an older one (a lower admin protocol in ``dealer.json``) is
restarted on this squals with its routing, slots, tallies and public port; a newer one is refused in one line
and left running. A real Dealer and real upstream processes on 127.0.0.1; the older daemon is this one with
its ``dealer.json`` rewritten as a daemon before the protocol number wrote it."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from squals_action import filelock
from squals_action.dealer import DealerError, connect_dealer, dealer_status, restart_dealer, stop_dealer
from squals_action.dealer.client import ADMIN_PROTOCOL
from squals_action.dealer.config import (
    CONFIG_FILE,
    ENDPOINT_FILE,
    LOG_FILE,
    WORKERS_ENV,
    atomic_write,
    load_config,
)
from squals_action.dealer.daemon import RESTART_LOCK
from squals_action.dealer.layers import Slot
from tests.support.dealer import DealerFactory, drive


def _claim(state: Path, protocol: int | None) -> None:
    """Make the running daemon's ``dealer.json`` say ``protocol`` (None: no number, as before protocol 2)."""
    endpoint = json.loads((state / ENDPOINT_FILE).read_text())
    endpoint.pop("protocol")
    if protocol is not None:
        endpoint["protocol"] = protocol
    atomic_write(state / ENDPOINT_FILE, json.dumps(endpoint))


def test_an_older_dealer_is_restarted_with_its_switch_and_tallies_and_a_newer_one_refused(
    pair: dict[str, str], dealer_factory: DealerFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    state = tmp_path / "dealer"
    dealer = dealer_factory(pair, {"a": 1, "b": 1}, state=state)
    # The routing in force is not the config's: a plain start_dealer would come back on 50/50, no slot.
    dealer.set_weights({"a": 30, "b": 70})
    dealer.put_slot(Slot("exp", "main", 0.0, 0.5, {"v": 1.0}, islands=True), {"exp.v": pair["b"]})
    truth = asyncio.run(drive(dealer.url, [(f"u{i}", "/event/view") for i in range(200)], concurrency=8))
    assert [status for *_, status in truth.results] == [200] * 200
    plan, tallies = dealer.plan(), dealer.tallies()
    assert plan[1] == {"a": 30.0, "b": 70.0, "exp.v": 0.0} and len(plan[2]) == 1
    assert sum(t.activations for t in tallies.values()) == 200
    old_pid = dealer_status(state).pid
    assert json.loads((state / ENDPOINT_FILE).read_text())["protocol"] == ADMIN_PROTOCOL == 2

    _claim(state, None)
    assert dealer_status(state).protocol == 1
    with caplog.at_level(logging.WARNING, logger="squals.dealer"), ThreadPoolExecutor(2) as pool:
        # two commands at once: one restarts it, the other waits for it and connects to the new daemon
        both = list(pool.map(lambda _: connect_dealer(state, timeout=10), range(2)))
    again = both[0]
    assert again.pid is not None and again.pid != old_pid and dealer_status(state).pid == again.pid
    assert both[1].pid == again.pid
    assert again.url == dealer.url  # the same public port
    assert again.plan() == plan and again.tallies() == tallies
    said = [r.getMessage() for r in caplog.records if "older squals" in r.getMessage()]
    assert len(said) == 1 and "protocol 1)" in said[0] and f"pid {old_pid} -> {again.pid}" in said[0]
    assert said[0] in (state / LOG_FILE).read_text()
    assert dealer_status(state).protocol == ADMIN_PROTOCOL
    # The switch an old daemon refused while a slot of islands is placed: accepted, the island kept.
    again.set_upstreams(pair, {"a": 0, "b": 1})
    assert again.plan()[0] == {**pair, "exp.v": pair["b"]}
    assert connect_dealer(state).pid == again.pid  # a current daemon is only connected to

    _claim(state, 99)
    with pytest.raises(DealerError, match=r"speaks admin protocol 99, this squals only 2: ") as refused:
        connect_dealer(state)
    assert "\n" not in str(refused.value)
    assert dealer_status(state).pid == again.pid and again.weights()["b"] == 1.0  # untouched, serving


def test_a_stop_racing_a_restart_waits_for_it(
    pair: dict[str, str], dealer_factory: DealerFactory, tmp_path: Path
) -> None:
    """``squals down`` while another command restarts the Dealer (holding ``dealer.lock``) stops it once the
    restart is over, rather than stopping a half-restarted daemon."""
    state = tmp_path / "dealer"
    dealer_factory(pair, {"a": 1}, state=state)
    held = threading.Event()

    def restarting() -> None:
        with filelock.exclusive(state / RESTART_LOCK, timeout=5, busy="test"):
            held.set()
            time.sleep(1.0)

    holder = threading.Thread(target=restarting)
    holder.start()
    assert held.wait(5)
    started = time.monotonic()
    stopped = stop_dealer(state)
    waited = time.monotonic() - started
    holder.join()
    assert stopped.state == "running" and dealer_status(state).state == "stopped"
    assert waited >= 0.8  # it waited for the lock: the stop did not run inside the restart


def test_a_restart_with_no_dealer_to_restart_says_so_in_one_line(tmp_path: Path) -> None:
    for where, why in ((tmp_path / "none", "no such directory"), (tmp_path, "stopped")):
        with pytest.raises(DealerError) as raised:
            restart_dealer(where)
        assert str(raised.value) == f"no Dealer runs from {where.resolve()} to restart: {why}"  # one line


def test_a_restart_keeps_the_worker_count_the_dealer_ran_with(
    pair: dict[str, str], dealer_factory: DealerFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Dealer whose config sets no worker count took it from the environment of the command that started
    it; a restart by another command (an upgrade's) brings back as many, not what that command's says."""
    state = tmp_path / "dealer"
    monkeypatch.setenv(WORKERS_ENV, "2")
    first = dealer_factory(pair, {"a": 1}, state=state)
    assert len(json.loads((state / ENDPOINT_FILE).read_text())["worker_pids"]) == 2
    monkeypatch.setenv(WORKERS_ENV, "1")
    again = restart_dealer(state)
    assert again.pid != first.pid and again.pid == dealer_status(state).pid
    pids = json.loads((state / ENDPOINT_FILE).read_text())["worker_pids"]
    assert len(pids) == 2 and all(pids), pids
    assert load_config(state / CONFIG_FILE).workers == 0  # still the environment's to decide on a fresh start
