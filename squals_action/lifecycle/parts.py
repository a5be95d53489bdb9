"""Which traffic splitter a project's lifecycle drives, and where its bake reads: one choice for the CLI and
the action.

* ``local``: the local Dealer daemon (``<repo>/.squals/dealer``), proxying to the islands' URLs;
* ``aws`` with ``provider.front_door``: the front door's ALB listener, one ``modify_listener`` per switch,
  forwarding to the islands' target groups; the front door is created on the first route;
* ``aws`` without a front door: a splitter that refuses every switch in one line naming what to declare,
  so a promote never records "pr-2 20 %" while no user request moved.

The bake reads the local Dealer's tallies, or on the front door CloudWatch (:class:`FrontDoorSignals`:
BLUE's target group on the front door's load balancer, and ``rollout.alarms``).

A command bound to a commit (a deploy, a promotion: ``Steps.at``) gets both as the squals file of that
commit declares them (:func:`bound_to`): on aws its front door, or its lack of one, never the front door of
the file the command was opened with.

boto3 is not imported here: the ALB pieces import it on their first call.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from squals_action.dealer.interface import DealerError, NotMeasured, Traffic, VariantTally
from squals_action.lifecycle.machine import Env
from squals_action.lifecycle.signals import CloudWatchSignals, KpiSource, SignalError
from squals_action.lifecycle.source import Source
from squals_action.lifecycle.traffic import DealerTraffic
from squals_action.manifest.model import NOWHERE, Manifest, StickyUnit
from squals_action.manifest.model import Provider as ProviderSection
from squals_action.providers.interface import Provider

if TYPE_CHECKING:
    from squals_action.dealer.alb import TallyReader
    from squals_action.providers.aws_front_door import FrontDoorTraffic


def traffic_for(manifest: Manifest, provider: Provider, dealer_dir: Path) -> Traffic:
    """The splitter in front of ``provider``'s environments (rules in the module doc)."""
    if provider.kind != "aws":
        return DealerTraffic(dealer_dir, _unit(manifest))
    from squals_action.providers.aws import AwsProvider

    if isinstance(provider, AwsProvider):  # the registry's kind "aws"
        # The front door's stack is named after the project: a fresh process (a promote on a new runner)
        # has provisioned nothing to learn it from.
        provider.project = manifest.name
    return _on_aws(manifest, provider, _shown(manifest))


def bound_to(source: Source, traffic: Traffic, signals: KpiSource | None) -> tuple[Traffic, KpiSource | None]:
    """The splitter and the bake's source of a command bound to ``source``, as the squals file of its commit
    declares them, not as the file the command was opened with: its KPIs and alarms and, on aws, its front
    door (template, parameters, listener, region: :class:`FrontDoorStack` binds the provider to that
    section), or none (every switch refused in one line naming that file and
    commit). The local Dealer is the repository's, whatever the commit says; a model the caller gave (an
    experiment's variant file, which may not declare a front door) keeps the command's front door (the
    experiment binds the command to its start commit first: ``Steps.on``)."""
    from squals_action.providers.aws_front_door import FrontDoorTraffic

    manifest = source.manifest
    provider: Provider
    if isinstance(traffic, FrontDoorTraffic) and source.read_here:
        provider, reader = traffic.stack.provider, traffic.reader
    elif isinstance(traffic, NoFrontDoor) and source.read_here:
        provider, reader = traffic.provider, None
    else:
        return traffic, signals.declared(manifest.rollout) if signals is not None else None
    bound = _on_aws(manifest, provider, _shown(manifest), commit=source.tree, reader=reader)
    if isinstance(signals, FrontDoorSignals) or signals is None:  # CloudWatch at the commit's front door
        return bound, signals_for(manifest, bound, clock=signals.clock if signals is not None else None)
    return bound, signals.declared(manifest.rollout)


def provider_at(source: Source, provider: Provider) -> Provider:
    """The provider of a command bound to ``source``: on aws, with the provider section of the commit's
    squals file (its islands' template, parameters and front door, which decides whether an island must
    output ``TargetGroupArn``), not the section of the file the command was opened with. A model the caller
    gave as it is (an experiment's winner) keeps the command's provider, as :func:`bound_to` keeps its
    front door (bound to the experiment's start commit by then)."""
    return provider_with(source.manifest.provider, provider) if source.read_here else provider


