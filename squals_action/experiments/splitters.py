"""Who splits an experiment's traffic among its variants' islands: the local Dealer, or the ALB front door.

* :class:`LocalSplit` -- the experiment's own Dealer daemon (``split`` as weights, sticky per ``unit``, seeded
  with the experiment id) in a state directory of the machine that started it; its tallies are the
  ``dealer`` metric source, so a tick must run on that machine.
* :class:`AlbSplit` -- on ``aws`` with a ``front_door``: the variants' target groups go behind the front
  door's listener with ``split`` as weights in one ``modify_listener`` (``dealer.alb.AlbTraffic``: weights
  0-999, target-group stickiness, each group sticky on ``unit``'s cookie or ALB's). The listener's default
  actions before the start are read first (:meth:`AlbSplit.prepare`) and written to the document before the
  listener is touched, so an experiment that ends without a winner, or a start killed at any point, puts them
  back in one more ``modify_listener`` (before its stacks are deleted: AWS refuses to delete a target group
  a listener forwards to), and only when the listener still forwards to the experiment's target groups.
  Nothing runs between ticks; a tick needs the state branch and AWS only, and measures through CloudWatch
  (:class:`~squals_action.experiments.cloudwatch_source.AwsPlace`).

The engine picks one with :func:`new_split` at the start and finds it again from the document with
:func:`split_of`; it never asks which one it holds. A start calls :meth:`Split.prepare`, records
:meth:`Split.record` on the state branch (write-ahead), then :meth:`Split.open`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from squals_action import aws_api
from squals_action.dealer import DealerConfig, connect_dealer, dealer_status, start_dealer, stop_dealer
from squals_action.dealer.alb import AlbError, AlbTraffic, forwarded_by
from squals_action.dealer.interface import DealerError, VariantTally
from squals_action.errors import SqualsError
from squals_action.experiments.cloudwatch_source import AwsPlace
from squals_action.experiments.interface import ExperimentError
from squals_action.experiments.records import island_names_of
from squals_action.manifest.model import Experiment, Manifest, StickyUnit
from squals_action.providers.interface import EnvironmentHandle, Provider
from squals_action.state.interface import ExperimentState

Log = Callable[[str], None]
Tallies = Callable[[], Mapping[str, VariantTally]]


class Split(Protocol):
    """The experiment's splitter as the engine drives it."""

    def prepare(
        self, islands: Mapping[str, EnvironmentHandle], recorded: Mapping[str, Any], log: Log
    ) -> None:
        """Read, changing nothing, what :meth:`release` needs to give the traffic back; :meth:`record`
        holds it from now on, so the engine writes it to the state branch before :meth:`open` moves any.
        ``recorded``: what a killed start of this experiment wrote ahead (its document's ``traffic``, taken
        over by this start's claim), or empty."""
        ...

    def open(self, eid: str, spec: Experiment, islands: Mapping[str, EnvironmentHandle], log: Log) -> str:
        """Send ``spec.split`` of the traffic to the variants' islands; returns where users arrive."""
        ...

    def record(self) -> dict[str, Any]:
        """What the experiment's document keeps under ``extra`` to find this splitter in a later process."""
        ...

    def unavailable(self) -> str | None:
        """Why a tick cannot measure here (``None``: it can)."""
        ...

    def measuring(self) -> contextlib.AbstractContextManager[tuple[Tallies | None, AwsPlace | None]]:
        """For one tick: the Dealer's tallies (local) or where the experiment runs on AWS."""
        ...

    def set_weights(self, weights: Mapping[str, float], log: Log) -> None:
        """Change the variants' shares (a variant a guardrail excluded gets 0)."""
        ...

    def release(self, *, restore: bool, log: Log) -> None:
        """Stop splitting; ``restore`` (no winner) gives the traffic back as it was before the start."""
        ...


