"""What the Dealer routes to at one moment (:class:`Routing`) and how a unit is assigned under it.

A routing is immutable and replaced whole on a switch, so a request that picked its upstream keeps it to the
end. :class:`Assigner` remembers each unit's (variant, unit key) for the routing in force: both are pure
functions of the unit and the routing, so the memo changes no answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from yarl import URL

from squals_action.dealer.bucketing import assign, normalise_weights, unit_key
from squals_action.dealer.config import check_upstreams

# Units whose (variant, unit key) is remembered for the current routing; cleared when full or on a switch.
_ASSIGN_CACHE = 65_536


@dataclass(frozen=True)
class Routing:
    """Upstreams and weights at one moment; replaced whole, never mutated."""

    upstreams: Mapping[str, URL]
    weights: Mapping[str, float]
    # Each upstream's base URL as text, so a request's target is one string concatenation.
    bases: Mapping[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "bases", {k: str(v) for k, v in self.upstreams.items()})

    def to_json(self) -> dict[str, Any]:
        return {
            "upstreams": {k: str(v) for k, v in self.upstreams.items()},
            "weights": dict(self.weights),
        }


def make_routing(upstreams: Mapping[str, str], weights: Mapping[str, float]) -> Routing:
    checked = check_upstreams(upstreams)
    return Routing(
        upstreams={k: URL(v) for k, v in checked.items()},
        weights=normalise_weights(weights, tuple(checked)),
    )


class Assigner:
    """A unit's variant under a routing and its unit key, remembered until the routing changes.

    Remembering saves three keyed hashes and two logarithms per request of a returning unit.
    """

    def __init__(self, seed: str) -> None:
        self._seed = seed
        self._memo: dict[str, tuple[str, int]] = {}  # unit -> (variant, unit key) under _for
        self._for: Routing | None = None

    def __call__(self, unit: str, routing: Routing) -> tuple[str, int]:
        if routing is not self._for:
            self._memo.clear()
            self._for = routing
        hit = self._memo.get(unit)
        if hit is None:
            if len(self._memo) >= _ASSIGN_CACHE:
                self._memo.clear()
            hit = self._memo[unit] = (assign(unit, routing.weights, self._seed), unit_key(unit))
        return hit
