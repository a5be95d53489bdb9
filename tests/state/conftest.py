"""State test fixtures: a bare origin per test and shallow clones of it, one per writer; for local-only mode,
a repository with no remote at all."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from statefix import clone, copy_clone, make_dirty, make_local_repo, make_origin

from squals_action.state import StateStore, open_memory_store, open_store


@pytest.fixture(scope="session")
def template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """One origin and one shallow clone of it, made once; tests get copies."""
    root = tmp_path_factory.mktemp("state-template")
    origin = make_origin(root)
    return origin, clone(origin, root / "clone")


@pytest.fixture
def origin(tmp_path: Path, template: tuple[Path, Path]) -> Path:
    """A bare repository with a ``main`` branch, this test's own."""
    return Path(shutil.copytree(template[0], tmp_path / "origin.git", symlinks=True))


@pytest.fixture
def make_clone(origin: Path, tmp_path: Path, template: tuple[Path, Path]) -> Callable[..., Path]:
    """``make_clone("name", dirty=True)``: a fresh shallow, single-branch clone of ``origin``."""

    def make(name: str = "work", *, dirty: bool = False) -> Path:
        return copy_clone(template[1], origin, tmp_path / name, dirty=dirty)

    return make


@pytest.fixture(scope="session")
def local_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One repository without a remote, made once; tests get copies."""
    return make_local_repo(tmp_path_factory.mktemp("state-local-template") / "laptop")


@pytest.fixture
def make_local(tmp_path: Path, local_template: Path) -> Callable[..., Path]:
    """``make_local("name", dirty=True)``: a fresh copy of a repository that has no remote at all."""

    def make(name: str = "laptop", *, dirty: bool = False) -> Path:
        dest = Path(shutil.copytree(local_template, tmp_path / name, symlinks=True))
        if dirty:
            make_dirty(dest)
        return dest

    return make


@pytest.fixture
def git_store(make_clone: Callable[..., Path]) -> Iterator[StateStore]:
    store = open_store(make_clone("store"))
    yield store
    store.close()


@pytest.fixture(params=["git", "local", "memory"])
def any_store(
    request: pytest.FixtureRequest, make_clone: Callable[..., Path], make_local: Callable[..., Path]
) -> Iterator[StateStore]:
    """The same behaviour is expected of every implementation and mode."""
    if request.param == "git":
        store = open_store(make_clone("store"))
    elif request.param == "local":
        store = open_store(make_local("store"), remote=None)
    else:
        store = open_memory_store()
    yield store
    store.close()
