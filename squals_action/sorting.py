"""How environment, experiment and variant names are ordered wherever people read them."""

from __future__ import annotations

import re
from typing import Any


def natural_key(name: str) -> list[Any]:
    """Sort key that orders the numbers inside names by value: ``pr-2`` before ``pr-10``."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]
