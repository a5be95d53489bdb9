"""The state store as its history grows: packs rolled up (never one per transition forever, never an object
lost under concurrent writers), retired environments archived out of the live tree while ``history`` still
finds them, and ``history`` reading a page at a time (``--limit``, ``--since``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from squals_action.cli import main
from squals_action.state import (
    Documents,
    EnvironmentState,
    StateError,
    StateStore,
    Transition,
    open_store,
    utc_now,
)
from squals_action.state import upkeep as upkeep_module
from squals_action.state.archive import KEEP_RETIRED
from squals_action.state.git_repo import GitRepo
from squals_action.state.upkeep import Upkeep
from tests.support.state import WRITER, git, state_log

T0 = datetime(2026, 5, 1, 12, 0, 0, tzinfo=UTC)


def count_objects(repo: Path) -> dict[str, int]:
    """``git count-objects -v`` as numbers."""
    out = git(repo, "count-objects", "-v")
    return {key: int(value) for key, value in (line.split(": ") for line in out.splitlines())}


def bump(docs: Documents) -> Documents:
    doc = docs.get("counters/c.json", {"schema_version": 1, "n": 0})
    doc["n"] += 1
    docs["counters/c.json"] = doc
    return docs


def put(
    store: StateStore, name: str, status: str, *, handle: dict[str, int] | None = None, minute: int = 0
) -> None:
    """Record ``name`` in ``status`` (``retired``: no handle, no traffic, as the lifecycle leaves it)."""
    pr = int(name[3:]) if name.startswith("pr-") else None
    when = T0 + timedelta(minutes=minute)
    env = EnvironmentState(name, status, handle=handle or {}, pr=pr, updated_at=when)
    store.put_environment(env, Transition("deploy", f"{status} {name}", environment=name, pr=env.pr))


# ---- packs ------------------------------------------------------------------------------------------------


def test_packs_are_rolled_up_so_their_count_stays_bounded(
    make_local: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(upkeep_module, "PACK_LIMIT", 6)
    repo = make_local()
    store = open_store(repo, remote=None)
    most = 0
    with store:
        for i in range(60):
            store.transact(bump, Transition("count", f"step {i}"))
            most = max(most, count_objects(repo)["packs"])
    found = count_objects(repo)
    # one pack per transition would be 60; rolled up past 6 new ones, the packs are those 6 at most, the
    # geometric progression (log2 of the objects) and one more written while a roll-up ran
    bound = 6 + found["in-pack"].bit_length() + 1
    assert most <= bound and found["packs"] <= bound and found["count"] == 0, (most, found)
    assert len(state_log(repo)) == 60
    assert json.loads(git(repo, "show", "squals/state:counters/c.json"))["n"] == 60
    git(repo, "fsck", "--strict", "--no-dangling")
    with open_store(repo, remote=None) as fresh:  # everything still reads back
        assert fresh.read().documents["counters/c.json"]["n"] == 60
        assert len(fresh.history(limit=None)) == 60


def test_loose_objects_past_git_gc_auto_are_packed(
    make_local: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = make_local()
    monkeypatch.setattr(upkeep_module, "LOOSE_LIMIT", 256)  # one loose object in objects/17/ reaches it
    inputs = repo.parent / "blobs"  # 4,000 loose objects nothing refers to, as a busy repository holds
    inputs.mkdir()
    for i in range(4000):
        (inputs / str(i)).write_text(f"blob {i}\n")
    names = "\n".join(str(inputs / str(i)) for i in range(4000)) + "\n"
    subprocess.run(
        ["git", "hash-object", "-w", "--stdin-paths"],
        cwd=repo,
        input=names,
        text=True,
        capture_output=True,
        timeout=60,
        check=True,
    )
    loose = count_objects(repo)["count"]
    assert loose >= 4000 and (repo / ".git" / "objects" / "17").is_dir()
    with open_store(repo, remote=None) as store:
        store.transact(bump, Transition("count", "one"))
    assert count_objects(repo)["count"] == 0  # packed (unreachable ones too: nothing is dropped)
    assert git(repo, "cat-file", "-t", git(repo, "hash-object", str(inputs / "7")).strip()).strip() == "blob"


def test_a_roll_up_under_four_concurrent_writers_loses_no_object(make_local: Callable[..., Path]) -> None:
    repo = make_local()
    stop = threading.Event()
    rollups: list[bool] = []

    def keep_rolling_up() -> None:  # as often as possible, while the writers write packs and move the branch
        upkeep = Upkeep(GitRepo(repo, timeout=60))
        while not stop.is_set():
            rollups.append(upkeep.rollup())

    roller = threading.Thread(target=keep_rolling_up)
    roller.start()
    try:
        procs = [
            subprocess.Popen(
                [sys.executable, str(WRITER), str(repo), str(i), "25"],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env={**os.environ, "STATE_WRITER_REMOTE": ""},
            )
            for i in range(4)
        ]
        for proc in procs:
            _, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, err
    finally:
        stop.set()
        roller.join(timeout=120)
    assert len(rollups) >= 3 and any(rollups)
    assert len(state_log(repo)) == 100
    counter = json.loads(git(repo, "show", "squals/state:counters/c.json"))
    assert counter["n"] == 100
    git(repo, "fsck", "--strict", "--no-dangling")


# ---- archive ----------------------------------------------------------------------------------------------


def test_retired_environments_leave_the_live_tree_and_history_still_finds_them(any_store: StateStore) -> None:
    for n in range(1, KEEP_RETIRED + 4):
        put(any_store, f"pr-{n}", "ready", handle={"pid": n}, minute=n)
        put(any_store, f"pr-{n}", "retired", minute=n)
    put(any_store, "pr-100", "retired", handle={"pid": 100})  # resources left: it stays
    put(any_store, "pr-101", "ready", handle={"pid": 101})
    live = any_store.read().environments()
    retired = sorted(name for name, env in live.items() if env.status == "retired" and not env.handle)
    # the most recently retired stay live; the three oldest moved to the archive
    assert retired == sorted(f"pr-{n}" for n in range(4, KEEP_RETIRED + 4))
    assert {"pr-100", "pr-101"} <= set(live) and not {"pr-1", "pr-2", "pr-3"} & set(live)
    assert [(e.event, e.summary) for e in any_store.history("pr-1")] == [
        ("deploy", "retired pr-1"),
        ("deploy", "ready pr-1"),
    ]
    put(any_store, "pr-1", "ready", handle={"pid": 1})  # the name may come back: a fresh document
    assert any_store.read().environment("pr-1") is not None
    assert len(any_store.history("pr-1")) == 3


def test_the_archive_is_a_subtree_written_once_and_never_read(
    make_local: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    repo = make_local()
    with open_store(repo, remote=None) as store:
        for n in range(1, KEEP_RETIRED + 3):
            put(store, f"pr-{n}", "retired", minute=n)
    month = utc_now().strftime("%Y-%m")
    archived = git(repo, "ls-tree", "-r", "--name-only", "squals/state", "archive").split()
    assert archived == [f"archive/{month}/environments/pr-{n}.json" for n in (1, 2)]
    doc = json.loads(git(repo, "show", f"squals/state:archive/{month}/environments/pr-1.json"))
    assert doc["name"] == "pr-1" and doc["status"] == "retired"
    assert "environments/pr-1.json" not in git(repo, "ls-tree", "-r", "--name-only", "squals/state").split()
    assert main(["history", "pr-1", "--repo", str(repo), "--format", "json"]) == 0
    assert [e["summary"] for e in json.loads(capsys.readouterr().out)] == ["retired pr-1"]
    # a transaction never reads the archive: even a broken file in it does not stop one
    work = repo.parent / "look"
    git(repo, "worktree", "add", "-q", str(work), "squals/state")
    (work / "archive" / month / "environments" / "pr-2.json").write_text("{ not json")
    git(work, "commit", "-q", "-am", "damage the archive by hand")
    git(work, "checkout", "-q", "--detach")
    with open_store(repo, remote=None) as store:
        store.transact(bump, Transition("count", "still works"))
        assert store.read().documents["counters/c.json"]["n"] == 1


def test_a_transaction_may_not_write_into_the_archive(any_store: StateStore) -> None:
    def sneak(docs: Documents) -> Documents:
        docs["archive/2026-01/environments/x.json"] = {"schema_version": 1}
        return docs

    with pytest.raises(StateError, match="archive/, which only the store writes"):
        any_store.transact(sneak, Transition("count", "sneak"))


# ---- history pages --------------------------------------------------------------------------------------


def test_history_pages_by_limit_and_since(any_store: StateStore) -> None:
    for n in range(5):
        put(any_store, "prod", f"s{n}")
        put(any_store, "pr-1", f"s{n}")
    assert [e.summary for e in any_store.history("prod", limit=2)] == ["s4 prod", "s3 prod"]
    assert len(any_store.history(limit=3)) == 3
    newest = any_store.history(limit=1)[0]
    assert any_store.history(since=newest.time + timedelta(seconds=1)) == []
    assert len(any_store.history("pr-1", since=newest.time - timedelta(hours=1))) == 5


def test_history_of_one_environment_is_not_fooled_by_a_summary(any_store: StateStore) -> None:
    put(any_store, "pr-2", "ready")
    for n in range(4):  # summaries that look like another environment's trailer
        any_store.transact(bump, Transition("count", f"Squals-Environment: pr-2 {n}"))
        any_store.transact(bump, Transition("count", "Squals-Environment: pr-2"))
    assert [e.summary for e in any_store.history("pr-2", limit=1)] == ["ready pr-2"]
    assert [e.environment for e in any_store.history("pr-2", limit=5)] == ["pr-2"]


def test_squals_history_shows_one_page_and_says_so(
    make_local: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    repo = make_local()
    with open_store(repo, remote=None) as store:
        for n in range(55):
            store.transact(bump, Transition("count", f"step {n}"))
    assert main(["history", "--repo", str(repo), "--format", "json"]) == 0
    out, err = capsys.readouterr()
    assert len(json.loads(out)) == 50 and "the newest 50 transitions; --limit N" in err
    assert main(["history", "--repo", str(repo), "--format", "json", "--all"]) == 0
    out, err = capsys.readouterr()
    assert len(json.loads(out)) == 55 and err == ""
    assert main(["history", "--repo", str(repo), "--format", "json", "--since", "1h", "--limit", "3"]) == 0
    assert [e["summary"] for e in json.loads(capsys.readouterr().out)] == ["step 54", "step 53", "step 52"]
    assert main(["history", "--repo", str(repo), "--since", "2999-01-01"]) == 0
    assert "No transitions recorded" in capsys.readouterr().out
    assert main(["history", "--repo", str(repo), "--since", "yesterday"]) == 2
    err = capsys.readouterr().err
    assert "argument --since: expected an ISO 8601 date or time" in err and err.count("\n") == 1


def test_the_marker_is_written_as_the_canonical_serialisation_writes_it() -> None:
    from squals_action.state.layout import dumps_document, dumps_marker

    odd = ['quote " and \\ back', "é, ü", "\u2028", "tab\tnew\nline", "k" * 200]
    for keys in ([], ["deploy/1/1/pr-1"], odd):
        marker = {"schema_version": 1, "format": "squals-state", "recent_keys": keys}
        assert dumps_marker(keys) == dumps_document(marker)
