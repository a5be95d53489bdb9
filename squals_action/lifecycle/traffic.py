"""The lifecycle's view of traffic: route these upstreams with these weights, read tallies, stop.

:class:`Traffic` is what the engine needs from a traffic splitter, nothing more; :class:`DealerTraffic` is
the local Dealer daemon behind it (started on first use, found again by later CLI commands through its state
directory). Keeping the engine on this small protocol lets an ALB-backed splitter slot in later.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from squals_action.dealer.interface import DealerError, VariantTally
from squals_action.manifest.model import StickyUnit

if TYPE_CHECKING:
    from squals_action.dealer.client import DealerClient


class Traffic(Protocol):
    """A traffic splitter as the lifecycle drives it."""

    def url(self) -> str | None:
        """Where users send traffic, or ``None`` while nothing routes."""
        ...

    def route(self, upstreams: Mapping[str, str], weights: Mapping[str, float]) -> str:
        """Switch to exactly these upstreams and weights in one step (starting the splitter if needed)."""
        ...

    def drain(self, names: list[str], timeout: float = 30.0) -> None:
        """Wait until no request is in flight to ``names`` (before destroying them)."""
        ...

    def tallies(self) -> Mapping[str, VariantTally]:
        """Per-variant tallies (empty when nothing routes)."""
        ...

    def stop(self) -> bool:
        """Stop the splitter; ``True`` when one was running."""
        ...


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

    def route(self, upstreams: Mapping[str, str], weights: Mapping[str, float]) -> str:
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

    def drain(self, names: list[str], timeout: float = 30.0) -> None:
        client = self._client()
        if client is None:
            return
        try:
            client.wait_drained(names, timeout=timeout)
        finally:
            client.close()

    def tallies(self) -> Mapping[str, VariantTally]:
        client = self._client()
        if client is None:
            return {}
        try:
            return dict(client.tallies())
        finally:
            client.close()

    def stop(self) -> bool:
        from squals_action.dealer.daemon import stop_dealer

        try:
            return stop_dealer(self.state_dir).state == "running"
        except DealerError:
            return False
