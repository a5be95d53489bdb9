"""The providers' exclusive lock on a file (:func:`squals_action.filelock.exclusive`), failing as a
:class:`ProviderError`."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from squals_action import filelock
from squals_action.providers.interface import ProviderError


@contextlib.contextmanager
def exclusive(path: Path, *, timeout: float, busy: str) -> Iterator[None]:
    """Hold ``path`` locked for the ``with`` block; after ``timeout`` seconds of waiting raise
    :class:`ProviderError` with ``busy`` (which names what is busy) and the lock file."""
    with filelock.exclusive(path, timeout=timeout, busy=busy, error=ProviderError):
        yield
