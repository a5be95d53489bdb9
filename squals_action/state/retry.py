"""How hard a transaction tries under contention, shared by every store implementation."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    """How a transaction behaves under contention.

    At most ``max_attempts`` compare-and-swaps (pushes). After a lost race, binary exponential backoff with
    full jitter in slots of one measured attempt (at least ``base_delay`` seconds), then the writer waits
    until the branch stays still for a moment, looking at intervals of at most ``max_delay`` seconds; it
    gives up after ``max_wait`` seconds in all. Either way: ``ContentionError``.
    """

    max_attempts: int = 20
    base_delay: float = 0.02
    max_delay: float = 2.0
    max_wait: float = 120.0
