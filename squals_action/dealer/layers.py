"""Several experiments at once on one Dealer: layers of the unit space, as pure functions.

Each layer hashes a unit to a point in [0, 1) with its own key (the layer's name), so two layers are
independent. An experiment owns a range ``[low, high)`` of its layer: a unit whose point falls in it is in
the experiment, and ranges in one layer never overlap, so a unit is in at most one experiment per layer.
Inside its range an experiment assigns the unit to a variant by the weighted rendezvous hash of
:mod:`.bucketing`, keyed by ``<layer>/<experiment>`` (independent of the range's point, so every variant
gets its share of the range).

A request reaches one upstream only, so island-based experiments (each variant an island, the upstream
``<experiment>.<variant>``) may live in one layer only: their units go to their variant's island, every
other unit where the Dealer's weights send it (prod, with its blue/green split). Experiments of the other
layers are app-side: the Dealer tells the app the unit's variants in the request header
``X-Squals-Assignments`` (``exp-b=b1, exp-c=c2``).

The Dealer's tally book keeps one variant per unit, so a unit is tallied in one **cell**: its upstream and the
app-side variants it is in, ``green+exp-c.c2`` (a unit in no app-side experiment: its upstream's name alone,
as without layers). Cells hold disjoint units, so every count and sum of squares adds up across them:
:func:`experiment_tallies` sums the cells holding ``<experiment>.<variant>`` into that variant's tally, and
each experiment decides on its own units.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import astuple, dataclass, replace
from itertools import pairwise
from typing import Any

from squals_action.dealer.bucketing import assign, normalise_weights, unit_hash
from squals_action.dealer.interface import DealerError, EventSums, VariantTally
from squals_action.dealer.latency import percentiles_since

ASSIGNMENTS_HEADER = "X-Squals-Assignments"
CELL_SEPARATOR = "+"
#: Distinct cells a plan may produce: the tally book's variant index is one byte.
MAX_CELLS = 255
DEFAULT_LAYER = "default"
_LAYER_KEY = "squals-layer"
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")


class SlotConflict(DealerError):
    """Slots that are each well-formed but cannot be placed together (overlapping ranges, a second layer of
    islands, one experiment twice, too many cells): the per-slot admin routes answer it ``409``."""


@dataclass(frozen=True)
class Slot:
    """One experiment's place: its layer, the range of the layer it owns, its variants' weights, and
    whether its variants are islands (upstreams ``<experiment>.<variant>``) or assigned app-side."""

    experiment: str
    layer: str
    low: float
    high: float
    weights: Mapping[str, float]
    islands: bool = False

    def key(self, variant: str) -> str:
        """The tally (and, for islands, the upstream) name of one of this experiment's variants."""
        return f"{self.experiment}.{variant}"

    def to_json(self) -> dict[str, Any]:
        return {
            "experiment": self.experiment,
            "layer": self.layer,
            "range": [self.low, self.high],
            "weights": dict(self.weights),
            "islands": self.islands,
        }


@dataclass(frozen=True)
class Placement:
    """Where one unit goes: the upstream it is sent to, the tally names it counts under, and the header
    value telling the app its app-side variants (``None`` when it has none)."""

    upstream: str
    tallies: tuple[str, ...]
    header: str | None

    @property
    def cell(self) -> str:
        """The name the unit is tallied under: its upstream, then its app-side variants."""
        return CELL_SEPARATOR.join(self.tallies)


def layer_point(unit: str, layer: str) -> float:
    """The unit's point in [0, 1) of ``layer``: a keyed hash, independent from one layer name to another."""
    return unit_hash(_LAYER_KEY, layer, unit)


