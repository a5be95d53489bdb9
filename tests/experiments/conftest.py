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
    # the promoted winner (pr-N, prod) and the project's Dealer are the product of a test; stopped above
    assert all(env.startswith("pr-") for env in leftovers), f"environments left running: {leftovers}"
    assert dealers == [] or dealers == [str(shop.path / ".squals" / "dealer")], dealers
