"""A bounded asynchronous load generator that counts the ground truth the Dealer's tallies must equal."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import aiohttp


@dataclass
class Truth:
    """What the generator saw: per request (unit, variant header, upstream header, status)."""

    results: list[tuple[str, str, str, int]] = field(default_factory=list)

    def variant_of(self) -> dict[str, set[str]]:
        seen: dict[str, set[str]] = {}
        for unit, variant, _, _ in self.results:
            seen.setdefault(unit, set()).add(variant)
        return seen

    def activations(self) -> Counter[str]:
        return Counter(variant for _, variant, _, _ in self.results)

    def units(self) -> dict[str, int]:
        by_variant: dict[str, set[str]] = {}
        for unit, variant, _, _ in self.results:
            by_variant.setdefault(variant, set()).add(unit)
        return {k: len(v) for k, v in by_variant.items()}


async def drive(
    url: str, plan: Iterable[tuple[str, str]], concurrency: int = 32, cookie: str = "squals_unit"
) -> Truth:
    """Send one request per (unit, path) with that unit's cookie, ``concurrency`` at a time."""
    truth = Truth()
    queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
    for item in plan:
        queue.put_nowait(item)
    timeout = aiohttp.ClientTimeout(total=30)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(
        timeout=timeout, connector=connector, cookie_jar=aiohttp.DummyCookieJar()
    ) as session:

        async def worker() -> None:
            while True:
                try:
                    unit, path = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                async with session.get(url + path, headers={"Cookie": f"{cookie}={unit}"}) as response:
                    await response.read()
                    truth.results.append(
                        (
                            unit,
                            response.headers.get("X-Squals-Variant", ""),
                            response.headers.get("X-Upstream", ""),
                            response.status,
                        )
                    )

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return truth
