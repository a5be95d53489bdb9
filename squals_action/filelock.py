"""An exclusive ``flock`` on a file, waited for with a bound: how two squals processes on one machine take
turns on one environment, one shared resource or one Dealer (the kernel drops it when its holder dies)."""

from __future__ import annotations

import contextlib
import fcntl
import time
from collections.abc import Iterator
from pathlib import Path

from squals_action.errors import SqualsError


@contextlib.contextmanager
def exclusive(
    path: Path, *, timeout: float, busy: str, error: type[SqualsError] = SqualsError
) -> Iterator[None]:
    """Hold ``path`` locked for the ``with`` block; after ``timeout`` seconds of waiting raise ``error`` with
    ``busy`` (which names what is busy) and the lock file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as lock:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError as exc:
                if time.monotonic() >= deadline:
                    raise error(f"{busy} (another squals holds {lock.name})") from exc
                time.sleep(0.1)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
