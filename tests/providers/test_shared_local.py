"""Shared resources on the local provider: started once, seen by every island, kept across their teardown."""

from __future__ import annotations

import shlex
import sys

import pytest

from squals_action.manifest import model
from squals_action.providers import LocalProvider, ProviderError, daemon
from squals_action.providers.shared_local import accepts_connections
from tests.support.providers import Repo, read_json

RUN = f"exec {shlex.quote(sys.executable)} shared_server.py"
CACHE = model.SharedResource("cache", "kv", run=RUN, url="tcp://127.0.0.1:$PORT", ready_timeout=10.0)


def test_started_once_seen_by_two_islands_and_kept_across_their_teardown(
    repo: Repo, local: LocalProvider, spawned: list[daemon.ProcessRecord]
) -> None:
    manifest = repo.manifest(shared={"cache": CACHE})
    one = local.provision("pr-1", repo.shas["one"], manifest)
    two = local.provision("pr-2", repo.shas["one"], manifest)

    seen_by_one = read_json(one.url + "/shared")
    seen_by_two = read_json(two.url + "/shared")
    assert seen_by_one == seen_by_two  # the same resource, the same process answering
    said = seen_by_one["SQUALS_SHARED_CACHE_URL"]
    assert isinstance(said, dict) and said["said"].startswith("hello from ")
    (running,) = local.shared_resources().running()
    assert running.url == said["url"] and running.commit == repo.shas["one"]
    log = local.root / "logs" / "shared-cache.log"
    assert log.read_text().count("shared resource booting") == 1  # started once, not per island

    for handle in (one, two):
        assert local.destroy(handle).ok
    assert local.down() == ()  # nothing left to take down: shared resources are not environments
    port = int(running.data["port"])
    assert accepts_connections(port)

    (removed,) = local.shared_resources().remove()
    assert removed.ok and "stopped" in removed.detail
    assert not accepts_connections(port)
    assert local.shared_resources().running() == ()
    assert repo.worktrees() == [str(repo.path)]


def test_a_resource_that_dies_is_started_again_by_the_next_provision(
    repo: Repo, local: LocalProvider, spawned: list[daemon.ProcessRecord]
) -> None:
    manifest = repo.manifest(shared={"cache": CACHE})
    shared = local.shared_resources()
    (first,) = shared.ensure(manifest, "HEAD")
    record = daemon.ProcessRecord.from_json(first.data["process"])
    daemon.terminate(record, grace=1.0)
    assert [s.state for s in shared.status(manifest)] == ["down"]

    handle = local.provision("pr-3", repo.shas["one"], manifest)
    (second,) = shared.running()
    assert second.url != first.url or second.data["process"] != first.data["process"]
    assert read_json(handle.url + "/shared")["SQUALS_SHARED_CACHE_URL"]["url"] == second.url  # type: ignore[index]
    shared.remove(["cache"])


def test_a_resource_that_never_opens_its_port_fails_with_its_log_and_leaves_nothing(
    repo: Repo, local: LocalProvider, spawned: list[daemon.ProcessRecord]
) -> None:
    broken = model.SharedResource(
        "db", "postgres", run="echo 'FATAL: data directory missing'; exit 4", ready_timeout=5.0
    )
    manifest = repo.manifest(shared={"db": broken})
    with pytest.raises(ProviderError) as caught:
        local.provision("pr-4", repo.shas["one"], manifest)
    message = caught.value.one_line()
    assert "shared.db" in message and "did not become ready (it exited)" in message
    assert "FATAL: data directory missing" in str(caught.value)
    assert local.shared_resources().status(manifest)[0].state == "not started"
    assert local.list() == ()
    assert repo.worktrees() == [str(repo.path)]


def test_removing_an_unknown_resource_is_refused(local: LocalProvider) -> None:
    with pytest.raises(ProviderError, match="no shared resource 'cach' \\(known: none\\)"):
        local.shared_resources().remove(["cach"])
