"""The winner's way to prod: the lifecycle's own ``deploy`` then ``promote`` of the winner's squals file.

The winner's own island is what gets promoted, not a fresh copy: the deploy runs with a provider that hands
over the island already running the winner (:func:`adopting`) instead of provisioning ``pr-N`` again, so
the lifecycle records that island as ``pr-N`` (its hooks and exit tests run against it) and the bake, the
traffic switch and the postprod bookkeeping are the lifecycle's. On AWS that is the island's own stack and
target group; users already on it stay on it. Gates already ran on the pull request. The engine receives a
:data:`Promoter` (a lifecycle for a squals file) instead of building one, so the CLI and the action promote
through the lifecycle they opened.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from squals_action.errors import SqualsError
from squals_action.lifecycle.records import fleet_of
from squals_action.lifecycle.source import Source
from squals_action.manifest.model import EMPTY, Manifest
from squals_action.providers.interface import (
    DestroyOutcome,
    EnvironmentHandle,
    Health,
    Provider,
    ProviderError,
    SharedResources,
)
from squals_action.state.interface import StaleLockError

if TYPE_CHECKING:
    from squals_action.lifecycle.engine import Lifecycle, Outcome

#: A lifecycle driving the given squals file, for the time of one promotion (the winner's file) or of one
#: variant's readiness at the start (:mod:`~squals_action.experiments.ready`: its hooks and exit tests).
Promoter = Callable[[Manifest], AbstractContextManager["Lifecycle"]]


@dataclass(frozen=True, kw_only=True)
class Promotion:
    """What the lifecycle did with the winner: its last outcome, and why it failed (``None``: it is prod)."""

    outcome: Outcome | None
    failure: str | None


def promote(
    promoter: Promoter, manifest: Manifest, pr: int, start: Source, island: EnvironmentHandle | None
) -> Promotion:
    """Record ``island`` (else a fresh provision of the start commit) as ``pr-<pr>`` through the lifecycle's
    deploy and promote it to prod, each step as the lifecycle does it, on the provider, front door and bake
    source of ``start``'s squals file (the experiment's start commit, as its islands were made), not of
    the file the lifecycle was opened with."""
    outcome: Outcome | None = None
    failure: str | None = None
    try:
        with promoter(manifest) as opened:
            lifecycle = opened.on(start)
            # where a tick that died left pr-N: prod already (done), or half-promoted (the promotion says
            # what to run; deploying it again would be refused without saying it)
            snapshot = lifecycle.store.read()
            left = fleet_of(snapshot).get(f"pr-{pr}")
            if left is not None and left.status == "prod":  # its locks are all that is left of that tick
                for lock in filter(None, (snapshot.lock(f"pr-{pr}"), snapshot.lock("prod"))):
                    if lock.holder is not None and lock.holder.liveness() == "dead":
                        raise StaleLockError(lock)
                return Promotion(outcome=None, failure=None)
            if left is not None and left.status in ("blue", "baked"):
                outcome = _scoped(lifecycle, "promote").promote(pr)
            else:
                deployer = _scoped(lifecycle, "deploy")
                if island is not None:
                    deployer = dataclasses.replace(deployer, provider=adopting(lifecycle.provider, island))
                outcome = deployer.deploy(pr, start.commit)
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


class _Adopting(Provider):
    """The lifecycle's provider, except that provisioning hands over the winner's running island."""

    kind: ClassVar[str] = ""  # the wrapped provider's, set by adopting()

    def __init__(self, inner: Provider, island: EnvironmentHandle) -> None:
        super().__init__(inner.repo, inner.config, state_dir=inner.state_dir)
        self.inner = inner
        self.island = island

    def provision(
        self,
        env_name: str,
        commit: str,
        manifest: Manifest,
        *,
        extra_env: Mapping[str, str] = EMPTY,
    ) -> EnvironmentHandle:
        health = self.inner.health(self.island)
        if not health.ok:
            raise ProviderError(
                f"{self.island.env} cannot become {env_name}: it is {health.status} ({health.detail})"
            )
        return self.island

    def health(self, handle: EnvironmentHandle, *, timeout: float = 2.0) -> Health:
        return self.inner.health(handle, timeout=timeout)

    def destroy(self, handle: EnvironmentHandle) -> DestroyOutcome:
        return self.inner.destroy(handle)

    def list(self) -> tuple[EnvironmentHandle, ...]:
        return self.inner.list()

    def shared_resources(self) -> SharedResources:
        return self.inner.shared_resources()


def adopting(inner: Provider, island: EnvironmentHandle) -> Provider:
    """``inner`` whose ``provision`` returns ``island`` once it is healthy (of ``inner``'s kind, so the state
    records the right provider)."""
    cls = type(f"Adopting{type(inner).__name__}", (_Adopting,), {"kind": inner.kind})
    adopted: Provider = cls(inner, island)
    return adopted


def _scoped(lifecycle: Lifecycle, step: str) -> Lifecycle:
    """The lifecycle with a run id of its own for ``step``.

    Workaround: the store's lock helpers key their idempotency on event + run + attempt only, so a deploy
    and a promote in one run would see the second ``lock`` (and ``unlock``) as a replay of the first. The
    lifecycle never does both in one run; a tick that promotes does, so each step gets ``<run>-<step>``.
    """
    if lifecycle.run_id is None:
        return lifecycle
    return dataclasses.replace(lifecycle, run_id=f"{lifecycle.run_id}-{step}")
