"""Fixtures of the Dealer's tests: real upstreams and real Dealer daemons on 127.0.0.1, all stopped."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest

from squals_action.dealer import DealerClient, DealerConfig, dealer_status, start_dealer, stop_dealer

HERE = Path(__file__).resolve().parent


class Upstreams:
    """Starts ``dealer_upstream.py`` processes and stops every one of them at the end of the test."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[str]] = []

    def start(self, name: str, port: int = 0) -> str:
        proc = subprocess.Popen(
            [sys.executable, str(HERE / "dealer_upstream.py"), name, str(port)],
            stdout=subprocess.PIPE,
            text=True,
        )
        self.procs.append(proc)
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.isdigit(), f"upstream {name} did not start"
        return f"http://127.0.0.1:{line}"

    def stop_all(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
            if proc.stdout is not None:
                proc.stdout.close()


@pytest.fixture
def upstreams() -> Iterator[Upstreams]:
    ups = Upstreams()
    try:
        yield ups
    finally:
        ups.stop_all()


DealerFactory = Callable[..., DealerClient]


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
