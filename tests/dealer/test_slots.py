"""One experiment's slot changed in one step of the Dealer (``PUT``/``DELETE /layers/<experiment>``): many
clients adding and removing slots at once all keep their changes, a slot that cannot sit beside the others is
refused in one line with 409, the plan survives a restart, and two workers switch to each new plan at once.
Real upstream processes, a real Dealer (supervisor and two workers) on 127.0.0.1."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from squals_action.dealer import DealerClient, DealerError, connect_dealer, stop_dealer
from squals_action.dealer.config import CONFIG_FILE, ROUTING_FILE, load_config
from squals_action.dealer.layers import Slot
from tests.support.dealer import DealerFactory, bare_restart

#: App-side experiments of one layer, each its own 1/N of it (cells: 2 upstreams x (1 + 2 N) <= 255).
N = 24


def _slot(k: int, layer: str = "ui", **weights: float) -> Slot:
    return Slot(f"exp-{k}", layer, k / N, (k + 1) / N, weights or {"x": 1.0, "y": 1.0})


def _placed(client: DealerClient) -> set[str]:
    return {s.experiment for s in client.plan()[2]}


def _at_once(calls: list[tuple[str, int]], state: Path) -> None:
    """Each call (``put``/``remove``, slot number) in its own thread and client of the Dealer in ``state``,
    released together."""
    start = threading.Barrier(len(calls))
    failed: list[BaseException] = []

    def run(what: str, k: int) -> None:
        own = connect_dealer(state, timeout=10)
        try:
            start.wait(timeout=10)
            if what == "put":
                own.put_slot(_slot(k))
            else:
                own.remove_slot(f"exp-{k}")
        except BaseException as exc:  # reported below, with the others
            failed.append(exc)
        finally:
            own.close()

    threads = [threading.Thread(target=run, args=call) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not failed and not any(t.is_alive() for t in threads), failed


def _reaches_both_workers_at_once(dealer: DealerClient, url: str) -> None:
    """An island slot over the whole of a layer is put and removed four times: after each call returns,
    every request on a new connection, whichever of the two workers takes it, is placed by the new plan."""
    everyone = Slot("exp-all", "main", 0.0, 1.0, {"v": 1.0}, islands=True)
    for k in range(4):
        if k % 2 == 0:
            dealer.put_slot(everyone, {"exp-all.v": url})
        else:
            assert dealer.remove_slot("exp-all")
        served = {
            requests.get(dealer.url, cookies={"squals_unit": f"s{k}-{i}"}, timeout=10).headers[
                "X-Squals-Variant"
            ]
            for i in range(12)
        }
        assert served == ({"exp-all.v"} if k % 2 == 0 else {"a"}), (k, served)
    assert all(w["requests"] for w in dealer.load_figures()["workers"])  # both workers served
    dealer.remove_upstream("exp-all.v")


def test_slots_added_and_removed_at_once_all_stay_changed_reach_every_worker_and_survive_a_restart(
    pair: dict[str, str], dealer_factory: DealerFactory, tmp_path: Path
) -> None:
    """Two workers. Each slot change is seen by both at once. Half the slots are placed; then 24 clients at
    once remove those and add the other half, three rounds back and forth: the plan is exactly the expected
    one after each (a read-modify-write of the whole plan loses changes here). The last plan is in
    routing.json and a restarted Dealer comes back on it."""
    state = tmp_path / "slots"
    dealer = dealer_factory(pair, {"a": 1, "b": 0}, state=state, workers=2)
    _reaches_both_workers_at_once(dealer, pair["b"])
    evens, odds = set(range(0, N, 2)), set(range(1, N, 2))
    dealer.set_layers([_slot(k) for k in sorted(evens)])
    for placed, added in ((evens, odds), (odds, evens), (evens, odds)):
        _at_once([("remove", k) for k in placed] + [("put", k) for k in added], state)
        assert _placed(dealer) == {f"exp-{k}" for k in added}
    expected = sorted((s.to_json() for s in dealer.plan()[2]), key=lambda s: s["range"])
    assert [s["experiment"] for s in expected] == [f"exp-{k}" for k in sorted(odds)]
    saved = json.loads((state / ROUTING_FILE).read_text())["layers"]
    assert sorted(saved, key=lambda s: s["range"]) == expected

    assert stop_dealer(state).state == "running"
    with bare_restart(state) as again:
        assert sorted((s.to_json() for s in again.plan()[2]), key=lambda s: s["range"]) == expected
        assert again.remove_slot("exp-1") and not again.remove_slot("exp-1")  # a retried DELETE is harmless
        assert "exp-1" not in _placed(again)


def test_a_slot_that_cannot_sit_beside_the_others_is_refused_in_one_line_and_changes_nothing(
    pair: dict[str, str], dealer_factory: DealerFactory, tmp_path: Path
) -> None:
    state = tmp_path / "refusals"
    dealer = dealer_factory(pair, {"a": 1, "b": 0}, state=state)
    islands = Slot("exp-i", "main", 0.0, 0.5, {"v1": 1.0, "v2": 1.0}, islands=True)
    dealer.put_slot(islands, {"exp-i.v1": pair["b"], "exp-i.v2": pair["b"]})
    dealer.put_slot(_slot(0))
    before = dealer.plan()

    refusals: list[tuple[Callable[[], object], str]] = [
        (
            lambda: dealer.put_slot(Slot("exp-o", "main", 0.4, 0.6, {"x": 1.0})),
            r"HTTP 409: layer 'main': exp-i \[0, 0.5\) and exp-o \[0.4, 0.6\) overlap: a unit would be in b",
        ),
        (
            lambda: dealer.put_slot(
                Slot("exp-j", "other", 0.0, 0.5, {"w": 1.0}, islands=True), {"exp-j.w": pair["b"]}
            ),
            r"HTTP 409: island-based experiments in layers main, other: a request reaches one upstream",
        ),
        (
            lambda: dealer.put_slot(Slot("exp-k", "main", 0.5, 1.0, {"w": 1.0}, islands=True)),
            r"HTTP 400: .*island-based variants need upstreams exp-k.w",
        ),
        (
            lambda: dealer.put_slot(Slot("exp-k", "main", 0.5, 1.0, {"w": 1.0}), {"exp-i.v1": pair["a"]}),
            r"HTTP 400: slot 'exp-k': upstreams exp-i.v1 are not its islands \(exp-k.<variant>\)",
        ),
        (
            lambda: dealer.remove_upstream("exp-i.v1"),
            r"HTTP 409: upstream 'exp-i.v1' is an island of a slot: remove the slot first",
        ),
    ]
    for call, message in refusals:
        with pytest.raises(DealerError, match=message) as refused:
            call()
        assert "\n" not in str(refused.value)
        assert dealer.plan() == before

    answer = requests.put(  # the body names another experiment than the path
        f"{dealer.admin_url}/layers/exp-z",
        json={"experiment": "exp-y", "layer": "ui", "range": [0.9, 1.0], "weights": {"x": 1}},
        headers={"Authorization": f"Bearer {load_config(state / CONFIG_FILE).token}"},
        timeout=10,
    )
    assert (answer.status_code, answer.json()) == (
        400,
        {"error": "slot 'exp-z': its body names experiment 'exp-y'"},
    )
    assert dealer.plan() == before

    dealer.put_slot(Slot("exp-i", "main", 0.0, 0.5, {"v1": 1.0, "v2": 0.0}, islands=True))  # its own weights
    assert dealer.plan()[2] == (Slot("exp-i", "main", 0.0, 0.5, {"v1": 1.0, "v2": 0.0}, True), _slot(0))
    assert dealer.remove_slot("exp-i")
    assert not dealer.put_slot(islands, replace_only=True)  # replace only: an ended slot does not come back
    assert dealer.plan()[2] == (_slot(0),)
    dealer.remove_upstream("exp-i.v1")
    assert set(dealer.upstreams()) == {"a", "b", "exp-i.v2"}
