"""Blue/green switches beside experiments starting and ending on prod's Dealer: the lifecycle's switch
(``DealerTraffic.route``: ``PUT /upstreams`` with prod's environments only) racing
``PUT /layers/<experiment>`` and ``DELETE /layers/<experiment>`` + ``DELETE /upstreams/<name>`` is never
refused and never puts back an ended experiment's island. A real Dealer (supervisor and two workers) on
127.0.0.1, real upstream processes."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import requests

from squals_action.dealer import DealerError, connect_dealer
from squals_action.dealer.layers import Slot
from squals_action.experiments.layered import LayeredSplit
from squals_action.lifecycle.traffic import DealerTraffic
from tests.support.dealer import DealerFactory

#: Island-based experiments, each its own 1/EXPERIMENTS of layer ``main``; each toggles TOGGLES times a round.
EXPERIMENTS = 6
TOGGLES = 3
ROUNDS = 4
SWITCHERS = 3
BLUE_GREEN = ({"a": 1.0, "b": 0.0}, {"a": 0.0, "b": 1.0})


def _slot(k: int) -> Slot:
    return Slot(f"exp-{k}", "main", k / EXPERIMENTS, (k + 1) / EXPERIMENTS, {"v": 1.0}, islands=True)


def _toggles(k: int, placed: set[int]) -> list[bool]:
    """Experiment ``k``'s moves in a round: True an end, False a start, alternating from where it is."""
    return [(k in placed) == (toggle % 2 == 0) for toggle in range(TOGGLES)]


def _round(
    state: Path,
    prod: dict[str, str],
    island_url: str,
    placed: set[int],
    refused: list[str],
    switched: list[int],
) -> set[int]:
    """Every experiment toggles TOGGLES times between started and ended, as the engine does (slot and island
    in one call; slot out, then island dropped) while SWITCHERS threads switch blue/green through the
    lifecycle's Traffic until the experiments are done; returns the experiments placed at the end. Refused
    switches go to ``refused``, each switcher's count of switches tried to ``switched``."""
    done = threading.Event()
    start = threading.Barrier(EXPERIMENTS + SWITCHERS, timeout=30)
    failed: list[BaseException] = []
    ended: list[str] = []

    def experiment(k: int) -> None:
        client = connect_dealer(state, timeout=10)
        try:
            start.wait()
            for ends in _toggles(k, placed):
                if ends:
                    LayeredSplit(state, _slot(k)).release(restore=False, log=ended.append)
                else:
                    client.put_slot(_slot(k), {f"exp-{k}.v": island_url})
        except BaseException as exc:  # reported below, with the others
            failed.append(exc)
        finally:
            client.close()

    def switcher(s: int) -> None:
        traffic = DealerTraffic(state)
        start.wait()
        n = s
        while not done.is_set() or n == s:
            try:
                traffic.route(prod, BLUE_GREEN[n % 2])
            except DealerError as exc:
                refused.append(str(exc))
            n += 1
        switched.append(n - s)

    threads = [threading.Thread(target=experiment, args=(k,)) for k in range(EXPERIMENTS)]
    switchers = [threading.Thread(target=switcher, args=(s,)) for s in range(SWITCHERS)]
    for thread in threads + switchers:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    done.set()
    for thread in switchers:
        thread.join(timeout=60)
    assert not any(t.is_alive() for t in threads + switchers)
    assert not failed, failed
    assert len(ended) == sum(sum(_toggles(k, placed)) for k in range(EXPERIMENTS))  # every end removed a slot
    return placed ^ (set(range(EXPERIMENTS)) if TOGGLES % 2 else set())


def test_blue_green_switches_racing_experiments_starting_and_ending_all_succeed_and_revive_no_island(
    pair: dict[str, str], dealer_factory: DealerFactory, tmp_path: Path
) -> None:
    """Half the experiments placed; then ROUNDS rounds of every experiment starting or ending TOGGLES times
    while three switchers flip blue/green: no switch is refused, the plan is exactly the experiments left with
    their islands after each round, no ended island is an upstream again, and the switches did switch."""
    state = tmp_path / "prod"
    dealer = dealer_factory(pair, BLUE_GREEN[0], state=state, workers=2)
    island_url = pair["b"]
    placed = set(range(0, EXPERIMENTS, 2))
    for k in sorted(placed):
        dealer.put_slot(_slot(k), {f"exp-{k}.v": island_url})
    refused: list[str] = []
    switched: list[int] = []
    orphans: list[set[str]] = []
    for _ in range(ROUNDS):
        placed = _round(state, pair, island_url, placed, refused, switched)
        upstreams, weights, slots = dealer.plan()
        islands = {f"exp-{k}.v" for k in placed}
        assert sorted(s.experiment for s in slots) == sorted(f"exp-{k}" for k in placed)
        assert {name: weights.get(name) for name in islands} == dict.fromkeys(islands, 0.0)
        orphans.append(set(upstreams) - {"a", "b"} - islands)
    assert len(switched) == ROUNDS * SWITCHERS  # every switcher ran to the end of every round
    figures = f"{sum(switched)} switches, {len(refused)} refused, orphans after each round {orphans}"
    assert (refused, [o for o in orphans if o]) == ([], []), (figures, refused[:1])

    DealerTraffic(state).route(pair, BLUE_GREEN[1])  # the last switch is in force, beside the experiments
    upstreams, weights, slots = dealer.plan()
    assert weights == {"a": 0.0, "b": 1.0, **{f"exp-{k}.v": 0.0 for k in placed}}
    assert upstreams == {**pair, **{f"exp-{k}.v": island_url for k in placed}}
    served = {
        requests.get(dealer.url, cookies={"squals_unit": f"u{i}"}, timeout=10).headers["X-Squals-Variant"]
        for i in range(24)
    }
    assert served <= {"b"} | {f"exp-{k}.v" for k in placed} and "b" in served, served


def test_a_switch_naming_an_island_keeps_it_at_its_url_only(
    pair: dict[str, str], dealer_factory: DealerFactory, tmp_path: Path
) -> None:
    """A switch may name a placed island at the URL it has (an older lifecycle passed them along); at
    another URL it is refused in one line (the URL is the slot's) and changes nothing; weights go to the
    upstreams it names."""
    dealer = dealer_factory(pair, BLUE_GREEN[0], state=tmp_path / "prod", workers=1)
    dealer.put_slot(_slot(0), {"exp-0.v": pair["b"]})
    dealer.set_upstreams({**pair, "exp-0.v": pair["b"]}, BLUE_GREEN[1])
    before = dealer.plan()
    assert before[0] == {**pair, "exp-0.v": pair["b"]} and before[1]["b"] == 1.0
    refusals = [
        (
            {**pair, "exp-0.v": pair["a"]},
            BLUE_GREEN[0],
            rf"HTTP 409: upstream 'exp-0.v' is an island of a slot, at {pair['b']}: its URL is the slot's",
        ),
        (pair, {"a": 1.0, "exp-0.v": 1.0}, r"HTTP 400: weights name unknown upstream\(s\) exp-0.v"),
    ]
    for upstreams, weights, message in refusals:
        with pytest.raises(DealerError, match=message) as refused:
            dealer.set_upstreams(upstreams, weights)
        assert "\n" not in str(refused.value)
        assert dealer.plan() == before
