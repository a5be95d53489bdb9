"""The event loop's own lag probe: how late a short sleep wakes up is how long the loop was busy elsewhere."""

from __future__ import annotations

import asyncio
import contextlib


class LagProbe:
    """Sleeps ``interval`` seconds in a loop, keeping the largest lateness (ms) since the last read."""

    def __init__(self, interval: float = 0.005) -> None:
        self.interval = interval
        self.max_ms = 0.0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(self.interval)
            self.max_ms = max(self.max_ms, (loop.time() - before - self.interval) * 1000.0)

    def read(self, reset: bool = False) -> float:
        """The largest lag in ms (since the start or the last reset)."""
        value = self.max_ms
        if reset:
            self.max_ms = 0.0
        return value

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
