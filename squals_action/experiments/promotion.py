"""The winner's way to prod: the lifecycle's own ``deploy`` then ``promote`` of the winner's squals file.

Gates already ran on the pull request; hooks, exit tests, the blue/green bake and the postprod bookkeeping
are the lifecycle's. The engine receives a :data:`Promoter` (a lifecycle for a squals file) instead of
building one, so the CLI and the action promote through the lifecycle they opened.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from squals_action.errors import SqualsError
from squals_action.manifest.model import Manifest

if TYPE_CHECKING:
    from squals_action.lifecycle.engine import Lifecycle, Outcome

#: A lifecycle driving the given squals file (the winner's), for the time of one promotion.
Promoter = Callable[[Manifest], AbstractContextManager["Lifecycle"]]


@dataclass(frozen=True, kw_only=True)
class Promotion:
    """What the lifecycle did with the winner: its last outcome, and why it failed (``None``: it is prod)."""

    outcome: Outcome | None
    failure: str | None


def promote(promoter: Promoter, manifest: Manifest, pr: int, commit: str) -> Promotion:
    """Deploy ``commit`` as ``pr-<pr>`` and promote it to prod, each step as the lifecycle does it."""
    outcome: Outcome | None = None
    failure: str | None = None
    try:
        with promoter(manifest) as lifecycle:
            outcome = _scoped(lifecycle, "deploy").deploy(pr, commit)
            if outcome.ok:
                outcome = _scoped(lifecycle, "promote").promote(pr)
            if not outcome.ok:
                failure = outcome.message
    except SqualsError as exc:
        failure = exc.one_line()
    return Promotion(outcome=outcome, failure=failure)


def lifecycle_promoter(lifecycle: Lifecycle) -> Promoter:
    """Promotion by a copy of ``lifecycle`` holding the winner's squals file (its locks, hooks, bake)."""

    def promoter(manifest: Manifest) -> AbstractContextManager[Lifecycle]:
        return contextlib.nullcontext(dataclasses.replace(lifecycle, manifest=manifest, gates=None))

    return promoter


def _scoped(lifecycle: Lifecycle, step: str) -> Lifecycle:
    """The lifecycle with a run id of its own for ``step``.

    Workaround: the store's lock helpers key their idempotency on event + run + attempt only, so a deploy
    and a promote in one run would see the second ``lock`` (and ``unlock``) as a replay of the first. The
    lifecycle never does both in one run; a tick that promotes does, so each step gets ``<run>-<step>``.
    """
    if lifecycle.run_id is None:
        return lifecycle
    return dataclasses.replace(lifecycle, run_id=f"{lifecycle.run_id}-{step}")
