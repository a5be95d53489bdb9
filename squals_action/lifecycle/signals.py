"""What the bake asks at every check: BLUE's KPIs over this step's window, and the stop signals firing.

A :class:`KpiSource` is told when a step begins (:meth:`~KpiSource.begin`) and read at every check
(:meth:`~KpiSource.read`); each read gives BLUE's metrics over the step so far, each value or ``None`` with
the reason there is no data, BLUE's request count, and the alarms firing. Two sources:

* :class:`DealerSignals` -- the local Dealer's tallies, as differences from the tally taken when the step
  began (latency percentiles are the Dealer's current figures). It has no stop signals.
* :class:`CloudWatchSignals` -- BLUE's target group in ``AWS/ApplicationELB`` over
  :func:`~squals_action.providers.cloudwatch_window.read_window` from the step's start, and the squals
  file's alarms. CloudWatch is late (about a minute after a minute ends), so the window lags the bake: the
  last read (``final=True``) is *pending* until a matured window reaches the moment the bake ended, and the
  bake waits for it, at most :attr:`CloudWatchSignals.settle_limit` seconds (one period plus the delay, and
  a margin). Traffic keeps its split while it waits, so what the last window holds is still this step.

boto3 is only imported when the CloudWatch source first reads (through the reader).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from copy import copy
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Protocol

from squals_action.dealer.interface import VariantTally
from squals_action.dealer.layers import by_upstream
from squals_action.errors import SqualsError
from squals_action.lifecycle.kpi import metrics_since
from squals_action.lifecycle.machine import Env
from squals_action.manifest.model import NOWHERE, Location, Rollout
from squals_action.providers.cloudwatch_window import ALB_DELAY, NotYet, Window, read_window
from squals_action.providers.interface import EnvironmentHandle

if TYPE_CHECKING:
    from squals_action.providers.cloudwatch import CloudWatch


class SignalError(SqualsError):
    """A source could not be read (or set up for BLUE); the bake cannot judge what it cannot see."""


@dataclass(frozen=True, kw_only=True)
class Signals:
    """One read: BLUE's metrics over the step so far (``None`` = no data, ``missing`` says why), BLUE's
    request count, the alarms firing with the sentence for the report, and -- on a last read whose window
    has not matured -- why the judgement must wait."""

    metrics: Mapping[str, float | None]
    missing: Mapping[str, str] = field(default_factory=dict)
    requests: float | None = None
    firing: tuple[str, ...] = ()
    stop_reason: str | None = None
    pending: str | None = None


class KpiSource(Protocol):
    """Where the bake's figures and stop signals come from."""

    #: How long, at most, the bake's end may wait for a last window that covers the whole bake (seconds).
    settle_limit: float

    def begin(self, blue: Env) -> None:
        """A step begins now for ``blue``: later reads cover from here on."""
        ...

    def read(self, *, final: bool = False) -> Signals:
        """BLUE's figures since :meth:`begin`; ``final`` marks the bake's end (a window short of it is
        pending)."""
        ...

    def declared(self, rollout: Rollout) -> KpiSource:
        """This source watching what ``rollout`` declares: a command bound to a commit bakes under that
        commit's KPIs and alarms, not those of the squals file the project was opened with."""
        ...


class DealerSignals:
    """The local Dealer's tallies for BLUE, counted from the step's start; no alarms, nothing to wait for."""

    settle_limit = 0.0

    def __init__(self, tallies: Callable[[], Mapping[str, VariantTally]]) -> None:
        self.tallies = tallies
        self.blue = ""
        self.baseline: VariantTally | None = None

    def _tally(self) -> VariantTally | None:
        try:
            return by_upstream(self.tallies()).get(self.blue)  # its cells, when experiments are placed
        except SqualsError as exc:
            raise SignalError(f"cannot read the Dealer's tallies: {exc.one_line()}") from exc

    def begin(self, blue: Env) -> None:
        self.blue = blue.name
        self.baseline = self._tally()

    def read(self, *, final: bool = False) -> Signals:
        now = self._tally() or VariantTally(name=self.blue)
        metrics = metrics_since(now, self.baseline)
        requests = metrics["activations"]
        missing = {
            name: f"no data: BLUE {self.blue} served no request through the Dealer during this step"
            for name, value in metrics.items()
            if value is None
        }
        return Signals(metrics=metrics, missing=missing, requests=requests)

    def declared(self, rollout: Rollout) -> DealerSignals:
        """Itself: the Dealer's tallies hold every KPI, and there are no alarms to name."""
        return self


