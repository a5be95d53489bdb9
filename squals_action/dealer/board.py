"""The routing board: the routing in force, shared by the supervisor (one writer) and every worker (readers).

A small file in the state directory mapped into every process. Its first 8 bytes are a generation number
(a sequence lock): the writer makes it odd, writes the routing's JSON, then makes it even again; a reader that
sees an even generation different from its own reads the JSON and keeps it only if the generation did not
move meanwhile. Workers check the generation on every request (one 8-byte read), so the switch happens at
one instant for all of them: the writer's last store. Before it every worker serves the old routing, after it
every worker's next assignment uses the new one, and no unit can be sent back to the old one.
"""

from __future__ import annotations

import json
import mmap
import os
import struct
from pathlib import Path

from squals_action.dealer.interface import DealerError
from squals_action.dealer.routing import Routing, make_routing

BOARD_FILE = "routing.board"
_HEAD = struct.Struct("<QI")  # generation, length of the JSON that follows
_SIZE = 256 * 1024  # room for the routing's JSON: thousands of upstreams


class RoutingBoard:
    """One process's view of the board; ``publish`` in the supervisor, ``routing()`` in the workers."""

    def __init__(self, path: Path, *, create: bool = False) -> None:
        flags = os.O_RDWR | (os.O_CREAT if create else 0)
        fd = os.open(path, flags, 0o600)
        try:
            if create:
                os.ftruncate(fd, _SIZE)
            self._map = mmap.mmap(fd, _SIZE)
        finally:
            os.close(fd)
        self._generation = -1
        self._routing: Routing | None = None

    def close(self) -> None:
        self._map.close()

    def publish(self, routing: Routing) -> None:
        """Make ``routing`` the one every worker serves from its next request on (the only writer)."""
        data = json.dumps(routing.to_json(), separators=(",", ":")).encode()
        if _HEAD.size + len(data) > _SIZE:
            raise DealerError(f"the routing is too large to share ({len(data)} bytes of JSON)")
        generation = _HEAD.unpack_from(self._map, 0)[0]
        generation += 2 if generation % 2 == 0 else 1
        _HEAD.pack_into(self._map, 0, generation - 1, len(data))  # odd: being written
        self._map[_HEAD.size : _HEAD.size + len(data)] = data
        _HEAD.pack_into(self._map, 0, generation, len(data))  # even: the switch
        self._generation, self._routing = generation, routing

    def routing(self) -> Routing:
        """The routing in force: the one read last unless the board's generation moved since."""
        generation = _HEAD.unpack_from(self._map, 0)[0]
        if generation != self._generation and generation % 2 == 0 and generation:  # 0: never written
            self._read(generation)
        if self._routing is None:
            raise DealerError("the routing board holds no routing yet")
        return self._routing

    def _read(self, generation: int) -> None:
        length = _HEAD.unpack_from(self._map, 0)[1]
        data = bytes(self._map[_HEAD.size : _HEAD.size + length])
        if _HEAD.unpack_from(self._map, 0)[0] != generation:
            return  # a write began meanwhile: keep the previous routing, the next request reads again
        raw = json.loads(data)
        self._routing = make_routing(raw["upstreams"], raw["weights"], raw.get("layers", ()))
        self._generation = generation
