"""The local Dealer daemon behind the lifecycle's :class:`~squals_action.dealer.interface.Traffic` protocol.

:class:`DealerTraffic` starts the daemon on first use and finds it again in later CLI commands through its
state directory. The protocol itself lives in ``dealer.interface`` next to the ALB implementation's
(``dealer.alb``); it is re-exported here for the engine.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from squals_action.dealer.interface import DealerError, Traffic, VariantTally, percentages
from squals_action.dealer.layers import island_upstreams
from squals_action.manifest.model import StickyUnit

if TYPE_CHECKING:
    from squals_action.dealer.client import DealerClient

__all__ = ["DealerTraffic", "Traffic"]


class DealerTraffic:
    """The local Dealer daemon of one project, kept in ``state_dir`` (default ``<repo>/.squals/dealer``)."""

    def __init__(self, state_dir: Path, unit: StickyUnit | None = None, seed: str = "squals") -> None:
        self.state_dir = Path(state_dir)
        self.unit = unit or StickyUnit()
        self.seed = seed

    def _client(self) -> DealerClient | None:
        from squals_action.dealer.daemon import connect_dealer, dealer_status

        if dealer_status(self.state_dir).state != "running":
            return None
        return connect_dealer(self.state_dir)

    def url(self) -> str | None:
        from squals_action.dealer.daemon import dealer_status

        status = dealer_status(self.state_dir)
        return status.url if status.state == "running" else None

    def upstream(self, url: str | None, handle: Mapping[str, Any] | None) -> str | None:
        """The Dealer proxies to the environment's URL."""
        return url

    def route(self, upstreams: Mapping[str, str], weights: Mapping[str, float]) -> str:
        """Switch the Dealer to these environments and weights (started on first use). The islands of the
        experiments placed on it are none of the switch's business: the Dealer keeps them (``PUT /upstreams``)
        in the same step, so a switch racing an experiment's start or end neither fails nor revives it."""
        from squals_action.dealer.daemon import start_dealer
        from squals_action.dealer.interface import DealerConfig

        client = self._client()
        if client is None:
            client = start_dealer(
                DealerConfig(
                    upstreams=dict(upstreams),
                    weights=dict(weights),
                    unit_kind=self.unit.kind,
                    unit_name=self.unit.name,
                    seed=self.seed,
                ),
                self.state_dir,
            )
        else:
            try:
                client.set_upstreams(dict(upstreams), dict(weights))
            finally:
                client.close()
        return str(client.url)

    def routing(self) -> Mapping[str, float]:
        """The environments' shares (the islands of placed experiments have none: their slots send units)."""
        client = self._client()
        if client is None:
            return {}
        try:
            _, weights, plan = client.plan()
        finally:
            client.close()
        placed = island_upstreams(plan)
        return percentages({k: w for k, w in weights.items() if k not in placed})

    def drain(self, names: list[str], timeout: float = 30.0) -> str:
        client = self._client()
        if client is None:
            return "the Dealer is not running: no request in flight"
        try:
            client.wait_drained(names, timeout=timeout)
        finally:
            client.close()
        return f"no request in flight to {', '.join(names) or 'nothing'}"

    def tallies(self) -> Mapping[str, VariantTally]:
        client = self._client()
        if client is None:
            return {}
        try:
            return dict(client.tallies())
        finally:
            client.close()

    def _running(self) -> DealerClient:
        client = self._client()
        if client is None:
            raise DealerError(f"the Dealer of {self.state_dir} is not running: no fault can be injected")
        return client

    def set_faults(self, faults: Mapping[str, Mapping[str, Any]]) -> None:
        """Put exactly these faults in force on the Dealer (chaos tests; ``{}`` clears them)."""
        client = self._running()
        try:
            client.set_faults(faults)
        finally:
            client.close()

    def injected(self, name: str) -> Mapping[str, int]:
        """What the faults on ``name`` did since they were set: requests, delayed, aborted."""
        client = self._running()
        try:
            counts = client.faults().get("injected", {}).get(name, {})
        finally:
            client.close()
        return {str(k): int(v) for k, v in counts.items()}

    def close(self) -> str | None:
        return "Dealer stopped" if self.stop() else None

    def stop(self) -> bool:
        from squals_action.dealer.daemon import stop_dealer

        try:
            return stop_dealer(self.state_dir).state == "running"
        except DealerError:
            return False
