"""The Dealer: a local traffic splitter with sticky weighted assignment and per-variant tallies.

Light to import (no aiohttp, no requests): the server lives in ``server`` and is imported by the daemon only.
"""

from __future__ import annotations

from squals_action.dealer.client import DealerClient
from squals_action.dealer.daemon import (
    connect_dealer,
    dealer_status,
    restart_dealer,
    start_dealer,
    stop_dealer,
)
from squals_action.dealer.interface import (
    Dealer,
    DealerConfig,
    DealerError,
    DealerStatus,
    NotMeasured,
    Traffic,
    VariantTally,
)

__all__ = [
    "Dealer",
    "DealerClient",
    "DealerConfig",
    "DealerError",
    "DealerStatus",
    "NotMeasured",
    "Traffic",
    "VariantTally",
    "connect_dealer",
    "dealer_status",
    "restart_dealer",
    "start_dealer",
    "stop_dealer",
]