def place(unit: str, slots: Sequence[Slot], weights: Mapping[str, float], seed: str) -> Placement:
    """The unit's upstream, tallies and assignment header under ``slots`` (checked by :func:`check_slots`).

    A unit in no island-based experiment goes where ``weights`` send it (the upstreams outside every
    experiment: prod), by the same hash as without layers: with no slots this is the Dealer's plain routing.
    """
    if not slots:  # the common case, on every new unit's first request: no lists, no joins
        name = assign(unit, weights, seed)
        return Placement(name, (name,), None)
    upstream = ""
    tallies: list[str] = []
    told: list[str] = []
    points: dict[str, float] = {}
    for slot in slots:
        point = points.get(slot.layer)
        if point is None:
            point = points[slot.layer] = layer_point(unit, slot.layer)
        if not slot.low <= point < slot.high:
            continue
        variant = assign(unit, slot.weights, f"{slot.layer}/{slot.experiment}")
        tallies.append(slot.key(variant))
        if slot.islands:
            upstream = slot.key(variant)
        else:
            told.append(f"{slot.experiment}={variant}")
    if not upstream:
        upstream = assign(unit, weights, seed)
        tallies.insert(0, upstream)
    else:  # the island's own tally is the upstream's: first, as the request's main counter
        tallies.insert(0, tallies.pop(tallies.index(upstream)))
    return Placement(upstream, tuple(tallies), ", ".join(told) or None)


def check_slots(raw: Any, upstreams: Iterable[str]) -> tuple[Slot, ...]:
    """Parse and check a plan (a JSON list of slots); every refusal is one line naming the slot and field.

    Refused: overlapping ranges in a layer, ranges outside [0, 1], island-based experiments in two layers
    (a request reaches one upstream only), an island variant missing from ``upstreams``.
    """
    if not isinstance(raw, list):
        raise DealerError("layers must be a list of {experiment, layer, range, weights, islands}")
    known = set(upstreams)
    slots: list[Slot] = []
    for index, item in enumerate(raw):
        where = f"layers[{index}]"
        try:
            slot = parse_slot(item)
        except (KeyError, TypeError, ValueError) as exc:
            raise DealerError(
                f"{where}: expected {{experiment, layer, range: [low, high], weights}}: {exc}"
            ) from exc
        except DealerError as exc:
            raise DealerError(f"{where} ({item.get('experiment')!r}): {exc}") from exc
        if slot.islands:
            missing = sorted(slot.key(v) for v in slot.weights if slot.key(v) not in known)
            if missing:
                raise DealerError(f"{where}: island-based variants need upstreams {', '.join(missing)}")
        slots.append(slot)
    names = [s.experiment for s in slots]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise SlotConflict(f"layers: experiment {', '.join(twice)} is placed twice")
    island_layers = sorted({s.layer for s in slots if s.islands})
    if len(island_layers) > 1:
        raise SlotConflict(
            f"island-based experiments in layers {', '.join(island_layers)}: a request reaches one upstream, "
            "so only one layer can send units to islands (make the others app-side)"
        )
    app_layers: dict[str, int] = {}
    for slot in slots:
        if not slot.islands:
            app_layers[slot.layer] = app_layers.get(slot.layer, 1) + len(slot.weights)
    cells = len(known)
    for count in app_layers.values():
        cells *= count
    if cells > MAX_CELLS:
        raise SlotConflict(
            f"layers: up to {cells} distinct tallies (upstreams x the app-side layers' variants), the Dealer "
            f"keeps at most {MAX_CELLS}: fewer app-side experiments or variants"
        )
    by_layer: dict[str, list[Slot]] = {}
    for slot in slots:
        by_layer.setdefault(slot.layer, []).append(slot)
    for layer, members in by_layer.items():
        members.sort(key=lambda s: s.low)
        for before, after in pairwise(members):
            if after.low < before.high:
                raise SlotConflict(
                    f"layer {layer!r}: {before.experiment} [{before.low:g}, {before.high:g}) and "
                    f"{after.experiment} [{after.low:g}, {after.high:g}) overlap: a unit would be in both"
                )
    return tuple(slots)