class CloudWatchSignals:
    """BLUE's target-group KPIs from CloudWatch over the step's matured window, and the declared alarms.

    ``target_group`` finds BLUE's target group ARN in its provider handle (the aws provider records the
    island stack's ``TargetGroupArn`` output as ``target_group_arn``); ``load_balancer_arn`` is the front
    door's load balancer or listener ARN. ``clock`` gives the wall time (UTC) the windows are computed from.
    """

    def __init__(
        self,
        reader: CloudWatch,
        load_balancer_arn: str,
        *,
        kpis: Sequence[str] = (),
        alarms: Sequence[str] = (),
        alarms_location: Location = NOWHERE,
        delay: float = ALB_DELAY,
        target_group: Callable[[EnvironmentHandle], str] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.reader = reader
        self.load_balancer_arn = load_balancer_arn
        self.kpis = tuple(kpis)
        self.alarms = tuple(alarms)
        self.alarms_location = alarms_location
        self.delay = delay
        self.target_group = target_group or _recorded_target_group
        self.clock = clock
        #: One 60 s period, the delay and a margin: by then a window reaching the bake's end has matured.
        self.settle_limit = 60.0 + delay + 30.0
        self.blue = ""
        self.arn = ""
        self.since: datetime | None = None
        self.ended: datetime | None = None

    def declared(self, rollout: Rollout) -> CloudWatchSignals:
        """A copy reading ``rollout``'s KPIs and alarms (the reader, load balancer and clock are kept)."""
        bound = copy(self)
        bound.kpis = tuple(k.metric for k in rollout.kpis)
        bound.alarms = tuple(rollout.alarms)
        bound.alarms_location = rollout.location
        return bound

    def begin(self, blue: Env) -> None:
        if not blue.handle:
            raise SignalError(f"BLUE {blue.name} has no provider handle recorded: no target group to read")
        try:
            handle = EnvironmentHandle.from_json(blue.handle)
            self.arn = self.target_group(handle)
        except SqualsError as exc:
            raise SignalError(exc.one_line()) from exc
        self.blue, self.since, self.ended = blue.name, self.clock(), None

    def read(self, *, final: bool = False) -> Signals:
        if self.since is None:
            raise SignalError("the CloudWatch source was read before a step began")
        now = self.clock()
        if final and self.ended is None:
            self.ended = now
        window = read_window(now, self.since, delay=self.delay)
        pending = None
        if self.ended is not None:
            reach = window.end if isinstance(window, Window) else None
            if reach is None or reach < self.ended:
                pending = _pending(window, self.ended, self.delay)
        try:
            figures = self.reader.target_group_kpis(
                {self.blue: self.arn},
                self.load_balancer_arn,
                window,
                kpis=(*self.kpis, "activations"),
                now=now,
            )[self.blue]
            states = self.reader.alarms(self.alarms, location=self.alarms_location) if self.alarms else None
        except SqualsError as exc:
            raise SignalError(exc.one_line()) from exc
        metrics = figures.metrics()
        for name in self.kpis:
            metrics.setdefault(name, None)
        missing = {
            name: figures.missing.get(name, f"no data: CloudWatch has no {name} for a target group")
            for name, value in metrics.items()
            if value is None
        }
        return Signals(
            metrics=metrics,
            missing=missing,
            requests=figures.get("activations"),
            firing=states.firing if states else (),
            stop_reason=states.stop_reason() if states else None,
            pending=pending,
        )


def _recorded_target_group(handle: EnvironmentHandle) -> str:
    arn = handle.data.get("target_group_arn")
    if not isinstance(arn, str) or not arn:
        raise SignalError(
            f"{handle.env}'s provider handle has no target_group_arn: its island template must output "
            "TargetGroupArn for CloudWatch to watch it"
        )
    return arn


def _pending(window: Window | NotYet, ended: datetime, delay: float) -> str:
    """Why the last read waits: the window that reaches the bake's end is not readable yet."""
    ready = _next_minute(ended) + timedelta(seconds=delay)
    if isinstance(window, NotYet):
        ready = max(ready, window.ready_at)
    return (
        f"waiting for CloudWatch: the window reaching the bake's end is readable from "
        f"{ready.strftime('%H:%M:%S')} UTC (delay {delay:g} s)"
    )


def _next_minute(moment: datetime) -> datetime:
    floored = moment.replace(second=0, microsecond=0)
    return floored if floored == moment else floored + timedelta(minutes=1)
