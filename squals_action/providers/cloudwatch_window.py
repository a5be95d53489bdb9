"""When CloudWatch can be read: windows on period boundaries that have matured, and the period to ask for.

CloudWatch is late. An Application Load Balancer publishes its metrics every 60 s, and a minute is complete
in CloudWatch about a minute after it ends (:data:`ALB_DELAY`); custom metrics sent with ``PutMetricData``
usually arrive within seconds, but are aggregated the same way. So the bake's read window, computed afresh
at each check by :func:`read_window`, holds only whole periods that began at or after the bake started and
ended at least ``delay`` before now. Until one whole period fits, the answer is :class:`NotYet` ("no data
yet", with the moment it becomes readable): a figure read through it is "no data", never a pass.

CloudWatch serves data at the metric's resolution for 3 hours (1/5/10/30 s for high-resolution custom
metrics), at 60 s for 15 days, 300 s for 63 days and 3600 s after that (:func:`grain_for`), and rounds a
request's start time down to that grain; windows are aligned to it so that nothing before ``since`` is
counted. :func:`period_for` asks for the whole window as one period when CloudWatch accepts it (then one
datapoint carries the window's exact Sum or p95, as a dashboard's "period = time range" does), else for
the grain.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

#: How long after a 60 s period ends its ALB figures are taken as complete in CloudWatch.
ALB_DELAY = 60.0
#: Storage resolutions a metric may have (seconds); 60 is the standard one.
RESOLUTIONS = (1, 5, 10, 30, 60)
#: Periods below a minute CloudWatch accepts; at or above a minute, any multiple of 60.
SHORT_PERIODS = (1, 5, 10, 20, 30)


@dataclass(frozen=True)
class Window:
    """``[start, end)`` in UTC, both on a period boundary."""

    start: datetime
    end: datetime

    @property
    def seconds(self) -> int:
        return int((self.end - self.start).total_seconds())

    def describe(self) -> str:
        return f"{_clock(self.start)}-{_clock(self.end)} UTC"


@dataclass(frozen=True)
class NotYet:
    """A window that has not matured: "no data yet" until ``ready_at``; never a pass."""

    reason: str
    ready_at: datetime


def utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError(f"a naive datetime {moment.isoformat()} cannot be placed in UTC")
    return moment.astimezone(UTC)


def _clock(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def _floor(moment: datetime, grain: int) -> datetime:
    epoch = int(moment.timestamp())
    return datetime.fromtimestamp(epoch - epoch % grain, UTC)


def _ceil(moment: datetime, grain: int) -> datetime:
    floored = _floor(moment, grain)
    return floored if floored == moment else floored + timedelta(seconds=grain)


def grain_for(start: datetime, now: datetime, resolution: int = 60) -> int:
    """The finest period CloudWatch still serves for data from ``start``: the metric's resolution within
    3 hours, then 60 s (15 days), 300 s (63 days), 3600 s."""
    age = (utc(now) - utc(start)).total_seconds()
    if age <= 3 * 3600 and resolution < 60:
        return resolution
    if age <= 15 * 86400:
        return 60
    return 300 if age <= 63 * 86400 else 3600


def read_window(
    now: datetime, since: datetime, *, delay: float = ALB_DELAY, resolution: int = 60
) -> Window | NotYet:
    """The window to read at ``now`` for what happened since ``since`` (the bake's or experiment's start).

    It starts at the first period boundary at or after ``since`` (a period that began earlier may hold
    traffic from before) and ends at the last boundary at least ``delay`` seconds before ``now`` (later
    periods may still be incomplete in CloudWatch). Before one whole period fits, it is :class:`NotYet`.
    """
    if resolution not in RESOLUTIONS:
        raise ValueError(f"resolution {resolution} s: expected one of {RESOLUTIONS}")
    now, since = utc(now), utc(since)
    grain = grain_for(since, now, resolution)
    start = _ceil(since, grain)
    end = _floor(now - timedelta(seconds=delay), grain)
    if end - start < timedelta(seconds=grain):
        ready = start + timedelta(seconds=grain + delay)
        return NotYet(
            f"no data yet: the first whole {grain} s period since {_clock(since)} UTC is readable from "
            f"{_clock(ready)} UTC (CloudWatch's delay {delay:g} s)",
            ready,
        )
    return Window(start, end)


def period_for(window: Window, now: datetime, resolution: int = 60) -> int:
    """The whole window when it is a period CloudWatch accepts for its age, else the window's grain."""
    grain = grain_for(window.start, now, resolution)
    span = window.seconds
    valid = span in SHORT_PERIODS if span < 60 else span % 60 == 0
    return span if valid and span % grain == 0 else grain
