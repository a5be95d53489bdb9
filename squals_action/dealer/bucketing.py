"""Deterministic sticky assignment of units to variants: weighted rendezvous hashing.

Each (unit, variant) pair gets a uniform number ``h`` in (0, 1) from a keyed hash; the unit goes to the
variant with the smallest ``-ln(h) / weight``. That minimum of exponentials lands on variant ``i`` with
probability exactly ``w_i / sum(w)``, needs no stored assignment (a unit keeps its variant for as long as the
weights do), and moves as few units as possible when weights change: raising a variant's weight only pulls
units towards it, so 50/50 -> 60/40 moves the 10 % that must move and nobody else. Adding or removing a
variant only moves the units that go to, or came from, that variant, whatever the order of the variants.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping

from squals_action.dealer.interface import DealerError

_SCALE = 1.0 / float(1 << 53)


def unit_hash(seed: str, variant: str, unit: str) -> float:
    """A uniform number in (0, 1) for this (seed, variant, unit); stable across processes and versions."""
    digest = hashlib.blake2b(
        unit.encode("utf-8", "surrogatepass"), digest_size=8, key=seed.encode()[:64], person=_person(variant)
    ).digest()
    return ((int.from_bytes(digest, "big") >> 11) + 0.5) * _SCALE


def _person(variant: str) -> bytes:
    """blake2b's personalisation is at most 16 bytes: long names are folded through a hash first."""
    raw = variant.encode()
    return raw if len(raw) <= 16 else hashlib.blake2b(raw, digest_size=16).digest()


def unit_key(unit: str) -> int:
    """A 64-bit identity of a unit for distinct counting (independent of the seed and the weights)."""
    digest = hashlib.blake2b(unit.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def normalise_weights(weights: Mapping[str, float], names: tuple[str, ...]) -> dict[str, float]:
    """Check weights against the upstream names: finite, >= 0, known names, at least one positive.

    Returns one weight per name (0.0 for names not given), in the order of ``names``.
    """
    unknown = sorted(set(weights) - set(names))
    if unknown:
        raise DealerError(
            f"weights name unknown upstream(s) {', '.join(unknown)}; upstreams: {', '.join(names)}"
        )
    out: dict[str, float] = {}
    for name in names:
        value = weights.get(name, 0.0)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise DealerError(f"weight of {name!r} must be a number, got {value!r}")
        value = float(value)
        if not math.isfinite(value) or value < 0:
            raise DealerError(f"weight of {name!r} must be a finite number >= 0, got {value!r}")
        out[name] = value
    if not any(out.values()):
        raise DealerError("at least one upstream needs a weight above 0")
    return out


def assign(unit: str, weights: Mapping[str, float], seed: str) -> str:
    """The variant a unit belongs to under these weights (at least one must be positive)."""
    best_name = ""
    best_score = math.inf
    for name, weight in weights.items():
        if weight <= 0.0:
            continue
        # log(-ln h / w), in log space so that tiny weights do not overflow to infinity
        score = math.log(-math.log(unit_hash(seed, name, unit))) - math.log(weight)
        if score < best_score:
            best_name, best_score = name, score
    if not best_name:
        raise DealerError("no upstream has a weight above 0")
    return best_name
