"""Provider test fixtures: a project repository per test, and guards that every test leaks nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from provfix import CONTRACT_SETUPS, ContractSetup, Repo, make_repo, port_closed

from squals_action.providers import PROVIDERS, LocalProvider, daemon


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    return make_repo(tmp_path / "project")


@pytest.fixture
def spawned(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[daemon.ProcessRecord]]:
    """Every process group started through :func:`daemon.spawn` in this test; all must be gone at the end.

    Anything still alive is killed (so a failing test leaks nothing) and the test fails.
    """
    records: list[daemon.ProcessRecord] = []
    real_spawn = daemon.spawn

    def recording_spawn(*args: object, **kwargs: object) -> daemon.ProcessRecord:
        record = real_spawn(*args, **kwargs)  # type: ignore[arg-type]
        records.append(record)
        return record

    monkeypatch.setattr(daemon, "spawn", recording_spawn)
    yield records
    leaked = [r for r in records if daemon.members(r)]
    for record in leaked:
        daemon.terminate(record, grace=0.5)
    assert not leaked, f"processes left running: {leaked}"


@pytest.fixture
def local(repo: Repo, spawned: list[daemon.ProcessRecord]) -> Iterator[LocalProvider]:
    """A local provider for ``repo``; at the end ``down()`` must leave no process, port or worktree."""
    provider = LocalProvider(repo.path)
    yield provider
    handles = provider.list()
    outcomes = provider.down()
    assert all(o.ok for o in outcomes), outcomes
    assert provider.list() == ()
    assert repo.worktrees() == [str(repo.path)]
    for handle in handles:
        if "port" in handle.data:
            assert port_closed(int(handle.data["port"]))


@pytest.fixture(params=sorted(PROVIDERS))
def contract(
    request: pytest.FixtureRequest, repo: Repo, spawned: list[daemon.ProcessRecord]
) -> Iterator[ContractSetup]:
    kind: str = request.param
    if kind not in CONTRACT_SETUPS:
        pytest.fail(f"provider {kind!r} is registered but tests/providers/provfix.py has no contract set-up")
    setup = CONTRACT_SETUPS[kind](repo, spawned)
    yield setup
    setup.provider.down()
    assert setup.leftovers() == []
