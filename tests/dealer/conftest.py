"""Fixtures of the Dealer's tests: real upstreams and real Dealer daemons on 127.0.0.1, all stopped."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from dealerfix import DealerFactory, Upstreams

from squals_action.dealer import DealerClient, DealerConfig, dealer_status, start_dealer, stop_dealer


@pytest.fixture
def upstreams() -> Iterator[Upstreams]:
    ups = Upstreams()
    try:
        yield ups
    finally:
        ups.stop_all()


@pytest.fixture(scope="module")
def pair() -> Iterator[dict[str, str]]:
    """Two upstreams, ``a`` and ``b``, shared by a module's tests (starting processes is the slow part)."""
    ups = Upstreams()
    try:
        yield {"a": ups.start("a"), "b": ups.start("b")}
    finally:
        ups.stop_all()


@pytest.fixture
def dealer_factory(tmp_path: Path) -> Iterator[DealerFactory]:
    """``make(upstreams, weights, state=..., **config)`` starts a Dealer daemon; all stop afterwards."""
    states: list[Path] = []

    def make(
        upstreams: Mapping[str, str], weights: Mapping[str, float], state: Path | None = None, **kw: object
    ) -> DealerClient:
        state_dir = state or tmp_path / f"dealer{len(states)}"
        states.append(state_dir)
        return start_dealer(DealerConfig(upstreams=upstreams, weights=weights, **kw), state_dir)  # type: ignore[arg-type]

    try:
        yield make
    finally:
        for state_dir in states:
            stop_dealer(state_dir)
            assert dealer_status(state_dir).state == "stopped"
