"""Local-only mode: the state branch is ``refs/heads/squals/state`` of a repository with no remote, moved by
``git update-ref <new> <old>``. Same guarantees as on a remote: no lost update between processes, one commit
per transition, replays are no-ops, locks, refusals, and the working tree, index and HEAD stay untouched."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from squals_action.state import (
    ContentionError,
    CorruptStateError,
    Documents,
    EnvironmentState,
    GitCommandError,
    LockedError,
    RetryPolicy,
    StateError,
    Transition,
    UnrelatedHistoryError,
    choose_remote,
    open_store,
)
from squals_action.state.git_store import TEST_PAUSE_ENV
from squals_action.state.publish import STALE_LOCK_AGE
from tests.support.state import WRITER, fingerprint, git, make_local_repo, state_log

STATE_REF = "refs/heads/squals/state"


def bump(docs: Documents) -> Documents:
    doc = docs.get("counters/c.json", {"schema_version": 1, "n": 0})
    doc["n"] += 1
    docs["counters/c.json"] = doc
    return docs


def writer(
    repo: Path, writer_id: str, count: int, *, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(WRITER), str(repo), writer_id, str(count)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "STATE_WRITER_REMOTE": "", **(env or {})},
    )


@pytest.mark.slow
def test_four_processes_times_twenty_five_on_one_repository_lose_no_update(
    make_local: Callable[..., Path],
) -> None:
    repo = make_local(dirty=True)
    before = fingerprint(repo, except_branches=("squals/state",))
    procs = [writer(repo, str(i), 25) for i in range(4)]
    try:
        reports = []
        for proc in procs:
            out, err = proc.communicate(timeout=240)
            assert proc.returncode == 0, err
            reports.append(json.loads(out))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert len(state_log(repo)) == 100
    assert git(repo, "rev-list", "--count", "--merges", STATE_REF).strip() == "0"  # one line, no merges
    counter = json.loads(git(repo, "show", "squals/state:counters/c.json"))
    assert counter == {"schema_version": 1, "n": 100, **{f"w{i}": 25 for i in range(4)}}
    journal = json.loads(git(repo, "show", "squals/state:journal/log.json"))["entries"]
    assert sorted(journal) == sorted(f"{i}-{j}" for i in range(4) for j in range(25))
    for i in range(4):
        assert [e for e in journal if e.startswith(f"{i}-")] == [f"{i}-{j}" for j in range(25)]
    assert sum(len(r["attempts"]) for r in reports) == 100
    with open_store(repo, remote=None) as store:
        history = store.history()
    assert len(history) == 100 and len({e.idempotency_key for e in history}) == 100
    assert fingerprint(repo, except_branches=("squals/state",)) == before  # working tree, index, HEAD
    assert "error" not in git(repo, "fsck", "--strict", check=False)
    assert not list((repo / ".git").rglob("*.lock"))


def test_working_tree_index_and_head_stay_byte_identical(make_local: Callable[..., Path]) -> None:
    repo = make_local(dirty=True)
    head = git(repo, "rev-parse", "HEAD")
    before = fingerprint(repo, except_branches=("squals/state",))
    other = open_store(repo, remote=None)  # a second writer on the same repository
    with open_store(repo, remote=None) as store:
        operations: list[Callable[[], object]] = [
            store.read,
            lambda: store.transact(bump, Transition("count", "first", run_id="1")),
            lambda: store.transact(bump, Transition("count", "replay", run_id="1")),
            lambda: other.transact(bump, Transition("count", "elsewhere")),
            lambda: store.transact(bump, Transition("count", "after a lost race")),
            lambda: store.acquire_lock("prod", pr=3, run_id="x"),
            lambda: store.break_lock("prod", actor="admin"),
            store.history,
        ]
        for operation in operations:
            operation()
            assert fingerprint(repo, except_branches=("squals/state",)) == before
    other.close()
    assert fingerprint(repo, except_branches=("squals/state",)) == before
    assert git(repo, "symbolic-ref", "HEAD").strip() == "refs/heads/main"
    assert git(repo, "rev-parse", "HEAD") == head
    assert git(repo, "remote").strip() == ""  # nothing was added, nothing pushed
    assert len(state_log(repo)) == 5
    # the branch is an orphan: it shares no history with the code
    assert git(repo, "merge-base", "main", "squals/state", check=False).strip() == ""
    assert git(repo, "show", "squals/state:squals-state.json").startswith("{")


def test_a_replayed_event_records_nothing_from_another_process_either(
    make_local: Callable[..., Path],
) -> None:
    repo = make_local()
    meta = Transition("promote", "promote pr-4 to prod", environment="prod", pr=4, run_id="77", actor="me")
    with open_store(repo, remote=None) as store:
        first = store.transact(bump, meta)
        again = store.transact(bump, meta)
    assert first.applied and not first.replayed
    assert again.replayed and not again.applied and again.commit == first.commit
    with open_store(repo, remote=None) as fresh:  # a later process replays the same event
        third = fresh.transact(bump, meta)
        assert third.replayed and fresh.read().documents["counters/c.json"]["n"] == 1
    assert len(state_log(repo)) == 1
    message = git(repo, "log", "-1", "--format=%B", "squals/state")
    assert "Squals-Idempotency-Key: promote/77/1/prod" in message and "Squals-PR: 4" in message


def test_locks_between_two_stores_on_one_repository(make_local: Callable[..., Path]) -> None:
    repo = make_local()
    with open_store(repo, remote=None) as a, open_store(repo, remote=None) as b:
        a.acquire_lock("prod", pr=12, run_id="1", actor="alice", ttl=600)
        with pytest.raises(LockedError, match="locked by PR #12 since"):
            b.acquire_lock("prod", pr=13, run_id="2")
        assert b.break_lock("prod", actor="bob") is not None
        b.acquire_lock("prod", pr=13, run_id="3")
        with pytest.raises(LockedError, match="PR #13"):
            a.acquire_lock("prod", pr=12, run_id="4")
        assert a.release_locks_of_pr(13, run_id="close-13") == ["prod"]
        assert b.read().locks() == {}
        trail = [(e.event, e.environment, e.pr, e.actor) for e in b.history()]
    assert trail == [
        ("release-locks", None, 13, None),
        ("lock", "prod", 13, None),
        ("break-lock", "prod", None, "bob"),
        ("lock", "prod", 12, "alice"),
    ]


def test_a_lost_race_is_re_read_and_re_applied(make_local: Callable[..., Path]) -> None:
    repo = make_local()
    fast, slow = open_store(repo, remote=None), open_store(repo, remote=None)
    calls = []

    def racing(docs: Documents) -> Documents:
        calls.append(docs.get("counters/c.json", {}).get("n", 0))
        if len(calls) == 1:  # another process lands a transition while this one is being built
            fast.transact(bump, Transition("count", "fast wins"))
        return bump(docs)

    result = slow.transact(racing, Transition("count", "slow retries"))
    assert result.applied and result.attempts == 2 and calls == [0, 1]
    assert slow.read().documents["counters/c.json"]["n"] == 2
    assert len(state_log(repo)) == 2
    fast.close()
    slow.close()


def test_contention_gives_up_after_the_bounded_attempts(make_local: Callable[..., Path]) -> None:
    repo = make_local()
    fast = open_store(repo, remote=None)
    slow = open_store(repo, remote=None, retry=RetryPolicy(max_attempts=3, base_delay=0.001, max_delay=0.01))

    def racing(docs: Documents) -> Documents:
        fast.transact(bump, Transition("count", "fast wins"))
        return bump(docs)

    with pytest.raises(ContentionError, match=r"'squals/state' kept moving .* 3 attempts"):
        slow.transact(racing, Transition("count", "slow loses"))
    assert len(state_log(repo)) == 3
    fast.close()
    slow.close()


def test_a_held_ref_lock_is_waited_for_and_a_stale_one_is_named(make_local: Callable[..., Path]) -> None:
    repo = make_local()
    with open_store(repo, remote=None) as store:
        store.transact(bump, Transition("count", "first"))
    lock = repo / ".git" / "refs" / "heads" / "squals" / "state.lock"
    lock.write_text("")  # another git is writing the branch right now
    quick = RetryPolicy(max_attempts=2, base_delay=0.001, max_delay=0.01, max_wait=5)
    with open_store(repo, remote=None, retry=quick) as store, pytest.raises(ContentionError):
        store.transact(bump, Transition("count", "blocked"))
    old = time.time() - STALE_LOCK_AGE - 60
    os.utime(lock, (old, old))  # ... or a git that was killed long ago left it behind
    with open_store(repo, remote=None, retry=quick) as store, pytest.raises(GitCommandError) as caught:
        store.transact(bump, Transition("count", "stale"))
    assert str(lock) in caught.value.one_line() and "remove it" in caught.value.one_line()
    lock.unlink()
    with open_store(repo, remote=None) as store:
        assert store.transact(bump, Transition("count", "free again")).applied
    assert len(state_log(repo)) == 2


def test_a_writer_killed_before_publishing_leaves_the_branch_consistent(
    make_local: Callable[..., Path],
) -> None:
    repo = make_local()
    with open_store(repo, remote=None) as store:
        store.transact(bump, Transition("count", "before"))
    tip = state_log(repo)[0]
    packs = repo / ".git" / "objects" / "pack"
    known = set(packs.iterdir())
    victim = writer(repo, "v", 1, env={TEST_PAUSE_ENV: "60"})
    deadline = time.monotonic() + 30
    while set(packs.iterdir()) - known == set():  # its commit is written, update-ref is next
        assert victim.poll() is None, victim.communicate()
        assert time.monotonic() < deadline, "the writer never wrote its commit"
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.communicate(timeout=10)
    assert state_log(repo)[0] == tip
    with open_store(repo, remote=None) as store:
        result = store.transact(bump, Transition("count", "after"))
        assert result.attempts == 1 and result.snapshot.documents["counters/c.json"]["n"] == 2


def test_bad_local_state_is_refused_not_overwritten(make_local: Callable[..., Path]) -> None:
    # someone else's branch of the same name
    foreign = make_local("foreign")
    git(foreign, "branch", "squals/state", "main")
    with (
        open_store(foreign, remote=None) as store,
        pytest.raises(
            UnrelatedHistoryError, match=r"'squals/state' in this repository .* not a squals state branch"
        ),
    ):
        store.transact(bump, Transition("count", "x"))
    assert git(foreign, "rev-parse", "squals/state") == git(foreign, "rev-parse", "main")

    # a corrupt document committed by hand names file and commit
    repo = make_local("corrupt")
    with open_store(repo, remote=None) as store:
        store.put_environment(EnvironmentState("prod", "live", version="1.0"), Transition("promote", "seed"))
    blob = subprocess.run(
        ["git", "hash-object", "-w", "--stdin"],
        cwd=repo,
        input='{"schema_version": 1,',
        text=True,
        capture_output=True,
        check=True,
        timeout=30,
    ).stdout.strip()
    index = repo / ".git" / "hand-index"
    env = {"GIT_INDEX_FILE": str(index)}
    git(repo, "read-tree", "squals/state", env=env)
    git(repo, "update-index", "--add", "--cacheinfo", f"100644,{blob},environments/prod.json", env=env)
    tree = git(repo, "write-tree", env=env).strip()
    bad = git(repo, "commit-tree", tree, "-p", "squals/state", "-m", "edit by hand").strip()
    git(repo, "update-ref", STATE_REF, bad)
    with (
        open_store(repo, remote=None) as store,
        pytest.raises(CorruptStateError, match=rf"environments/prod.json at commit {bad[:12]}"),
    ):
        store.transact(bump, Transition("count", "x"))
    assert git(repo, "rev-parse", "squals/state").strip() == bad

    # history rewritten under a store that read it before, and a branch that vanished
    rewritten = make_local("rewritten")
    with open_store(rewritten, remote=None) as store:
        store.transact(bump, Transition("count", "one"))
        first = store.read().commit
        store.transact(bump, Transition("count", "two"))
    assert first is not None
    with open_store(rewritten, remote=None) as store:
        orphan = git(rewritten, "commit-tree", "-m", "unrelated", f"{first}^{{tree}}").strip()
        git(rewritten, "update-ref", STATE_REF, orphan)  # as `git branch -f squals/state <other>` would
        with pytest.raises(UnrelatedHistoryError, match="does not descend from"):
            store.read()
    assert git(rewritten, "rev-parse", STATE_REF).strip() == orphan  # refused, not merged or moved
    git(rewritten, "update-ref", "-d", STATE_REF)
    with open_store(rewritten, remote=None) as store, pytest.raises(UnrelatedHistoryError, match="vanished"):
        store.transact(bump, Transition("count", "start over?"))
    assert "refs/squals-local/squals/state" in git(rewritten, "for-each-ref", "--format=%(refname)")


def test_a_checked_out_state_branch_is_not_moved(make_local: Callable[..., Path], tmp_path: Path) -> None:
    repo = make_local()
    with open_store(repo, remote=None) as store:
        store.transact(bump, Transition("count", "one"))
    git(repo, "worktree", "add", "-q", str(tmp_path / "look"), "squals/state")
    tip = state_log(repo)[0]
    with open_store(repo, remote=None) as store, pytest.raises(StateError, match="is checked out in"):
        store.transact(bump, Transition("count", "two"))
    assert state_log(repo)[0] == tip


def test_choose_remote(make_local: Callable[..., Path], make_clone: Callable[..., Path]) -> None:
    laptop = make_local()
    assert choose_remote(laptop) is None  # no remote at all: local-only
    assert choose_remote(laptop, "upstream") is None
    clone = make_clone()
    assert choose_remote(clone) == "origin"
    assert choose_remote(clone, "") is None and choose_remote(clone, None) is None  # asked for local
    with pytest.raises(StateError, match=r"no remote 'upstream' \(it has: origin\).*--local-state"):
        choose_remote(clone, "upstream")


def test_local_mode_in_a_clone_keeps_its_own_branch_and_pushes_nothing(
    make_clone: Callable[..., Path], origin: Path
) -> None:
    clone = make_clone()
    with open_store(clone, remote=None) as store:
        store.transact(bump, Transition("count", "local"))
    assert state_log(origin) == [] and len(state_log(clone)) == 1
    with open_store(clone) as remote_store:  # the remote's state is a separate thing
        assert remote_store.read().commit is None


def test_a_packed_state_branch_is_read_and_moved(tmp_path: Path) -> None:
    repo = make_local_repo(tmp_path / "packed")
    with open_store(repo, remote=None) as store:
        store.transact(bump, Transition("count", "one"))
    git(repo, "pack-refs", "--all")  # after `git gc` the branch lives in packed-refs, no loose file
    assert not (repo / ".git" / STATE_REF).exists()
    with open_store(repo, remote=None) as store:
        result = store.transact(bump, Transition("count", "two"))
        assert result.snapshot.documents["counters/c.json"]["n"] == 2
    assert len(state_log(repo)) == 2