def provider_with(section: ProviderSection, provider: Provider) -> Provider:
    """``provider`` with ``section``, the provider section of a squals file read from a commit (a deploy's,
    an experiment's start commit), as its own on aws: islands are built from that section and held to its
    front door. Another kind, or a section of another kind, keeps ``provider`` as it is."""
    from squals_action.providers.aws import AwsProvider

    if not isinstance(provider, AwsProvider) or section.kind != provider.kind:
        return provider
    return provider.bound(section)


def _on_aws(
    manifest: Manifest,
    provider: Provider,
    where: str,
    *,
    commit: str = "HEAD",
    reader: TallyReader | None = None,
) -> Traffic:
    """The front door ``manifest``'s provider section declares, ensured from its template at ``commit``;
    without one, the splitter that refuses every switch naming ``where``."""
    if manifest.provider.front_door is None:
        return NoFrontDoor(where, provider)
    from squals_action.providers.aws import AwsProvider
    from squals_action.providers.aws_front_door import FrontDoorStack, FrontDoorTraffic

    assert isinstance(provider, AwsProvider)  # the registry's kind "aws"
    stack = FrontDoorStack(provider, manifest.provider)
    return FrontDoorTraffic(stack, manifest, commit=commit, unit=_unit(manifest), reader=reader)


def _unit(manifest: Manifest) -> StickyUnit | None:
    """What keeps a user on one side: the experiment's unit, when the file declares an experiment."""
    return manifest.experiment.unit if manifest.experiment is not None else None


def _shown(manifest: Manifest) -> str:
    """Where ``manifest``'s provider section stands (``squals.yml:4:3 in commit 1a2b3c4d5e6f`` for a file
    read from a commit), or its file when it declares none."""
    declared = manifest.provider.location
    return manifest.shown if declared == NOWHERE else str(declared)


def signals_for(
    manifest: Manifest, traffic: Traffic, *, clock: Callable[[], datetime] | None = None
) -> KpiSource | None:
    """CloudWatch for a bake on the front door; ``None`` elsewhere (the bake reads the splitter's tallies).
    ``clock`` is the wall clock CloudWatch's windows are computed from (tests move it)."""
    from squals_action.providers.aws_front_door import FrontDoorTraffic

    if not isinstance(traffic, FrontDoorTraffic):
        return None
    return FrontDoorSignals(traffic, manifest, clock=clock)


class FrontDoorSignals(CloudWatchSignals):
    """:class:`CloudWatchSignals` on the front door: its load balancer (through the listener) and region are
    known once a step begins, after the route that started the step found or created the front door."""

    def __init__(
        self, traffic: FrontDoorTraffic, manifest: Manifest, *, clock: Callable[[], datetime] | None = None
    ) -> None:
        from squals_action.providers.cloudwatch import CloudWatch

        rollout = manifest.rollout
        super().__init__(
            CloudWatch(""),  # its region, as the load balancer, is the front door's: set by begin()
            "",
            kpis=[k.metric for k in rollout.kpis],
            alarms=rollout.alarms,
            alarms_location=rollout.location,
        )
        if clock is not None:
            self.clock = clock
        self.traffic = traffic

    def begin(self, blue: Env) -> None:
        door = self.traffic.door
        if door is None:
            raise SignalError("the front door is not known yet: no traffic was routed to BLUE")
        self.load_balancer_arn = door.listener_arn
        if self.reader.region != door.region:
            self.reader = type(self.reader)(door.region)
        super().begin(blue)


class NoFrontDoor:
    """The aws provider without ``provider.front_door``: islands only; every traffic switch is refused."""

    def __init__(self, where: str, provider: Provider) -> None:
        self.where = where
        #: kept for a command bound to a commit whose squals file declares a front door (:func:`bound_to`)
        self.provider = provider

    def url(self) -> str | None:
        return None

    def upstream(self, url: str | None, handle: Mapping[str, Any] | None) -> str | None:
        return url

    def route(self, upstreams: Mapping[str, str], weights: Mapping[str, float]) -> str:
        raise DealerError(
            f"{self.where}: provider kind aws has no front door, so no traffic can move: declare "
            "provider.front_door (template: infra/front-door.yml, or listener_arn: arn:...); "
            "nothing was changed"
        )

    def routing(self) -> Mapping[str, float]:
        return {}

    def drain(self, names: list[str], timeout: float = 30.0) -> str:
        return "no front door: nothing was routed, nothing to drain"

    def tallies(self) -> Mapping[str, VariantTally]:
        raise NotMeasured("no data: provider kind aws has no front door to measure traffic at")

    def stop(self) -> bool:
        return False

    def close(self) -> str | None:
        return None
