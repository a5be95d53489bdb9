"""What the Dealer routes to at one moment: upstreams, weights and the experiments placed in layers.

A routing is immutable and replaced whole on a switch, so a request that picked its upstream keeps it to the
end; :meth:`Routing.place` is a pure function of the unit and the routing. :class:`Assigner` remembers each
unit's (placement, unit key) for the routing in force: both are pure, so the memo changes no answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from yarl import URL

from squals_action.dealer.bucketing import normalise_weights, unit_key
from squals_action.dealer.config import check_upstreams
from squals_action.dealer.fallback import fallbacks
from squals_action.dealer.layers import Placement, Slot, check_slots, outside, place
from squals_action.dealer.upstream import Origin

# Units whose (placement, unit key) is remembered for the current routing; cleared when full or on a switch.
_ASSIGN_CACHE = 65_536


@dataclass(frozen=True)
class Routing:
    """Upstreams and weights at one moment; replaced whole, never mutated."""

    upstreams: Mapping[str, URL]
    weights: Mapping[str, float]
    #: Several experiments at once (:mod:`.layers`); units in none of their islands follow ``weights``.
    layers: tuple[Slot, ...] = ()
    # Where each upstream's requests go (host, port, path prefix, Host header): parsed once per switch.
    origins: Mapping[str, Origin] = field(init=False, repr=False, compare=False)
    # The weights of units in no island-based experiment (all of them without layers).
    rest: Mapping[str, float] = field(init=False, repr=False, compare=False)
    # Where each upstream's refused requests go (dealer/fallback.py): computed once per switch.
    fallback: Mapping[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "origins", {k: Origin.of(v) for k, v in self.upstreams.items()})
        object.__setattr__(self, "rest", outside(self.weights, self.layers) if self.layers else self.weights)
        object.__setattr__(self, "fallback", fallbacks(self.weights))

    def to_json(self) -> dict[str, Any]:
        layers = {"layers": [s.to_json() for s in self.layers]} if self.layers else {}
        return {
            "upstreams": {k: str(v) for k, v in self.upstreams.items()},
            "weights": dict(self.weights),
            **layers,
        }

    def place(self, unit: str, seed: str) -> Placement:
        """The unit's upstream, and the cell it is tallied in: by the layers and the weights."""
        return place(unit, self.layers, self.rest, seed)


def make_routing(upstreams: Mapping[str, str], weights: Mapping[str, float], layers: Any = ()) -> Routing:
    checked = check_upstreams(upstreams)
    return Routing(
        upstreams={k: URL(v) for k, v in checked.items()},
        weights=normalise_weights(weights, tuple(checked)),
        layers=check_slots(list(layers), checked),
    )


class Assigner:
    """A unit's placement under a routing and its unit key, remembered until the routing changes.

    Remembering saves three keyed hashes and two logarithms per request of a returning unit.
    """

    def __init__(self, seed: str) -> None:
        self._seed = seed
        self._memo: dict[str, tuple[Placement, int]] = {}  # unit -> (placement, unit key) under _for
        self._for: Routing | None = None

    def __call__(self, unit: str, routing: Routing) -> tuple[Placement, int]:
        if routing is not self._for:
            self._memo.clear()
            self._for = routing
        hit = self._memo.get(unit)
        if hit is None:
            if len(self._memo) >= _ASSIGN_CACHE:
                self._memo.clear()
            hit = self._memo[unit] = (routing.place(unit, self._seed), unit_key(unit))
        return hit
