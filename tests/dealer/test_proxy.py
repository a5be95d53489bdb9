"""The Dealer daemon end to end: real upstream processes and a real Dealer on 127.0.0.1, real HTTP."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
from scipy.stats import chi2

from squals_action.dealer import Dealer, DealerClient, DealerError, connect_dealer, dealer_status, stop_dealer
from squals_action.dealer.bucketing import assign
from squals_action.dealer.config import PID_FILE
from tests.support.dealer import DealerFactory, bare_restart, drive, steady_load


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _served_by_each_worker(dealer: DealerClient) -> list[int]:
    """Requests each worker counted (``GET /healthz``): with several, proof the kernel spread the load."""
    return [int(w["requests"]) for w in dealer.load_figures()["workers"]]


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_10000_units_split_30_70_sticky_and_tallied_exactly(
    workers: int, pair: dict[str, str], dealer_factory: DealerFactory
) -> None:
    """With 2 workers the same unit comes over many connections, whichever worker takes each: it keeps one
    variant, and the merged tallies count it once."""
    dealer = dealer_factory(pair, {"a": 30, "b": 70}, workers=workers)
    units = [f"u{i}" for i in range(10_000)]
    plan = [(u, "/event/view") for u in units]
    plan += [(u, "/hello") for u in units[:100] for _ in range(19)]  # 100 units, 20 requests each
    truth = asyncio.run(drive(dealer.url, plan))

    assert all(status == 200 for _, _, _, status in truth.results)
    assert all(variant == upstream for _, variant, upstream, _ in truth.results)
    assigned = truth.variant_of()
    assert all(len(variants) == 1 for variants in assigned.values())  # every unit keeps its variant
    counts = truth.units()
    statistic = (counts["a"] - 3000) ** 2 / 3000 + (counts["b"] - 7000) ** 2 / 7000
    assert statistic < chi2.ppf(1 - 0.001, df=1), counts

    tallies = dealer.tallies()
    activations = truth.activations()
    for name in ("a", "b"):
        tally = tallies[name]
        assert tally.activations == activations[name]
        assert tally.units == counts[name]
        assert tally.events == {"view": counts[name]}  # one /event/view per unit
        assert tally.errors == 0 and tally.in_flight == 0
        assert tally.latency_p50_ms is not None and tally.latency_p99_ms is not None
        assert tally.latency_p50_ms <= tally.latency_p99_ms
    served = _served_by_each_worker(dealer)
    assert len(served) == workers and all(served) and sum(served) == len(truth.results), served


def test_50_50_to_60_40_moves_about_a_tenth_of_units(
    pair: dict[str, str], dealer_factory: DealerFactory
) -> None:
    dealer = dealer_factory(pair, {"a": 50, "b": 50})
    plan = [(f"m{i}", "/") for i in range(1000)]
    before = {u: v for u, v, _, _ in asyncio.run(drive(dealer.url, plan)).results}
    dealer.set_weights({"a": 60, "b": 40})
    assert dealer.weights() == {"a": 60.0, "b": 40.0}
    after = {u: v for u, v, _, _ in asyncio.run(drive(dealer.url, plan)).results}
    moved = [u for u in before if before[u] != after[u]]
    assert 0.08 <= len(moved) / len(before) <= 0.12
    assert all(before[u] == "b" and after[u] == "a" for u in moved)
    # exactly the units the bucketing function moves (checked on 10,000 units in test_bucketing)
    assert moved == [
        u
        for u in before
        if assign(u, {"a": 50, "b": 50}, "squals") != assign(u, {"a": 60, "b": 40}, "squals")
    ]


@pytest.mark.parametrize("workers", [1, 2])
def test_promotion_and_rollback_under_steady_load_lose_no_request(
    workers: int, pair: dict[str, str], dealer_factory: DealerFactory
) -> None:
    green, blue = pair["a"], pair["b"]
    dealer = dealer_factory({"green": green, "blue": blue}, {"green": 90, "blue": 10}, workers=workers)
    with steady_load(dealer.url, workers=16, units=50, path="/slow?ms=15") as answers:
        time.sleep(0.4)
        for _ in range(3):
            dealer.set_weights({"green": 0, "blue": 100})  # promotion: BLUE takes everything
            time.sleep(0.25)
            dealer.set_upstreams({"postprod": green, "prod": blue}, {"prod": 100})  # rename after promotion
            time.sleep(0.25)
            dealer.set_upstreams({"green": green, "blue": blue}, {"green": 90, "blue": 10})  # rollback
            time.sleep(0.25)
    statuses = [status for status, _ in answers]
    assert len(statuses) > 200
    assert all(200 <= s < 300 for s in statuses), sorted(set(statuses))
    tallies = dealer.tallies()
    assert sum(t.activations for t in tallies.values()) == len(statuses)
    assert sum(t.errors for t in tallies.values()) == 0
    assert {"green", "blue", "prod", "postprod"} >= set(tallies)
    assert tallies["prod"].activations > 0
    served = _served_by_each_worker(dealer)
    assert len(served) == workers and all(served) and sum(served) == len(statuses), served


def test_upstream_refusing_connections_is_a_502_counted_for_its_variant(
    pair: dict[str, str], dealer_factory: DealerFactory
) -> None:
    dead = f"http://127.0.0.1:{_free_port()}"
    dealer = dealer_factory({"up": pair["a"], "down": dead}, {"up": 0, "down": 1})
    response = requests.get(dealer.url + "/x", timeout=10)
    assert response.status_code == 502
    assert response.headers["X-Squals-Variant"] == "down"
    assert "squals_unit=" in response.headers["Set-Cookie"]
    tally = dealer.tallies()["down"]
    assert (tally.activations, tally.connection_errors, tally.errors, tally.error_rate) == (1, 1, 1, 1.0)

    dealer.set_weights({"up": 1, "down": 0})
    assert requests.get(dealer.url + "/status/503", timeout=10).status_code == 503
    assert requests.get(dealer.url + "/status/200", timeout=10).status_code == 200
    tally = dealer.tallies()["up"]
    assert (tally.activations, tally.server_errors, tally.connection_errors) == (2, 1, 0)


def test_slow_upstream_times_out_with_504(pair: dict[str, str], dealer_factory: DealerFactory) -> None:
    dealer = dealer_factory({"a": pair["a"]}, {"a": 1}, read_timeout=0.3)
    assert requests.get(dealer.url + "/slow?ms=2000", timeout=10).status_code == 504
    assert dealer.tallies()["a"].connection_errors == 1


def test_a_connection_trickling_its_headers_is_closed(
    pair: dict[str, str], dealer_factory: DealerFactory
) -> None:
    """Slowloris: one byte every 0.2 s never completes the headers; the Dealer closes the connection once
    ``header_timeout`` passed, while a request that takes longer than that to *answer* is not cut."""
    dealer = dealer_factory({"a": pair["a"]}, {"a": 1}, header_timeout=1.0)
    host, port = dealer.url.removeprefix("http://").rstrip("/").split(":")
    request = b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        started = time.monotonic()
        closed_after = None
        for byte in request:
            try:
                sock.sendall(bytes([byte]))
                sock.settimeout(0.2)
                if sock.recv(1) == b"":
                    closed_after = time.monotonic() - started
                    break
            except TimeoutError:
                continue
            except OSError:  # reset by the peer
                closed_after = time.monotonic() - started
                break
    assert closed_after is not None, "the trickling connection was still open after 40 s"
    assert 0.9 <= closed_after <= 1.0 + 1.5
    assert requests.get(dealer.url + "/slow?ms=1500", timeout=10).status_code == 200


def test_requests_and_responses_are_forwarded_faithfully(
    pair: dict[str, str], dealer_factory: DealerFactory
) -> None:
    dealer = dealer_factory({"a": pair["a"]}, {"a": 1})
    body = os.urandom(3 * 1024 * 1024 + 17)

    conn = http.client.HTTPConnection(dealer.url.removeprefix("http://"), timeout=30)
    conn.putrequest("PUT", "/echo?q=a%20b&q=%2F&x", skip_accept_encoding=True)
    for key, value in [
        ("Cookie", "squals_unit=fixed; other=1"),
        ("Connection", "keep-alive, X-Drop-Me"),
        ("X-Drop-Me", "secret"),
        ("Keep-Alive", "timeout=5"),
        ("TE", "trailers"),
        ("Proxy-Authorization", "Basic Zm9v"),
        ("X-Forwarded-For", "10.0.0.1"),
        ("X-Forwarded-For", "10.0.0.2"),
        ("X-Custom", "one"),
        ("X-Custom", "two"),
        ("Transfer-Encoding", "chunked"),
    ]:
        conn.putheader(key, value)
    conn.endheaders()
    for i in range(0, len(body), 65536):  # a chunked upload, streamed through
        piece = body[i : i + 65536]
        conn.send(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
    conn.send(b"0\r\n\r\n")
    answer = conn.getresponse()
    payload = answer.read()
    conn.close()
    assert answer.status == 200
    assert answer.getheader("Set-Cookie") is None  # the unit was known
    seen = json.loads(payload)
    headers = {}
    for key, value in seen["headers"]:
        headers.setdefault(key.lower(), []).append(value)
    assert seen["method"] == "PUT"
    assert seen["raw_path"] == "/echo?q=a%20b&q=%2F&x"
    assert seen["body_sha256"] == hashlib.sha256(body).hexdigest()
    assert seen["body_size"] == len(body)
    for dropped in ("x-drop-me", "keep-alive", "te", "proxy-authorization"):
        assert dropped not in headers
    assert headers["x-custom"] == ["one", "two"]
    assert headers["cookie"] == ["squals_unit=fixed; other=1"]
    assert headers["x-forwarded-for"] == ["10.0.0.1, 10.0.0.2, 127.0.0.1"]
    assert headers["x-forwarded-proto"] == ["http"]
    assert headers["x-forwarded-host"] == [dealer.url.removeprefix("http://")]
    assert headers["host"] == [dealer.upstreams()["a"].removeprefix("http://")]

    streamed = requests.get(dealer.url + "/stream?chunks=200&size=16384", timeout=30, stream=True)
    received = b"".join(streamed.iter_content(65536))
    assert received == b"".join(bytes([i % 256]) * 16384 for i in range(200))

    raw = requests.get(dealer.url + "/gzip", timeout=10, stream=True)
    assert raw.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(raw.raw.read()) == b"compressed " * 100  # passed through, not re-encoded

    cookies = requests.get(dealer.url + "/cookies", timeout=10)
    set_cookies = cookies.raw.headers.getlist("Set-Cookie")
    assert set_cookies[:2] == ["a=1; Path=/", "b=2; Path=/"]
    assert any(c.startswith("squals_unit=") and "HttpOnly" in c for c in set_cookies)
    assert "X-Private" not in cookies.headers  # named in the upstream's Connection header

    first = requests.delete(dealer.url + "/echo", timeout=10)  # no unit yet: the app sees the new one
    assert first.json()["method"] == "DELETE"
    new_unit = first.cookies["squals_unit"]
    assert ["Cookie", f"squals_unit={new_unit}"] in first.json()["headers"]
    head = requests.head(dealer.url + "/hello", timeout=10)
    assert head.status_code == 200 and head.content == b""
    assert requests.get(dealer.url + "/status/204", timeout=10).status_code == 204
    assert "x-squals-event" not in requests.get(dealer.url + "/event/buy", timeout=10).headers


def test_events_from_the_public_endpoint_and_the_admin_api(
    pair: dict[str, str], dealer_factory: DealerFactory
) -> None:
    dealer = dealer_factory(pair, {"a": 1, "b": 1}, event_caps={"revenue": 3})
    variant = requests.get(dealer.url + "/", cookies={"squals_unit": "u1"}, timeout=10).headers[
        "X-Squals-Variant"
    ]
    posted = requests.post(
        dealer.url + "/_squals/events", json={"event": "checkout"}, cookies={"squals_unit": "u1"}, timeout=10
    )
    assert posted.status_code == 204 and posted.headers["X-Squals-Variant"] == variant
    assert posted.headers["X-Squals-Counted"] == "1"
    assert (
        requests.post(dealer.url + "/_squals/events?event=checkout", timeout=10).status_code == 400
    )  # no unit
    assert requests.post(dealer.url + "/_squals/events?event=b%20d", timeout=10).status_code == 400
    expected = 'expected JSON {"event": name, "value": number} (at most 64 KiB)\n'
    for body in (b"not json", b'{"event": "' + b"x" * 70_000 + b'"}'):  # bad, and over the bound
        refused = requests.post(
            dealer.url + "/_squals/events", data=body, cookies={"squals_unit": "u1"}, timeout=10
        )
        assert (refused.status_code, refused.text) == (400, expected)
    assert requests.get(dealer.url + "/_squals/events", timeout=10).status_code == 405
    assert requests.post(dealer.url + "/_squals/other", timeout=10).status_code == 404
    for value in ("nan", "inf", "1e400", "abc"):
        bad = requests.post(
            dealer.url + f"/_squals/events?event=revenue&value={value}",
            cookies={"squals_unit": "u1"},
            timeout=10,
        )
        assert (bad.status_code, bad.text) == (
            400,
            f"value must be a finite number within +-1e+12, got '{value}'\n",
        )
    for value in ("12.5", "7.5"):  # the value by query and by header, counted up to the kind's cap
        requests.post(
            dealer.url + "/_squals/events?event=revenue",
            headers={"X-Squals-Value": value},
            cookies={"squals_unit": "u1"},
            timeout=10,
        ).raise_for_status()
    dealer.record_event("checkout", unit="u1", count=2)  # once per unit: counted already
    dealer.record_event("revenue", unit="u1", count=5, value=0.0)  # one more, up to the cap of 3
    dealer.record_event("signup", variant="b")
    for _ in range(2):  # one unit answered twice with the event header: one event, one converting unit
        buy = requests.get(dealer.url + "/event/buy", cookies={"squals_unit": "u2"}, timeout=10)
    tallies = dealer.tallies()
    assert tallies[variant].events["checkout"] == 1
    assert tallies[variant].event_units["checkout"] == 1  # a proportion's converters: u1 once
    revenue = tallies[variant].event_sums["revenue"]
    assert (revenue.units, revenue.count, revenue.value, revenue.value_sq) == (1, 3, 20.0, 400.0)
    assert tallies["b"].events["signup"] == 1 and "signup" not in tallies["b"].event_units  # no unit given
    buyer = tallies[buy.headers["X-Squals-Variant"]]
    assert (buyer.events["buy"], buyer.event_units["buy"]) == (1, 1)
    with pytest.raises(DealerError, match="known variant"):
        dealer.record_event("x", variant="nope")


def test_1000_posts_from_one_unit_count_once_and_an_unknown_unit_is_refused(
    pair: dict[str, str], dealer_factory: DealerFactory
) -> None:
    dealer = dealer_factory(pair, {"a": 1, "b": 1})
    mine = requests.get(dealer.url + "/", cookies={"squals_unit": "pumper"}, timeout=10).headers[
        "X-Squals-Variant"
    ]
    with requests.Session() as session:
        answers = [
            session.post(
                dealer.url + "/_squals/events?event=checkout", cookies={"squals_unit": "pumper"}, timeout=10
            )
            for _ in range(1000)
        ]
    assert {a.status_code for a in answers} == {204}
    assert [a.headers["X-Squals-Counted"] for a in answers].count("1") == 1
    stranger = requests.post(
        dealer.url + "/_squals/events?event=checkout", cookies={"squals_unit": "made-up"}, timeout=10
    )
    assert (stranger.status_code, stranger.text) == (
        403,
        "unknown unit: this Dealer never assigned it a variant\n",
    )
    with pytest.raises(DealerError, match="unknown unit 'made-up': this Dealer never assigned it"):
        dealer.record_event("checkout", unit="made-up")
    tallies = dealer.tallies()
    assert tallies[mine].events == {"checkout": 1} and tallies[mine].event_units == {"checkout": 1}
    assert sum(t.events.get("checkout", 0) for t in tallies.values()) == 1


def test_header_units_are_sticky_without_cookies(pair: dict[str, str], dealer_factory: DealerFactory) -> None:
    dealer = dealer_factory(
        pair,
        {"a": 1, "b": 1},
        unit_kind="header",
        unit_name="X-User",
    )
    seen = set()
    for _ in range(10):
        response = requests.get(dealer.url + "/", headers={"X-User": "alice"}, timeout=10)
        assert "Set-Cookie" not in response.headers
        seen.add(response.headers["X-Squals-Variant"])
    assert len(seen) == 1
    assert dealer.tallies()[seen.pop()].units == 1


def test_admin_needs_the_token_and_rejects_bad_weights(
    pair: dict[str, str], dealer_factory: DealerFactory
) -> None:
    dealer = dealer_factory({"a": pair["a"]}, {"a": 1})
    assert requests.get(dealer.admin_url + "/healthz", timeout=5).status_code == 200
    assert requests.get(dealer.admin_url + "/tallies", timeout=5).status_code == 401
    wrong = {"Authorization": "Bearer wrong"}
    assert (
        requests.put(
            dealer.admin_url + "/weights", json={"weights": {"a": 0}}, headers=wrong, timeout=5
        ).status_code
        == 401
    )
    intruder = DealerClient(dealer.url, dealer.admin_url, "not-the-token")
    with pytest.raises(DealerError, match="HTTP 401"):
        intruder.tallies()
    with pytest.raises(DealerError, match="at least one upstream needs a weight above 0"):
        dealer.set_weights({"a": 0})
    with pytest.raises(DealerError, match="unknown upstream"):
        dealer.set_weights({"zz": 1})
    assert dealer.weights() == {"a": 1.0}


def test_restart_keeps_tallies_and_a_bare_daemon_restart_keeps_the_switch(
    pair: dict[str, str], dealer_factory: DealerFactory, tmp_path: Path
) -> None:
    state = tmp_path / "restart"
    ups = pair
    dealer = dealer_factory(ups, {"a": 1, "b": 1}, state=state)
    truth = asyncio.run(drive(dealer.url, [(f"r{i}", "/event/buy") for i in range(300)]))
    before = dealer.tallies()
    assert sum(t.activations for t in before.values()) == len(truth.results) == 300
    dealer.set_weights({"a": 0, "b": 1})
    assert stop_dealer(state).state == "running"
    assert dealer_status(state).state == "stopped"

    # The daemon started by hand from the same state comes back on the last switch with every count.
    with bare_restart(state) as again:
        assert again.tallies() == before
        assert again.weights() == {"a": 0.0, "b": 1.0}
        assert dealer_status(state).state == "running"

    # start_dealer on the same state directory keeps the tallies and takes its config's weights.
    third = dealer_factory(ups, {"a": 1, "b": 1}, state=state)
    assert third.tallies() == before
    assert third.weights() == {"a": 1.0, "b": 1.0}


def test_stale_pid_files_are_reported_and_the_process_left_alone(tmp_path: Path) -> None:
    state = tmp_path / "stale"
    state.mkdir()
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        (state / PID_FILE).write_text(f"{sleeper.pid}\n")
        status = dealer_status(state)
        assert status.state == "stale" and "another process" in status.detail
        assert stop_dealer(state).state == "stale"
        assert sleeper.poll() is None  # not killed
        assert dealer_status(state).state == "stopped"
        with pytest.raises(DealerError, match="no Dealer runs"):
            connect_dealer(state)
    finally:
        sleeper.kill()
        sleeper.wait(timeout=5)
    (state / PID_FILE).write_text(f"{sleeper.pid}\n")
    assert "is not running" in dealer_status(state).detail


def test_a_dealer_that_cannot_start_says_why(tmp_path: Path, dealer_factory: DealerFactory) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(DealerError, match=r"exited with code 1: squals dealer: .*address"):
            dealer_factory({"a": "http://127.0.0.1:9"}, {"a": 1}, port=port)
    log = json.dumps((tmp_path / "dealer0" / "dealer.log").read_text())
    assert "address" in log.lower()


def test_requests_in_flight_finish_on_an_upstream_switched_away_and_drain_waits_for_them(
    pair: dict[str, str], dealer_factory: DealerFactory
) -> None:
    old, new = pair["a"], pair["b"]
    dealer = dealer_factory({"old": old}, {"old": 1})
    assert isinstance(dealer, Dealer)
    results: list[tuple[int, str]] = []

    def slow_request(i: int) -> None:
        response = requests.get(dealer.url + "/slow?ms=800", cookies={"squals_unit": f"s{i}"}, timeout=10)
        results.append((response.status_code, response.headers["X-Upstream"]))

    threads = [threading.Thread(target=slow_request, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 5
    while dealer.tallies().get("old") is None or dealer.tallies()["old"].in_flight < 6:
        assert time.monotonic() < deadline, "the slow requests never arrived"
        time.sleep(0.02)
    dealer.set_upstreams({"new": new}, {"new": 1})  # "old" is gone from the routing altogether
    assert requests.get(dealer.url + "/", timeout=10).headers["X-Upstream"] == "b"
    with pytest.raises(DealerError, match="still in flight"):
        dealer.wait_drained(["old"], timeout=0.05)
    dealer.wait_drained(["old"], timeout=10)
    for thread in threads:
        thread.join(timeout=10)
    assert results == [(200, "a")] * 6
    assert dealer.tallies()["old"].in_flight == 0


def test_sigkill_loses_nothing_acknowledged_before_or_after_a_compaction(
    pair: dict[str, str], dealer_factory: DealerFactory, tmp_path: Path
) -> None:
    state = tmp_path / "crash"
    ups = {"a": pair["a"], "b": pair["b"]}
    dealer = dealer_factory(ups, {"a": 1, "b": 1}, state=state, event_caps={"revenue": 5})
    asyncio.run(drive(dealer.url, [(f"c{i}", "/event/buy") for i in range(200)], concurrency=4))
    dealer.persist()  # a snapshot, then more changes only in the journal
    assert len(list((state / "tallies").glob("snapshot-*.npz"))) == 1
    asyncio.run(drive(dealer.url, [(f"d{i}", "/event/buy") for i in range(100)], concurrency=4))
    for i in range(0, 100, 3):
        answer = requests.post(
            dealer.url + "/_squals/events?event=revenue&value=2.5",
            cookies={"squals_unit": f"d{i}"},
            timeout=10,
        )
        assert answer.status_code == 204
    before = dealer.tallies()  # everything acknowledged so far; no grace period before the kill
    assert dealer.pid is not None
    os.kill(dealer.pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while dealer_status(state).state == "running" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert dealer_status(state).state == "stale"
    again = dealer_factory(ups, {"a": 1, "b": 1}, state=state, event_caps={"revenue": 5})
    after = again.tallies()
    assert after == before
    assert sum(t.units for t in after.values()) == 300
    assert sum(t.event_sums["revenue"].value for t in after.values() if "revenue" in t.event_sums) == 34 * 2.5


def test_the_package_imports_light() -> None:
    code = (
        "import sys, squals_action.dealer, squals_action.dealer.interface;"
        "print(sorted(m for m in ('aiohttp', 'requests', 'scipy', 'numpy') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"