class LocalSplit:
    """The experiment's own Dealer daemon in ``dealer_dir``."""

    def __init__(self, dealer_dir: Path) -> None:
        self.dealer_dir = dealer_dir

    def prepare(
        self, islands: Mapping[str, EnvironmentHandle], recorded: Mapping[str, Any], log: Log
    ) -> None:
        """Nothing to read: the experiment's own Dealer is stopped at the end, prod's traffic never moved."""

    def open(self, eid: str, spec: Experiment, islands: Mapping[str, EnvironmentHandle], log: Log) -> str:
        stop_dealer(self.dealer_dir)  # a leftover of a crashed start of this same experiment
        log(f"start the experiment's Dealer ({', '.join(f'{k} {v:g}' for k, v in spec.split.items())})")
        client = start_dealer(
            DealerConfig(
                upstreams={name: handle.url for name, handle in islands.items()},
                weights={k: float(v) for k, v in spec.split.items()},
                unit_kind=spec.unit.kind,
                unit_name=spec.unit.name,
                seed=eid,
                event_caps=dict(spec.events),
            ),
            self.dealer_dir,
        )
        try:
            return str(client.url)
        finally:
            client.close()

    def record(self) -> dict[str, Any]:
        return {"dealer_dir": str(self.dealer_dir)}

    def unavailable(self) -> str | None:
        if dealer_status(self.dealer_dir).state == "running":
            return None
        return (
            f"its Dealer is not running in {self.dealer_dir} (the local provider keeps it on the machine "
            "that started the experiment)"
        )

    @contextmanager
    def measuring(self) -> Iterator[tuple[Tallies | None, AwsPlace | None]]:
        client = connect_dealer(self.dealer_dir)
        try:
            yield client.tallies, None
        finally:
            client.close()

    def set_weights(self, weights: Mapping[str, float], log: Log) -> None:
        client = connect_dealer(self.dealer_dir)
        try:
            client.set_weights(weights)
        finally:
            client.close()

    def release(self, *, restore: bool, log: Log) -> None:
        if not self.dealer_dir.is_dir():  # never made (the start failed before it): no Dealer runs there
            return
        with contextlib.suppress(SqualsError):
            stop_dealer(self.dealer_dir)  # graceful: in-flight requests finish, tallies are written


class AlbSplit:
    """The front door's ALB listener, forwarding to the variants' target groups."""

    def __init__(
        self,
        *,
        listener_arn: str,
        url: str | None,
        unit: StickyUnit,
        target_groups: Mapping[str, str] | None = None,
        before: list[dict[str, Any]] | None = None,
        since: datetime | None = None,
        islands: Mapping[str, str] | None = None,
    ) -> None:
        self.traffic = AlbTraffic(listener_arn, url=url, upstreams=target_groups, unit=unit)
        self.target_groups = dict(target_groups or {})
        self.before = before
        self.since = since
        #: each variant's island name (``$environment`` in a CloudWatch query), as the document recorded it
        self.islands = dict(islands or {})

    def prepare(
        self, islands: Mapping[str, EnvironmentHandle], recorded: Mapping[str, Any], log: Log
    ) -> None:
        """The islands' target groups, and the listener's default actions as they are (one describe):
        what :meth:`release` puts back. A listener that forwards to those groups already was moved by a
        killed start of this experiment: the routing that start wrote ahead (``recorded``, on this
        listener) is kept, and without one the start is refused (nothing to give back would be known)."""
        self.target_groups = {name: target_group_of(handle) for name, handle in islands.items()}
        arn = self.traffic.listener_arn
        actions = self.traffic.default_actions()
        if set(forwarded_by(actions)) & set(self.target_groups.values()):
            same = recorded.get("kind") == "alb" and recorded.get("listener_arn") == arn
            if not same or not recorded.get("before"):
                raise ExperimentError(
                    f"listener {arn} forwards to this experiment's target groups already (a start that "
                    "was killed?) and its routing from before is not recorded: give the listener its "
                    "routing back by hand, then start again"
                )
            log("the listener holds a killed start's routing: keep the one recorded from before it")
            actions = list(recorded["before"])
        self.before = [dict(a) for a in actions]
        self.traffic.url()  # recorded with them: known before anything moves

    def open(self, eid: str, spec: Experiment, islands: Mapping[str, EnvironmentHandle], log: Log) -> str:
        if self.before is None:
            raise ExperimentError("the listener's routing was not read before the start moved it (a bug)")
        shares = ", ".join(f"{k} {v:g}" for k, v in spec.split.items())
        log(f"route the front door's listener to the variants' target groups ({shares})")
        return self.traffic.route(self.target_groups, {k: float(v) for k, v in spec.split.items()})

    def record(self) -> dict[str, Any]:
        return {
            "traffic": {
                "kind": "alb",
                "listener_arn": self.traffic.listener_arn,
                "url": self.traffic.url(),
                "region": self.traffic.region,
                "target_groups": dict(self.target_groups),
                "before": self.before or [],
            }
        }

    def unavailable(self) -> str | None:
        return None

    @contextmanager
    def measuring(self) -> Iterator[tuple[Tallies | None, AwsPlace | None]]:
        if self.since is None:
            raise ExperimentError("the experiment's document has no start time to read CloudWatch from")
        yield (
            None,
            AwsPlace(
                region=self.traffic.region,
                listener_arn=self.traffic.listener_arn,
                target_groups=self.target_groups,
                environments=dict(self.islands),
                since=self.since,
            ),
        )

    def set_weights(self, weights: Mapping[str, float], log: Log) -> None:
        self.traffic.route(self.target_groups, weights)

    def release(self, *, restore: bool, log: Log) -> None:
        """Put the listener's default actions back as they were before the start (one ``modify_listener``),
        only while it still forwards to the experiment's target groups: not when a promotion moved it on,
        nor when the start died before it moved it. A failure raises :class:`AlbError` (the caller says
        what was kept)."""
        if not restore or not self.before:
            return
        forwarded = set(self.traffic.upstreams().values())
        if not forwarded & set(self.target_groups.values()):
            return
        log("give the front door's listener back its routing from before the experiment")
        arn = self.traffic.listener_arn
        aws_api.call(
            AlbError,
            f"modify listener {arn}",
            self.traffic.elbv2.modify_listener,
            ListenerArn=arn,
            DefaultActions=self.before,
        )


