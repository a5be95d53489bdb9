"""What the Dealer routes to at one moment: upstreams, weights and the experiments placed in layers.

A routing is immutable and replaced whole on a switch, so a request that picked its upstream keeps it to the
end; :meth:`Routing.place` is a pure function of the unit and the routing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from yarl import URL

from squals_action.dealer.bucketing import normalise_weights
from squals_action.dealer.config import check_upstreams
from squals_action.dealer.fallback import fallbacks
from squals_action.dealer.layers import Placement, Slot, check_slots, outside, place


@dataclass(frozen=True)
class Routing:
    """Upstreams and weights at one moment; replaced whole, never mutated."""

    upstreams: Mapping[str, URL]
    weights: Mapping[str, float]
    #: Several experiments at once (:mod:`.layers`); units in none of their islands follow ``weights``.
    layers: tuple[Slot, ...] = ()
    # Each upstream's base URL as text, so a request's target is one string concatenation.
    bases: Mapping[str, str] = field(init=False, repr=False, compare=False)
    # The weights of units in no island-based experiment (all of them without layers).
    rest: Mapping[str, float] = field(init=False, repr=False, compare=False)
    # Where each upstream's refused requests go (dealer/fallback.py): computed once per switch.
    fallback: Mapping[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "bases", {k: str(v) for k, v in self.upstreams.items()})
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
