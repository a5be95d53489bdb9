"""The engine's ordering rules, with an in-memory store and recording fakes (no processes, fast):
traffic goes back to GREEN before the commit; a forward switch is undone when its commit fails."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from squals_action.dealer.interface import VariantTally
from squals_action.errors import SqualsError
from squals_action.lifecycle.engine import Lifecycle
from squals_action.lifecycle.machine import Status
from squals_action.manifest import model
from squals_action.providers.interface import DestroyOutcome, EnvironmentHandle, Health, Provider
from squals_action.state import open_memory_store
from squals_action.state.interface import StateError, Transition
from tests.support.providers import NoShared


class FakeProvider(Provider):
    kind = "local"

    def __init__(self, log: list[str]) -> None:
        super().__init__(Path("."))
        self.log, self.alive = log, {"pr-1", "pr-2"}

    def provision(self, env_name: str, commit: str, manifest: model.Manifest, **kw: Any) -> EnvironmentHandle:
        return EnvironmentHandle(env_name, commit, f"http://127.0.0.1:{9000 + len(env_name)}", "local")

    def health(self, handle: EnvironmentHandle, *, timeout: float = 2.0) -> Health:
        return Health("up" if handle.env in self.alive else "down", "")

    def destroy(self, handle: EnvironmentHandle) -> DestroyOutcome:
        return DestroyOutcome(handle.env, True)

    def list(self) -> tuple[EnvironmentHandle, ...]:
        return ()

    def shared_resources(self) -> NoShared:
        return NoShared()


class FakeTraffic:
    def __init__(self, log: list[str]) -> None:
        self.log = log
        self.errors = self.reads = 0

    def url(self) -> str | None:
        return "http://127.0.0.1:8000"

    def upstream(self, url: str | None, handle: Mapping[str, object] | None) -> str | None:
        return url

    def route(self, upstreams: Mapping[str, str], weights: Mapping[str, float]) -> str:
        self.log.append("route " + " ".join(f"{k}={v:g}" for k, v in sorted(weights.items())))
        return "http://127.0.0.1:8000"

    def drain(self, names: list[str], timeout: float = 30.0) -> None:
        pass

    def tallies(self) -> Mapping[str, VariantTally]:
        """Ten more requests at every read, ``errors`` of them failed."""
        self.reads += 1
        return {"pr-2": VariantTally("pr-2", activations=10 * self.reads, errors=self.errors * self.reads)}

    def stop(self) -> bool:
        return False

    def close(self) -> str | None:
        return None


class LoggingStore:
    """The memory store, logging each transition; fails the one whose event is in ``fail_on``."""

    def __init__(self, log: list[str]) -> None:
        self.inner, self.log, self.fail_on = open_memory_store(), log, ""

    def transact(self, fn: Any, meta: Transition) -> Any:
        if meta.event == self.fail_on:
            raise StateError(f"remote refused {meta.event}")
        self.log.append(f"commit {meta.event}")
        return self.inner.transact(fn, meta)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def _world(tmp_path: Path, kpis: tuple[model.Kpi, ...] = ()) -> tuple[Lifecycle, list[str]]:
    log: list[str] = []
    rollout = model.Rollout(blue_share=20, bake=0.2, check_interval=0.05, kpis=kpis)
    m = model.Manifest(path="squals.yml", name="shop", app=model.App(start="true"), rollout=rollout)
    store = LoggingStore(log)
    lc = Lifecycle(tmp_path, m, store, FakeProvider(log), FakeTraffic(log), tmp_path / "logs")  # type: ignore[arg-type]
    for pr in (1, 2):
        assert lc.deploy(pr, "a" * 39 + str(pr)).ok  # hex commits pass through resolve in a git repo only
    assert lc.promote(1).ok
    log.clear()
    return lc, log


@pytest.fixture(autouse=True)
def _no_git_resolve(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("squals_action.gitcmd.resolve_commit", lambda repo, ref, error: ref)


def test_a_breach_switches_traffic_before_recording(tmp_path: Path) -> None:
    lc, log = _world(tmp_path, kpis=(model.Kpi("error_rate", max=1.0),))
    lc.traffic.errors = 5  # type: ignore[attr-defined]
    out = lc.promote(2)
    assert not out.ok and out.message.startswith("KPI breach: error_rate 50 > max 1")
    back = log.index("route pr-1=100")  # pr-2 failed: it leaves the split
    assert log[back + 1] == "commit bake-breach"
    assert lc.fleet()["pr-2"].status is Status.FAILED


def test_a_refused_commit_undoes_the_forward_switch(tmp_path: Path) -> None:
    lc, log = _world(tmp_path)
    lc.store.fail_on = "promote-start"  # type: ignore[attr-defined]
    with pytest.raises(SqualsError, match="remote refused promote-start"):
        lc.promote(2)
    assert [line for line in log if line.startswith("route")] == ["route pr-1=80 pr-2=20", "route pr-1=100"]
    fleet = lc.fleet()
    assert (fleet["pr-1"].share, fleet["pr-2"].status) == (100.0, Status.READY)
    assert lc.store.read().locks() == {}
