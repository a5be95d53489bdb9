"""Upkeep of the object database the store writes into: packs rolled up as ``git maintenance`` would.

Every transaction writes its objects as one small pack (one file per transaction instead of one per object).
Left alone, a repository that records thousands of transitions holds thousands of packs, and every object
lookup walks their indexes. So after a transaction is published -- outside its critical section -- the
store counts the packs written since the last roll-up (and estimates the loose objects, as ``git gc --auto``
does) and, past :data:`PACK_LIMIT` (git's ``gc.autoPackLimit``) or :data:`LOOSE_LIMIT` (git's ``gc.auto``),
runs ``git repack -d --geometric=2`` on a thread of its own, bounded by the store's timeout.

A geometric roll-up combines the small packs (and every loose object, reachable or not) into one new pack
and then deletes only the packs it combined: it never drops an object, so a concurrent writer whose
objects are not referenced yet loses nothing, and a pack written while it runs is left for the next roll-up.
Large packs stay as they are (each object is rewritten about log2(N) times over a history of N), so the cost
per transition stays flat. One roll-up at a time per repository: a lock file in the git directory, taken
over when older than twice the timeout (its process died).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from pathlib import Path

from squals_action.state.errors import GitCommandError
from squals_action.state.git_repo import GitRepo
from squals_action.state.trace import Trace

_log = logging.getLogger("squals.state")

#: Packs written since the last roll-up that trigger the next one (git's ``gc.autoPackLimit`` default).
PACK_LIMIT = 50
#: Loose objects that trigger a roll-up (git's ``gc.auto`` default), estimated from one fan-out directory.
LOOSE_LIMIT = 6700
LOCK_NAME = "squals-repack.lock"
#: Dated when the last roll-up began: packs older than it were there for it (or it failed).
STAMP_NAME = "squals-repack.done"


class Upkeep:
    """Rolls up the packs of one repository in the background once enough have accumulated."""

    def __init__(self, repo: GitRepo, trace: Trace | None = None) -> None:
        self._repo = repo
        self._trace = trace or Trace()
        self._thread: threading.Thread | None = None

    def due(self) -> bool:
        """Whether enough packs (written since the last roll-up) or loose objects have accumulated."""
        objects = self._repo.objects_dir
        try:
            since = (self._repo.common_dir / STAMP_NAME).stat().st_mtime
        except OSError:
            since = 0.0
        fresh = 0
        with contextlib.suppress(OSError), os.scandir(objects / "pack") as entries:
            for entry in entries:
                if entry.name.endswith(".pack"):
                    with contextlib.suppress(OSError):
                        fresh += entry.stat().st_mtime >= since
        if fresh >= PACK_LIMIT:
            return True
        try:  # as git gc --auto estimates: one of the 256 fan-out directories, times 256
            sampled = sum(1 for name in os.listdir(objects / "17") if len(name) == 38)
        except OSError:
            sampled = 0
        return sampled * 256 >= LOOSE_LIMIT

    def after_write(self) -> None:
        """Start a roll-up on a thread when one is due and none runs in this process; never blocks."""
        if self._thread is not None and self._thread.is_alive():
            return
        if not self.due():
            return
        self._thread = threading.Thread(target=self.rollup, name="squals-repack", daemon=False)
        self._thread.start()

    def rollup(self) -> bool:
        """Roll the small packs and the loose objects up into one pack; ``False`` if another process does."""
        lock = self._repo.common_dir / LOCK_NAME
        if not _take(lock, stale_after=2 * self._repo.timeout):
            return False
        began = time.time()
        try:
            with self._trace.step("repack"):
                self._repo.run("-c", "repack.writeBitmaps=false", "repack", "-d", "-l", "-q", "--geometric=2")
        except GitCommandError as exc:  # upkeep only: the transaction it follows was published; say so
            _log.warning(
                "squals: packs of %s not rolled up (tried again after %d more): %s",
                self._repo.path,
                PACK_LIMIT,
                exc,
            )
        finally:
            with contextlib.suppress(OSError):  # the next try: after PACK_LIMIT more packs, not at once
                stamp = self._repo.common_dir / STAMP_NAME
                stamp.touch()
                os.utime(stamp, (began, began))  # packs written while it ran count for the next one
            with contextlib.suppress(OSError):
                lock.unlink()
        return True

    def wait(self) -> None:
        """Let a running roll-up finish (it is bounded by the repository's timeout)."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None


def _take(lock: Path, *, stale_after: float) -> bool:
    """Create ``lock`` exclusively; take over one older than ``stale_after`` seconds (its holder died)."""
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                age = time.time() - lock.stat().st_mtime
            except OSError:
                continue  # released meanwhile: try once more
            if age <= stale_after:
                return False
            with contextlib.suppress(OSError):
                lock.unlink()
            continue
        except OSError:
            return False
        with os.fdopen(fd, "w") as out:
            out.write(f"{os.getpid()}\n")
        return True
    return False
