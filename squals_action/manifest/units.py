"""The one grammar for durations (``90s``, ``15m``, ``2h``, ``7d``) and percentages (``10%``).

The schema's patterns and these parsers describe the same strings; the model stores seconds and percent.
"""

from __future__ import annotations

import re

DURATION_RE = re.compile(r"^(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:s|m|h|d)$")
PERCENTAGE_RE = re.compile(r"^(?:0|[1-9][0-9]*)(?:\.[0-9]+)?%$")
#: A change relative to another figure: ``+10%`` or ``-10%``.
CHANGE_RE = re.compile(r"^[+-](?:0|[1-9][0-9]*)(?:\.[0-9]+)?%$")
UNIT_SECONDS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float:
    """``"15m"`` -> ``900.0`` seconds; raises ValueError outside the grammar."""
    if not DURATION_RE.match(text):
        raise ValueError(f"not a duration: {text!r} (expected e.g. 90s, 15m, 2h, 7d)")
    return float(text[:-1]) * UNIT_SECONDS[text[-1]]


def parse_percentage(text: str) -> float:
    """``"10%"`` -> ``10.0``; raises ValueError outside the grammar."""
    if not PERCENTAGE_RE.match(text):
        raise ValueError(f"not a percentage: {text!r} (expected e.g. 10%, 0.5%)")
    return float(text[:-1])


def parse_change(text: str) -> float:
    """``"+10%"`` -> ``10.0``, ``"-10%"`` -> ``-10.0``; raises ValueError outside the grammar."""
    if not CHANGE_RE.match(text):
        raise ValueError(f"not a relative change: {text!r} (expected e.g. +10%, -10%)")
    return float(text[:-1])


def parse_amount(value: object) -> float:
    """A number as is, or a percentage string as percent (``"1%"`` -> ``1.0``)."""
    if isinstance(value, bool):
        raise ValueError(f"not a number: {value!r}")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        return parse_percentage(value)
    raise ValueError(f"not a number or percentage: {value!r}")


def format_duration(seconds: float) -> str:
    """The shortest exact spelling of ``seconds`` in the grammar (``900`` -> ``15m``)."""
    for unit in ("d", "h", "m"):
        size = UNIT_SECONDS[unit]
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s" if float(seconds).is_integer() else f"{seconds}s"