def with_slot(slots: Sequence[Slot], experiment: str, raw: Any, upstreams: Iterable[str]) -> tuple[Slot, ...]:
    """The plan ``slots`` with ``experiment``'s slot added (last), or replaced in place, by ``raw``
    (``Slot.to_json`` without the name, or naming the same experiment); checked against the others
    (:class:`SlotConflict`)."""
    if not isinstance(raw, dict):
        raise DealerError(f"slot {experiment!r}: expected {{layer, range: [low, high], weights, islands}}")
    named = raw.get("experiment", experiment)
    if named != experiment:
        raise DealerError(f"slot {experiment!r}: its body names experiment {named!r}")
    try:
        slot = parse_slot({**raw, "experiment": experiment})
    except (KeyError, TypeError, ValueError) as exc:
        raise DealerError(
            f"slot {experiment!r}: expected {{layer, range: [low, high], weights, islands}}: {exc}"
        ) from exc
    except DealerError as exc:
        raise DealerError(f"slot {experiment!r}: {exc}") from exc
    # a replaced slot keeps its place: the order of the slots is the order of a cell's names
    placed = [slot if s.experiment == experiment else s for s in slots]
    if all(s.experiment != experiment for s in slots):
        placed.append(slot)
    return check_slots([s.to_json() for s in placed], upstreams)


def island_upstreams(slots: Sequence[Slot]) -> set[str]:
    """The upstreams the island-based experiments of a plan send units to (``<experiment>.<variant>``)."""
    return {slot.key(v) for slot in slots if slot.islands for v in slot.weights}


def outside(weights: Mapping[str, float], slots: Sequence[Slot]) -> dict[str, float]:
    """The weights of the units in no island-based experiment: every upstream but the islands (prod's)."""
    islands = island_upstreams(slots)
    rest = {name: w for name, w in weights.items() if name not in islands}
    if not any(rest.values()):
        raise DealerError(
            "units outside the experiments' ranges need an upstream with a weight above 0 that is no "
            "experiment's island (prod)"
        )
    return rest


def parse_slot(item: Any) -> Slot:
    """One slot of a plan as JSON (``Slot.to_json``); malformed: ``KeyError``/``TypeError``/``ValueError``,
    out of bounds: :class:`DealerError`."""
    if not isinstance(item, dict):
        raise TypeError("a slot must be an object")
    experiment, layer = str(item["experiment"]), str(item.get("layer", DEFAULT_LAYER))
    for what, name in (("experiment", experiment), ("layer", layer)):
        if not name or len(name) > 64 or not set(name) <= _NAME_CHARS:
            raise DealerError(f"{what} name {name!r} must be 1-64 letters, digits, '-' or '_'")
    low, high = (float(x) for x in item["range"])
    if not (math.isfinite(low) and math.isfinite(high) and 0.0 <= low < high <= 1.0):
        raise DealerError(f"range [{low:g}, {high:g}) must lie in [0, 1] with low < high")
    raw_weights = item["weights"]
    if not isinstance(raw_weights, dict):
        raise TypeError("weights must be an object {variant: weight}")
    islands = item.get("islands", False)
    if not isinstance(islands, bool):
        raise TypeError("islands must be true or false")
    weights = normalise_weights(raw_weights, tuple(str(v) for v in raw_weights))
    for variant in weights:
        if not variant or not set(variant) <= _NAME_CHARS | {"."}:
            raise DealerError(f"variant name {variant!r} must be letters, digits, '-', '_' or '.'")
    return Slot(experiment, layer, low, high, weights, islands)


def allocate(
    taken: Sequence[tuple[float, float]], share: float, layer: str = DEFAULT_LAYER
) -> tuple[float, float]:
    """The first free range of width ``share`` in a layer whose ranges ``taken`` are owned already.

    Running experiments keep their ranges (their units never move); a new one gets the lowest gap wide
    enough, or a one-line refusal saying what is free.
    """
    if not 0.0 < share <= 1.0:
        raise DealerError(f"an experiment's share of layer {layer!r} must be in (0, 100 %], got {share:g}")
    cursor = 0.0
    free = 0.0
    for low, high in sorted(taken):
        if low - cursor >= share - 1e-12:
            return cursor, cursor + share
        free = max(free, low - cursor)
        cursor = max(cursor, high)
    if 1.0 - cursor >= share - 1e-12:
        return cursor, min(1.0, cursor + share)
    free = max(free, 1.0 - cursor)
    raise DealerError(
        f"layer {layer!r} has no free {share:.0%} for another experiment (largest free range {free:.0%}): "
        "stop one, use a smaller share or another layer"
    )


