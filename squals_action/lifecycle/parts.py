"""Which traffic splitter a project's lifecycle drives, and where its bake reads: one choice for the CLI and
the action.

* ``local``: the local Dealer daemon (``<repo>/.squals/dealer``), proxying to the islands' URLs;
* ``aws`` with ``provider.front_door``: the front door's ALB listener, one ``modify_listener`` per switch,
  forwarding to the islands' target groups; the front door is created on the first route;
* ``aws`` without a front door: a splitter that refuses every switch in one line naming what to declare,
  so a promote never records "pr-2 20 %" while no user request moved.

The bake reads the local Dealer's tallies, or on the front door CloudWatch (:class:`FrontDoorSignals`:
BLUE's target group on the front door's load balancer, and ``rollout.alarms``).

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
from squals_action.lifecycle.traffic import DealerTraffic
from squals_action.manifest.model import NOWHERE, Manifest
from squals_action.providers.interface import Provider

if TYPE_CHECKING:
    from squals_action.providers.aws_front_door import FrontDoorTraffic


def traffic_for(manifest: Manifest, provider: Provider, dealer_dir: Path) -> Traffic:
    """The splitter in front of ``provider``'s environments (rules in the module doc)."""
    unit = manifest.experiment.unit if manifest.experiment is not None else None
    if provider.kind != "aws":
        return DealerTraffic(dealer_dir, unit)
    if provider.config.front_door is None:
        declared = provider.config.location
        return NoFrontDoor(manifest.path if declared == NOWHERE else str(declared))
    from squals_action.providers.aws import AwsProvider
    from squals_action.providers.aws_front_door import FrontDoorStack, FrontDoorTraffic

    assert isinstance(provider, AwsProvider)  # the registry's kind "aws"
    # The front door's stack is named after the project: a fresh process (a promote on a new runner) has
    # provisioned nothing to learn it from.
    provider.project = manifest.name
    return FrontDoorTraffic(FrontDoorStack(provider), manifest, unit=unit)


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

    def __init__(self, where: str) -> None:
        self.where = where

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
