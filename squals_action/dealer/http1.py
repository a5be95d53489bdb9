"""What both ends of the Dealer's HTTP/1.1 share: header fields decoded on demand, and write flow control.

The server side (:mod:`~squals_action.dealer.server`, :mod:`~squals_action.dealer.request`) and the upstream
client (:mod:`~squals_action.dealer.upstream`) keep header fields as the bytes received and decode them only
when asked, as aiohttp did (UTF-8, undecodable bytes kept as surrogates so that they go out unchanged); both
protocols wait the same way when a peer does not read what they write.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from multidict import CIMultiDict


def _decoded(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


def text(value: bytes | None) -> str | None:
    """A field's value as text, ``None`` when absent."""
    return None if value is None else _decoded(value)


def multidict(raw: Iterable[tuple[bytes, bytes]]) -> CIMultiDict[str]:
    """Header fields as received, in a case-insensitive multi-dict (order and repeats kept)."""
    return CIMultiDict((_decoded(name), _decoded(value)) for name, value in raw)


def connection_tokens(value: bytes | None) -> set[bytes]:
    """The lower-case tokens a ``Connection`` field names (the fields it makes hop-by-hop, ``upgrade``)."""
    if not value:
        return set()
    return {token.strip().lower() for token in value.split(b",")} - {b""}


class WriteFlow:
    """Write flow control for an :class:`asyncio.Protocol`: :meth:`drain` waits while the transport's buffer
    is over its high-water mark, and a lost connection wakes the waiter with an error."""

    loop: asyncio.AbstractEventLoop
    closed: bool
    _write_paused = False
    _drained: asyncio.Future[None] | None = None

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    async def drain(self) -> None:
        if self._write_paused and not self.closed:
            self._drained = self.loop.create_future()
            try:
                await self._drained
            finally:
                self._drained = None

    def writers_gone(self, error: BaseException) -> None:
        """The connection is lost: a :meth:`drain` under way raises ``error``."""
        if self._drained is not None and not self._drained.done():
            self._drained.set_exception(error)
