"""Where an experiment splits the unit space when several run at once: its spec -> a Dealer layer slot.

The mechanism is the Dealer's (:mod:`squals_action.dealer.layers`): exclusive ranges within a layer,
independent layers, island-based experiments in one layer only. This module says which experiment gets
which range (the lowest free one of its ``share``; running experiments keep theirs, so their units never
move) and refuses, in one line naming the squals file's line, what cannot run. The slot is chosen in the
claim's state transaction (:func:`~squals_action.experiments.records.claim`) from the slots the other active
experiments recorded, so two racing starts cannot both take one range.
"""

from __future__ import annotations

from collections.abc import Sequence

from squals_action.dealer.interface import DealerError
from squals_action.dealer.layers import Slot, allocate, parse_slot
from squals_action.experiments.interface import ExperimentError
from squals_action.manifest.model import Experiment
from squals_action.state.interface import ExperimentState

#: ``extra.traffic.kind`` of an experiment placed on the project's Dealer.
LAYERS = "layers"


def layered(spec: Experiment) -> bool:
    """True when the spec asks for a place among other experiments (a layer, a share or app assignment)."""
    return spec.layer != "default" or spec.share != 100.0 or spec.assignment != "islands"


def slot_for(eid: str, spec: Experiment, running: Sequence[Slot]) -> Slot:
    """The new experiment's slot: the lowest free range of its share in its layer, beside ``running``.

    Refused in one line: no room left in the layer, or a second layer of island-based experiments (a
    request reaches one upstream, so a unit cannot be in two islands at once).
    """
    islands = {s.layer for s in running if s.islands}
    if spec.assignment == "islands" and islands - {spec.layer}:
        raise ExperimentError(
            f"{spec.location}: experiment {eid} sends units to islands in layer {spec.layer!r}, but layer "
            f"{sorted(islands)[0]!r} already does and a request reaches one upstream: use `assignment: app` "
            "or the same layer"
        )
    taken = [(s.low, s.high) for s in running if s.layer == spec.layer]
    try:
        low, high = allocate(taken, spec.share / 100.0, spec.layer)
    except DealerError as exc:
        raise ExperimentError(f"{spec.location}: experiment {eid}: {exc}") from exc
    return Slot(eid, spec.layer, low, high, dict(spec.split), spec.assignment == "islands")


def refuse_on_aws(spec: Experiment, provider_kind: str) -> None:
    """One line for a layered spec on aws, before anything is claimed.

    The front door's listener forwards to target groups by weight with target-group stickiness: it cannot
    hash units into a layer's ranges, and no Dealer stands in front of prod to tell the app its variants.
    """
    if layered(spec) and provider_kind == "aws":
        raise ExperimentError(
            f"{spec.location}: on aws an experiment takes the whole front door (the listener splits by "
            "weight, it cannot give an experiment a range of a layer nor tell the app its variant): remove "
            "experiment.layer, share and assignment"
        )


def slot_of(doc: ExperimentState) -> Slot | None:
    """The slot a layered experiment's document recorded at its claim (``None``: it is not layered)."""
    traffic = doc.extra.get("traffic")
    if not isinstance(traffic, dict) or traffic.get("kind") != LAYERS:
        return None
    try:
        return parse_slot(traffic.get("slot"))
    except (KeyError, TypeError, ValueError, AttributeError, DealerError) as exc:
        raise ExperimentError(f"experiment {doc.id}: its recorded layer slot is unreadable: {exc}") from None


def describe(slot: Slot) -> str:
    """``layer main 0-30 %, islands``: where an experiment splits, as status lines and reports say it."""
    how = "islands" if slot.islands else "app-side"
    return f"layer {slot.layer} {slot.low * 100:g}-{slot.high * 100:g} %, {how}"
