"""Validation runs with the cyclic garbage collector paused, and leaves it as it found it."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from squals_action.manifest import validate_paths
from squals_action.manifest.validate import gc_paused


@pytest.fixture
def collections() -> Iterator[list[int]]:
    """The generations the collector collected while the test ran."""
    seen: list[int] = []

    def note(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            seen.append(int(info["generation"]))

    gc.callbacks.append(note)
    try:
        yield seen
    finally:
        gc.callbacks.remove(note)


def test_large_file_validates_without_a_collection(tmp_path: Path, collections: list[int]) -> None:
    (tmp_path / ".git").mkdir()
    target = tmp_path / "squals.yml"
    lines = ["version: 1", "name: shop", "app: {start: python app.py}", "exit_tests:"]
    lines += [f"  - {{name: e2e-{i}, run: pytest tests/test_{i}.py, timeout: 10m}}" for i in range(3000)]
    target.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert gc.isenabled()
    report = validate_paths([target], repo_root=tmp_path)
    assert report.valid and len(report.results[0].manifest.exit_tests) == 3000  # type: ignore[union-attr]
    # Without the pause: over a hundred collections. With it: at most the one that the first allocation
    # after resuming triggers, since the allocation count kept growing while it was paused.
    assert len(collections) <= 1
    assert gc.isenabled()


def test_collector_is_resumed_after_an_error_and_left_off_when_it_was_off() -> None:
    @gc_paused
    def fails() -> None:
        assert not gc.isenabled()
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        fails()
    assert gc.isenabled()
    gc.disable()
    try:
        with pytest.raises(ValueError, match="boom"):
            fails()
        assert not gc.isenabled()
    finally:
        gc.enable()
