"""A proxied request's trip when the upstream misbehaves: a real Dealer daemon and a scripted upstream on
127.0.0.1 (raw sockets, so each failure is exactly what the test writes). Requests without a body go from
callbacks on a pooled connection; each failure must land where the coroutine path would put it."""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from collections.abc import Iterator

import pytest
import requests

from tests.support.dealer import DealerFactory


class _Scripted(socketserver.BaseRequestHandler):
    """Keep-alive HTTP/1.1 by path: ``/ok`` answers, ``/then-drop`` answers and then closes the connection
    on the next request, unanswered (an upstream that closed an idle connection as it was reused),
    ``/broken`` (``/broken-500``) breaks off in the body of a 200 (of a 500), ``/silent`` never answers,
    ``/late-500`` sends a 500's head at once and its body a second later."""

    def handle(self) -> None:
        sock: socket.socket = self.request
        data = b""
        while True:
            while b"\r\n\r\n" not in data:
                more = sock.recv(65536)
                if not more:
                    return
                data += more
            head, _, data = data.partition(b"\r\n\r\n")
            path = head.split(b" ", 2)[1]
            if path == b"/silent":
                time.sleep(3)
                return
            if path == b"/late-500":
                sock.sendall(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n\r\n")
                time.sleep(1.0)
                sock.sendall(b"late")
                continue
            if path in (b"/broken", b"/broken-500"):
                status = b"500 Internal Server Error" if path == b"/broken-500" else b"200 OK"
                sock.sendall(b"HTTP/1.1 %s\r\nContent-Length: 100\r\n\r\nonly part" % status)
                return
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            if path == b"/then-drop":
                while b"\r\n\r\n" not in data:
                    data += sock.recv(65536)
                return


@pytest.fixture
def scripted() -> Iterator[tuple[str, list[int]]]:
    """The scripted upstream's URL and a list growing by one per connection it accepted."""
    accepted: list[int] = []

    class Counting(_Scripted):
        def setup(self) -> None:
            accepted.append(1)

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Counting)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", accepted
    finally:
        server.shutdown()
        server.server_close()


def test_an_upstream_closing_breaking_off_or_silent_gets_a_resend_a_502_and_a_504(
    scripted: tuple[str, list[int]], dealer_factory: DealerFactory
) -> None:
    url, accepted = scripted
    dealer = dealer_factory({"a": url}, {"a": 1}, read_timeout=0.5)
    with requests.Session() as client:
        client.cookies.set("squals_unit", "one")
        assert client.get(dealer.url + "/then-drop", timeout=10).text == "ok"
        again = client.get(dealer.url + "/ok", timeout=10)  # dropped unanswered, sent again on a new one
        assert (again.status_code, again.text) == (200, "ok") and len(accepted) == 2
        broken = client.get(dealer.url + "/broken", timeout=10)
        assert (broken.status_code, broken.text) == (502, "upstream a broke off: BrokenOff\n")
        silent = client.get(dealer.url + "/silent", timeout=10)
        assert (silent.status_code, silent.text) == (504, "upstream a timed out\n")
        assert client.get(dealer.url + "/ok", timeout=10).text == "ok"  # and the Dealer serves on
    tally = dealer.tallies()["a"]
    assert (tally.activations, tally.connection_errors, tally.server_errors) == (5, 2, 0)


def test_an_error_counted_before_its_answer_is_done_is_neither_answered_nor_an_answered_error(
    scripted: tuple[str, list[int]], dealer_factory: DealerFactory
) -> None:
    """A 5xx is counted at its head, its request stays in flight while the body comes: a KPI window (errors
    among answered requests) must not see the error before the answer, else it reads more than 100 %."""
    url, _ = scripted
    dealer = dealer_factory({"a": url}, {"a": 1})
    late = threading.Thread(target=requests.get, args=(dealer.url + "/late-500",), kwargs={"timeout": 10})
    late.start()
    try:
        deadline = time.monotonic() + 10
        while (t := dealer.tallies().get("a")) is None or t.errors < 1:
            assert time.monotonic() < deadline, "the 500's head never came"
            time.sleep(0.02)
        assert (t.errors, t.in_flight, t.in_flight_errors, t.answered, t.answered_errors) == (1, 1, 1, 0, 0)
    finally:
        late.join(timeout=10)
    done = dealer.tallies()["a"]
    figures = (done.errors, done.in_flight, done.in_flight_errors, done.answered, done.answered_errors)
    assert figures == (1, 0, 0, 1, 1)


def test_a_5xx_whose_body_breaks_off_is_one_error(
    scripted: tuple[str, list[int]], dealer_factory: DealerFactory
) -> None:
    """Counted once: as the 5xx it answered (before, also as a connection error, so one request was two)."""
    url, _ = scripted
    dealer = dealer_factory({"a": url}, {"a": 1})
    broken = requests.get(dealer.url + "/broken-500", timeout=10)
    assert (broken.status_code, broken.text) == (502, "upstream a broke off: BrokenOff\n")
    tally = dealer.tallies()["a"]
    assert (tally.activations, tally.errors, tally.server_errors, tally.connection_errors) == (1, 1, 1, 0)
    assert (tally.answered, tally.answered_errors) == (1, 1)
