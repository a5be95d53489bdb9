"""What the lifecycle and the experiments see of a traffic splitter: protocols, errors and frozen results.

The splitter stands in front of the environments. :class:`Traffic` is what the lifecycle drives, with two
implementations behind it: the local Dealer daemon (``lifecycle.traffic.DealerTraffic``) and an ALB
listener (``dealer.alb.AlbTraffic``); ``tests/providers/test_traffic_contract.py`` runs both through the
same scenarios. :class:`Dealer` is the local daemon's admin client. Nothing here imports aiohttp or boto3,
so the CLI can import it at start-up.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from squals_action.errors import SqualsError

EMPTY_EVENTS: Mapping[str, int] = {}


class DealerError(SqualsError):
    """The Dealer could not be started, reached, or do what it was asked (bad weights, unknown variant...)."""


class NotMeasured(DealerError):
    """A splitter has no figures to give (no metric reader): "no data", never zeros that look like a pass."""


@dataclass(frozen=True)
class EventSums:
    """One event kind in one variant, as sums over units: the units that sent it, and of each unit's count
    ``c`` and value sum ``x`` (its events' values), with ``a`` the unit's requests: sum c, sum c², sum x,
    sum x², sum c·x, sum c·a, sum x·a. Means and ratios per unit (delta method) need nothing else."""

    units: float = 0.0
    count: float = 0.0
    count_sq: float = 0.0
    value: float = 0.0
    value_sq: float = 0.0
    count_value: float = 0.0
    count_acts: float = 0.0
    value_acts: float = 0.0


@dataclass(frozen=True)
class VariantTally:
    """What one variant has seen since the Dealer first started (persisted across restarts).

    ``errors`` is ``server_errors`` (the upstream answered 5xx) plus ``connection_errors`` (refused, reset or
    timed out: the Dealer answered 502/504 itself). Latencies are the upstream's time to response headers, in
    milliseconds, ``None`` until a first response arrived; they come from a fixed-size log histogram
    (about 1 % relative precision).
    """

    name: str
    units: int = 0
    activations: int = 0
    events: Mapping[str, int] = field(default_factory=lambda: EMPTY_EVENTS)
    errors: int = 0
    server_errors: int = 0
    connection_errors: int = 0
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None
    latency_p99_ms: float | None = None
    in_flight: int = 0
    #: of ``errors``, those of requests still in ``in_flight`` (their answer not done): not yet answered
    in_flight_errors: int = 0
    #: event -> units that sent it at least once (``events`` counts the events counted, within unit caps)
    event_units: Mapping[str, int] = field(default_factory=lambda: EMPTY_EVENTS)
    #: requests of the units that first came to this variant (``activations`` counts requests it served;
    #: they differ only after a switch moved units) and the sum of each unit's requests squared
    unit_activations: float = 0.0
    unit_activations_sq: float = 0.0
    event_sums: Mapping[str, EventSums] = field(default_factory=dict)
    #: the latency log histogram (bucket -> requests), so a reader can take percentiles over an interval
    latency_histogram: Mapping[int, int] = field(default_factory=dict)

    @property
    def answered(self) -> int:
        """Requests whose answer is done: the requests a KPI window judges (one in flight is neither an
        error nor a success yet)."""
        return self.activations - self.in_flight

    @property
    def answered_errors(self) -> int:
        """Errors of the :attr:`answered` requests, counted in the same step as their answers."""
        return self.errors - self.in_flight_errors

    @property
    def error_rate(self) -> float:
        """Errors per answered request (0.0 before any answer), the usual KPI."""
        return self.answered_errors / self.answered if self.answered else 0.0


@dataclass(frozen=True)
class DealerConfig:
    """How a Dealer starts: its upstreams (name -> base URL), their weights and how units are recognised.

    Weights are relative (percent is fine); a variant missing from ``weights`` gets 0. ``seed`` salts the
    bucketing so two experiments do not split the same units the same way. Ports 0 mean "any free port".
    The token protects the admin endpoint; an empty token makes :func:`start_dealer` generate one.
    ``unit_kind``/``unit_name`` mirror the manifest's ``StickyUnit`` (``kind``/``name``): a unit is the value
    of that cookie (set by the Dealer when absent) or of that request header (falling back to the cookie).
    """

    upstreams: Mapping[str, str]
    weights: Mapping[str, float]
    unit_kind: Literal["cookie", "header"] = "cookie"
    unit_name: str = "squals_unit"
    seed: str = "squals"
    host: str = "127.0.0.1"
    port: int = 0
    admin_port: int = 0
    token: str = ""
    connect_timeout: float = 5.0
    read_timeout: float = 60.0
    #: A client connection must send a request's headers within this many seconds (also the idle time a
    #: kept-alive connection may wait for its next request): a connection trickling bytes is closed.
    header_timeout: float = 10.0
    #: per event kind, how many events of it one unit may count; a kind not named counts once per unit
    event_caps: Mapping[str, int] = field(default_factory=dict)
    #: units (and unit events) the Dealer keeps per-unit state for; arrays are reserved at this size and
    #: memory is used as they fill (30-37 bytes per unit with its counters)
    max_units: int = 1 << 25
    #: a journal segment this large is compacted into a snapshot
    journal_bytes: int = 64 << 20
    shutdown_timeout: float = 10.0
    #: seconds a worker has to answer the supervisor's control message (tallies, health, an event), a
    #: compaction excepted; a worker that is alive but does not answer in time is an error, never zeros
    control_timeout: float = 10.0
    cookie_max_age: int = 365 * 24 * 3600
    #: Worker processes behind the public port (SO_REUSEPORT); 0 is not set: ``SQUALS_DEALER_WORKERS``, else
    #: the number of cores (docs/dealer.md, Processes).
    workers: int = 0


@dataclass(frozen=True)
class DealerStatus:
    """What a state directory says about its Dealer process, without touching the process.

    ``stale``: the pid file names a process that is gone or is not this Dealer; reported, never killed.
    """

    state: Literal["running", "stopped", "stale"]
    pid: int | None = None
    url: str | None = None
    admin_url: str | None = None
    detail: str = ""
    #: The admin protocol ``dealer.json`` says the running daemon speaks (``client.ADMIN_PROTOCOL``).
    protocol: int | None = None


@runtime_checkable
class Dealer(Protocol):
    """The traffic splitter as the lifecycle and the experiments use it."""

    @property
    def url(self) -> str:
        """Where users send traffic (``http://127.0.0.1:PORT``)."""
        ...

    def weights(self) -> Mapping[str, float]:
        """The current weights, one per upstream (0 for those that get no new units)."""
        ...

    def upstreams(self) -> Mapping[str, str]:
        """The current upstreams: variant name -> base URL."""
        ...

    def set_weights(self, weights: Mapping[str, float]) -> None:
        """Switch traffic; in-flight requests finish where they started. Raises DealerError on bad weights."""
        ...

    def set_upstreams(self, upstreams: Mapping[str, str], weights: Mapping[str, float] | None = None) -> None:
        """Replace the upstream set (and optionally the weights) in one atomic switch."""
        ...

    def tallies(self) -> Mapping[str, VariantTally]:
        """Per-variant tallies, including variants no longer routed to."""
        ...

    def record_event(
        self,
        event: str,
        *,
        unit: str | None = None,
        variant: str | None = None,
        count: int = 1,
        value: float = 0.0,
    ) -> None:
        """Count conversions (each worth ``value``) for a unit the Dealer assigned, within the event kind's
        per-unit cap (once by default), or directly for a variant (totals only)."""
        ...


class Traffic(Protocol):
    """A traffic splitter as the lifecycle drives it (the local Dealer, or an ALB listener)."""

    def url(self) -> str | None:
        """Where users send traffic, or ``None`` while nothing routes."""
        ...

    def upstream(self, url: str | None, handle: Mapping[str, Any] | None) -> str | None:
        """Where this splitter reaches an environment recorded with ``url`` and provider ``handle`` (its
        JSON form): the local Dealer proxies to the URL, an ALB forwards to the handle's target group.
        ``None``: the environment has nothing to route to."""
        ...

    def route(self, upstreams: Mapping[str, str], weights: Mapping[str, float]) -> str:
        """Switch to exactly these upstreams and weights in one step (starting the splitter if needed).

        ``upstreams`` maps a name to where it is reached (a base URL, a target group ARN); ``weights`` are
        relative, a name missing from them gets 0. Returns :meth:`url`.
        """
        ...

    def routing(self) -> Mapping[str, float]:
        """The weights in force, as percentages of new traffic summing to 100 (empty when nothing routes)."""
        ...

    def drain(self, names: list[str], timeout: float = 30.0) -> str:
        """Let requests to ``names`` finish before they are destroyed; returns what was done, in one line.

        Raises :class:`DealerError` when that cannot be established within ``timeout`` seconds.
        """
        ...

    def tallies(self) -> Mapping[str, VariantTally]:
        """Per-variant tallies; raises :class:`NotMeasured` when the splitter has no source of figures."""
        ...

    def stop(self) -> bool:
        """Stop the splitter's own process; ``True`` when one was running. Never deletes shared routing."""
        ...

    def close(self) -> str | None:
        """Send users to no environment any more, before ``down`` destroys them all: the local Dealer stops,
        a listener answers 503 (AWS deletes no target group a listener forwards to). Says what was done;
        ``None`` when nothing was routing."""
        ...


def percentages(weights: Mapping[str, float]) -> dict[str, float]:
    """Relative weights as percentages summing to 100 (empty when they sum to 0): how routing is compared."""
    total = sum(weights.values())
    if total <= 0:
        return {}
    return {name: 100.0 * value / total for name, value in weights.items()}
