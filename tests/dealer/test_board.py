"""The routing board: what a worker reads while the supervisor writes (a sequence lock on a shared file)."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from squals_action.dealer.board import BOARD_FILE, RoutingBoard
from squals_action.dealer.interface import DealerError
from squals_action.dealer.routing import make_routing

UPSTREAMS = {"a": "http://127.0.0.1:1", "b": "http://127.0.0.1:2"}


def test_a_reader_sees_a_switch_whole_and_never_half_written(tmp_path: Path) -> None:
    writer = RoutingBoard(tmp_path / BOARD_FILE, create=True)
    reader = RoutingBoard(tmp_path / BOARD_FILE)
    with pytest.raises(DealerError, match="no routing yet"):
        reader.routing()
    first = make_routing(UPSTREAMS, {"a": 1})
    writer.publish(first)
    seen = reader.routing()
    assert seen == first and reader.routing() is seen  # read once, then kept while nothing moves

    # A write in progress (odd generation, half the new JSON in place): the reader keeps what it had.
    path = tmp_path / BOARD_FILE
    raw = bytearray(path.read_bytes())
    generation, length = struct.unpack_from("<QI", raw, 0)
    struct.pack_into("<QI", raw, 0, generation + 1, length)
    raw[12:20] = b'{"upstre'
    path.write_bytes(bytes(raw))
    assert reader.routing() is seen

    second = make_routing(UPSTREAMS, {"b": 1})
    writer.publish(second)  # completes from the odd generation
    assert reader.routing() == second
    assert RoutingBoard(tmp_path / BOARD_FILE).routing() == second  # a restarted worker reads it too
    writer.publish(first)
    assert reader.routing() == first
    for board in (writer, reader):
        board.close()
