"""State test fixtures: a bare origin per test and shallow clones of it, one per writer."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from statefix import clone, make_origin

from squals_action.state import StateStore, open_memory_store, open_store


@pytest.fixture
def origin(tmp_path: Path) -> Path:
    return make_origin(tmp_path)


@pytest.fixture
def make_clone(origin: Path, tmp_path: Path) -> Callable[..., Path]:
    """``make_clone("name", dirty=True)``: a fresh shallow clone of ``origin``."""

    def make(name: str = "work", *, dirty: bool = False) -> Path:
        return clone(origin, tmp_path / name, dirty=dirty)

    return make


@pytest.fixture
def git_store(make_clone: Callable[..., Path]) -> Iterator[StateStore]:
    store = open_store(make_clone("store"))
    yield store
    store.close()


@pytest.fixture(params=["git", "memory"])
def any_store(request: pytest.FixtureRequest, make_clone: Callable[..., Path]) -> Iterator[StateStore]:
    """The same behaviour is expected of both implementations."""
    store = open_store(make_clone("store")) if request.param == "git" else open_memory_store()
    yield store
    store.close()