def experiment_tallies(tallies: Mapping[str, VariantTally], experiment: str) -> dict[str, VariantTally]:
    """One experiment's tallies under its variants' own names: the sum of the cells holding each variant,
    its own units and nobody else's (what its tick decides on)."""
    prefix = f"{experiment}."
    parts: dict[str, list[VariantTally]] = {}
    for cell, tally in tallies.items():
        for member in cell.split(CELL_SEPARATOR):
            if member.startswith(prefix):
                parts.setdefault(member[len(prefix) :], []).append(tally)
    return {variant: _summed(variant, cells) for variant, cells in parts.items()}


def by_upstream(tallies: Mapping[str, VariantTally]) -> dict[str, VariantTally]:
    """Everything each upstream served, its cells summed (``green`` and ``green+exp-c.c1`` are both GREEN's):
    what a bake, ``squals status`` and the costs' traffic shares read (without layers: the tallies as they
    are)."""
    cells: dict[str, list[VariantTally]] = {}
    for cell, tally in tallies.items():
        cells.setdefault(cell.split(CELL_SEPARATOR, 1)[0], []).append(tally)
    return {upstream: _summed(upstream, parts) for upstream, parts in cells.items()}


def _summed(name: str, cells: Sequence[VariantTally]) -> VariantTally:
    """Tallies of disjoint units added up. Percentiles do not add, latency histograms do: the percentiles
    of the summed histogram; without histograms (an older Dealer's tallies) ``None``, so a guardrail says
    the latency was not measured, never a made-up figure."""
    if len(cells) == 1:
        return replace(cells[0], name=name)
    events: dict[str, int] = {}
    event_units: dict[str, int] = {}
    event_sums: dict[str, EventSums] = {}
    histogram: dict[int, int] = {}
    for tally in cells:
        for bucket, count in tally.latency_histogram.items():
            histogram[bucket] = histogram.get(bucket, 0) + count
        for kind, count in tally.events.items():
            events[kind] = events.get(kind, 0) + count
        for kind, units in tally.event_units.items():
            event_units[kind] = event_units.get(kind, 0) + units
        for kind, sums in tally.event_sums.items():
            before = event_sums.get(kind, EventSums())
            event_sums[kind] = EventSums(
                *(a + b for a, b in zip(astuple(before), astuple(sums), strict=True))
            )
    p50, p95, p99 = percentiles_since(histogram, {})
    return VariantTally(
        name=name,
        units=sum(t.units for t in cells),
        activations=sum(t.activations for t in cells),
        events=events,
        errors=sum(t.errors for t in cells),
        server_errors=sum(t.server_errors for t in cells),
        connection_errors=sum(t.connection_errors for t in cells),
        in_flight=sum(t.in_flight for t in cells),
        in_flight_errors=sum(t.in_flight_errors for t in cells),
        event_units=event_units,
        unit_activations=sum(t.unit_activations for t in cells),
        unit_activations_sq=sum(t.unit_activations_sq for t in cells),
        event_sums=event_sums,
        latency_histogram=histogram,
        latency_p50_ms=p50,
        latency_p95_ms=p95,
        latency_p99_ms=p99,
    )


def parse_header(value: str) -> dict[str, str]:
    """``X-Squals-Assignments`` as the app reads it: experiment -> variant (what an app library does)."""
    out: dict[str, str] = {}
    for part in value.split(","):
        experiment, sep, variant = part.strip().partition("=")
        if sep and experiment and variant:
            out[experiment] = variant
    return out
