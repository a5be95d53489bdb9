"""Where a transaction's time goes: one line per step (fetch, build, push, sleep, peek), when asked for.

``bench/state.py --trace`` and ``SQUALS_STATE_TRACE=FILE`` turn it on; unset, a step costs one ``if``.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator

#: A file to append one line per step of a transaction to (``bench/state.py --trace``): where time goes.
TRACE_ENV = "SQUALS_STATE_TRACE"


class Trace:
    """Appends ``<epoch start> <seconds> <pid> <step> <detail>`` lines to ``$SQUALS_STATE_TRACE``, if set."""

    def __init__(self) -> None:
        self.path = os.environ.get(TRACE_ENV) or None

    @contextlib.contextmanager
    def step(self, name: str, detail: str = "") -> Iterator[None]:
        if self.path is None:
            yield
            return
        wall, began = time.time(), time.monotonic()
        try:
            yield
        finally:
            line = f"{wall:.6f} {time.monotonic() - began:.6f} {os.getpid()} {name} {detail}\n"
            with open(self.path, "a", encoding="ascii") as out:
                out.write(line)