def target_group_of(handle: EnvironmentHandle) -> str:
    """The island's target group (the aws provider records it when a front door is declared)."""
    arn = handle.data.get("target_group_arn")
    if not isinstance(arn, str) or not arn:
        raise ExperimentError(
            f"{handle.env}: no TargetGroupArn recorded: the front door cannot forward to it"
        )
    return arn


def new_split(provider: Provider, manifest: Manifest, sha: str, dealer_dir: Path, log: Log) -> Split:
    """The splitter of a new experiment: the front door on ``aws`` (ensured: created on first need), else the
    local Dealer. ``aws`` without a front door is refused: nothing would route users to the variants."""
    if provider.kind != "aws":
        return LocalSplit(dealer_dir)
    if manifest.provider.front_door is None:
        raise ExperimentError(
            f"{manifest.provider.location}: an experiment on aws needs provider.front_door (front_door: "
            "{template: infra/front-door.yml} or {listener_arn: arn:...}): its listener splits the traffic"
        )
    from squals_action.providers.aws import AwsProvider
    from squals_action.providers.aws_front_door import FrontDoorStack

    if not isinstance(provider, AwsProvider):
        raise ExperimentError(f"provider kind aws is not the AWS provider ({type(provider).__name__})")
    log("ensure the front door")
    door = FrontDoorStack(provider, manifest.provider).ensure(manifest, sha)  # the start commit's front door
    assert manifest.experiment is not None
    return AlbSplit(listener_arn=door.listener_arn, url=door.url, unit=manifest.experiment.unit)


def split_of(doc: ExperimentState, unit: StickyUnit, default_dealer_dir: Path) -> Split:
    """The splitter a document recorded at its start (``unit``: the experiment's, for a weight change)."""
    traffic = doc.extra.get("traffic")
    if isinstance(traffic, dict) and traffic.get("kind") == "alb":
        try:
            return AlbSplit(
                listener_arn=str(traffic["listener_arn"]),
                url=str(traffic["url"]) if traffic.get("url") else None,
                unit=unit,
                target_groups={str(k): str(v) for k, v in dict(traffic["target_groups"]).items()},
                before=list(traffic.get("before") or []),
                since=doc.started_at,
                islands=island_names_of(doc),
            )
        except (KeyError, TypeError, ValueError, DealerError) as exc:
            raise ExperimentError(
                f"experiment {doc.id}: its recorded ALB traffic is unreadable: {exc}"
            ) from None
    dealer_dir = doc.extra.get("dealer_dir")
    return LocalSplit(Path(dealer_dir) if isinstance(dealer_dir, str) else default_dealer_dir)
