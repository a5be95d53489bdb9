"""The local Dealer keeps its public port across a stop and the next start while that port is free, so the URL
people were given survives ``squals down`` / ``up``; a port taken meanwhile gives way to any free one."""

from __future__ import annotations

import socket
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

from squals_action.dealer import stop_dealer
from tests.support.dealer import DealerFactory


def _answers(url: str) -> bool:
    with urllib.request.urlopen(url + "/", timeout=10) as response:
        return bool(response.status == 200)


def _port(url: str) -> int:
    port = urlsplit(url).port
    assert port is not None
    return port


def test_the_public_port_is_kept_across_stop_and_start_while_free(
    pair: dict[str, str], dealer_factory: DealerFactory, tmp_path: Path
) -> None:
    state = tmp_path / "dealer"
    first = dealer_factory({"a": pair["a"]}, {"a": 1}, state=state)
    assert stop_dealer(state).state == "running"

    again = dealer_factory({"a": pair["a"]}, {"a": 1}, state=state)
    assert again.url == first.url and _answers(again.url)  # the URL people were given works again
    assert stop_dealer(state).state == "running"

    with socket.socket() as squatter:  # someone else took the port while the Dealer was down
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # its old connections may linger
        squatter.bind(("127.0.0.1", _port(first.url)))
        squatter.listen()
        moved = dealer_factory({"a": pair["a"]}, {"a": 1}, state=state)
        assert moved.url != first.url and _answers(moved.url)
    assert stop_dealer(state).state == "running"
    # the port it had last is the one it asks for next
    assert dealer_factory({"a": pair["a"]}, {"a": 1}, state=state).url == moved.url
