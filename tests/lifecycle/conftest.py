"""Lifecycle fixtures: every test gets a project, and at its end nothing it started may still run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from lcfix import Project, make_project

from squals_action.dealer import dealer_status, stop_dealer
from squals_action.providers import LocalProvider


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    project = make_project(tmp_path)
    yield project
    provider = LocalProvider(project.path)
    leftovers = provider.list()
    outcomes = provider.down()
    dealer_dir = project.path / ".squals" / "dealer"
    dealer_left = dealer_status(dealer_dir).state == "running"
    stop_dealer(dealer_dir)
    assert all(o.ok for o in outcomes), outcomes
    assert leftovers == (), f"environments left running: {[h.env for h in leftovers]}"
    assert not dealer_left, "the Dealer was left running"
