"""Retrying sessions against a real HTTP server on 127.0.0.1 that answers from a script of statuses."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import ClassVar

import pytest
import requests

from squals_action.http_session import retrying_session
from tests.support.local_http import LocalServer, QuietHandler


class Scripted(QuietHandler):
    """Answers each request with the next ``(status, headers)`` of :attr:`script`, then 200."""

    script: ClassVar[list[tuple[int, dict[str, str]]]] = []
    seen: ClassVar[list[str]] = []

    def _answer(self) -> None:
        self.seen.append(self.command)
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        status, headers = self.script.pop(0) if self.script else (200, {})
        self.reply(status, b'{"ok": true}', headers)

    do_GET = do_POST = _answer


@pytest.fixture
def server() -> Iterator[str]:
    Scripted.script, Scripted.seen = [], []
    with LocalServer(Scripted) as httpd:
        yield f"{httpd.url}/x"


def test_transient_statuses_are_retried_with_backoff_then_succeed(server: str) -> None:
    Scripted.script = [(503, {}), (502, {}), (500, {})]
    pauses: list[float] = []
    with retrying_session(attempts=4, backoff=0.5, pause=pauses.append) as session:
        response = session.get(server, timeout=5)
    assert response.status_code == 200
    assert Scripted.seen == ["GET"] * 4
    assert pauses == [0.5, 1.0, 2.0]


def test_retry_after_is_honoured_up_to_the_cap(server: str) -> None:
    Scripted.script = [(429, {"Retry-After": "3"}), (503, {"Retry-After": "3600"})]
    pauses: list[float] = []
    with retrying_session(attempts=3, backoff=0.1, retry_after_cap=10.0, pause=pauses.append) as session:
        assert session.get(server, timeout=5).status_code == 200
    assert pauses == [3, 10.0]


def test_client_errors_are_not_retried(server: str) -> None:
    Scripted.script = [(400, {}), (200, {})]
    pauses: list[float] = []
    with retrying_session(attempts=4, backoff=0.5, pause=pauses.append) as session:
        assert session.get(server, timeout=5).status_code == 400
    assert (Scripted.seen, pauses) == (["GET"], [])


def test_post_is_retried_only_when_declared_safe_to_repeat(server: str) -> None:
    Scripted.script = [(503, {}), (503, {})]
    with retrying_session(attempts=3, backoff=0.0, methods=("GET",)) as session:
        assert session.post(server, json={}, timeout=5).status_code == 503
    assert Scripted.seen == ["POST"]
    with retrying_session(attempts=3, backoff=0.0, methods=("GET", "POST")) as session:
        assert session.post(server, json={}, timeout=5).status_code == 200
    assert Scripted.seen == ["POST", "POST", "POST"]


def test_the_last_transient_answer_is_returned_after_the_last_attempt(server: str) -> None:
    Scripted.script = [(503, {})] * 5
    pauses: list[float] = []
    with retrying_session(attempts=3, backoff=0.25, pause=pauses.append) as session:
        assert session.get(server, timeout=5).status_code == 503
    assert (len(Scripted.seen), pauses) == (3, [0.25, 0.5])


def test_refused_connections_are_retried_then_raise() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    pauses: list[float] = []
    with (
        retrying_session(attempts=3, backoff=0.01, pause=pauses.append) as session,
        pytest.raises(requests.ConnectionError),
    ):
        session.get(f"http://127.0.0.1:{port}/", timeout=2)
    assert pauses == [0.01, 0.02]
