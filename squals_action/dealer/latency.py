"""The Dealer's latency histogram: fixed log buckets, so percentiles stay within ~1 % however long it runs.

Buckets are 1 % wide from 10 us to ~10 min (at most ~1,800 counters per variant); histograms add up across
restarts and workers bucket by bucket.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

_MIN_MS = 0.01
_GROWTH = 1.01
_LOG_GROWTH = math.log(_GROWTH)
MAX_BUCKET = int(math.log(600_000.0 / _MIN_MS) / _LOG_GROWTH) + 1


class LatencyHistogram:
    """Counts of latencies in log-spaced buckets; percentiles report each bucket's geometric middle."""

    __slots__ = ("buckets", "count")

    def __init__(self) -> None:
        self.buckets: dict[int, int] = {}
        self.count = 0

    def add(self, ms: float) -> int:
        """Count one latency; returns its bucket."""
        index = 0 if ms <= _MIN_MS else min(MAX_BUCKET, int(math.log(ms / _MIN_MS) / _LOG_GROWTH) + 1)
        self.buckets[index] = self.buckets.get(index, 0) + 1
        self.count += 1
        return index

    def percentile(self, q: float) -> float | None:
        """The q-th percentile (0 < q <= 100) in ms, ``None`` when empty."""
        if not self.count:
            return None
        rank = max(1, math.ceil(self.count * q / 100.0))
        seen = 0
        for index in sorted(self.buckets):
            seen += self.buckets[index]
            if seen >= rank:
                return _bucket_middle(index)
        return _bucket_middle(max(self.buckets))  # pragma: no cover - rank <= count always hits above


def _bucket_middle(index: int) -> float:
    if index == 0:
        return _MIN_MS
    low = _MIN_MS * _GROWTH ** (index - 1)
    return round(low * math.sqrt(_GROWTH), 3)


def percentiles_since(
    now: Mapping[int, int], base: Mapping[int, int]
) -> tuple[float | None, float | None, float | None]:
    """p50, p95 and p99 (ms) of the requests a histogram counted between two snapshots of it."""
    between = LatencyHistogram()
    for index, count in now.items():
        more = count - base.get(index, 0)
        if more > 0:
            between.buckets[index] = more
            between.count += more
    return between.percentile(50), between.percentile(95), between.percentile(99)
