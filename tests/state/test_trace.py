"""``SQUALS_STATE_TRACE`` logs each step of a transaction (how the benchmark finds where time goes)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from squals_action.state import Documents, Transition, open_store
from squals_action.state.trace import TRACE_ENV


def bump(docs: Documents) -> Documents:
    doc = docs.get("counters/c.json", {"schema_version": 1, "n": 0})
    doc["n"] += 1
    docs["counters/c.json"] = doc
    return docs


def test_trace_logs_fetch_build_and_push_of_a_transaction(
    make_clone: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trace = tmp_path / "trace.txt"
    monkeypatch.setenv(TRACE_ENV, str(trace))
    with open_store(make_clone()) as store:
        store.transact(bump, Transition("count", "one"))
    steps = [line.split()[3] for line in trace.read_text(encoding="ascii").splitlines()]
    assert steps == ["fetch", "build", "push"]


def test_no_trace_without_the_variable(
    make_clone: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(TRACE_ENV, raising=False)
    with open_store(make_clone()) as store:
        store.transact(bump, Transition("count", "one"))
    assert not list(tmp_path.glob("*.txt"))
