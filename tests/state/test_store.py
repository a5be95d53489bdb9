"""The git store end to end: orphan branch, commit messages, idempotency, reading back, and the user's
checkout left alone (working tree, index, HEAD byte-identical around every operation)."""

from __future__ import annotations

import json
import os
import signal
import stat
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from squals_action.state import (
    Documents,
    EnvironmentState,
    GitCommandError,
    LockedError,
    StateError,
    StateStore,
    Transition,
    open_store,
    utc_now,
)
from tests.support.state import fingerprint, git, state_log


def bump(docs: Documents) -> Documents:
    doc = docs.get("counters/c.json", {"schema_version": 1, "n": 0})
    doc["n"] += 1
    docs["counters/c.json"] = doc
    return docs


def test_first_transaction_creates_an_orphan_branch_on_origin(
    make_clone: Callable[..., Path], origin: Path
) -> None:
    work = make_clone()
    with open_store(work) as store:
        assert store.read().commit is None
        result = store.transact(bump, Transition("count", "first", run_id="1"))
    assert result.applied and result.attempts == 1
    assert state_log(origin) == [result.commit]
    assert git(origin, "rev-list", "--parents", "-n1", "squals/state").split() == [result.commit]  # no parent
    files = git(origin, "ls-tree", "-r", "--name-only", "squals/state").split()
    assert files == ["counters/c.json", "squals-state.json"]
    assert json.loads(git(origin, "show", "squals/state:counters/c.json")) == {"n": 1, "schema_version": 1}
    assert git(origin, "for-each-ref", "--format=%(refname)", "refs/heads").split() == [
        "refs/heads/main",
        "refs/heads/squals/state",
    ]
    assert git(origin, "merge-base", "main", "squals/state", check=False) == ""  # unrelated to the code


def test_commit_message_is_a_summary_with_git_trailers(git_store: StateStore, origin: Path) -> None:
    meta = Transition(
        "promote",
        "promote pr-12\nto prod",
        environment="prod",
        pr=12,
        run_id="987",
        actor="octocat",
        attempt=2,
    )
    git_store.put_environment(EnvironmentState("prod", "live", version="1.2.3", traffic_share=100.0), meta)
    message = git(origin, "log", "-1", "--format=%B", "squals/state")
    assert message.splitlines()[0] == "promote pr-12 to prod"
    trailers = git(origin, "log", "-1", "--format=%(trailers:only,unfold)", "squals/state").split("\n")
    assert [t for t in trailers if t] == [
        "Squals-Event: promote",
        "Squals-Environment: prod",
        "Squals-PR: 12",
        "Squals-Run: 987",
        "Squals-Attempt: 2",
        "Squals-Actor: octocat",
        "Squals-Idempotency-Key: promote/987/2/prod",
    ]
    author = git(origin, "log", "-1", "--format=%an <%ae>|%cn <%ce>", "squals/state").strip()
    assert (
        author
        == "squals-bot <squals-bot@users.noreply.github.com>|squals-bot <squals-bot@users.noreply.github.com>"
    )


def test_replaying_an_event_records_no_second_transition(any_store: StateStore) -> None:
    calls = []

    def fn(docs: Documents) -> Documents:
        calls.append(1)
        return bump(docs)

    meta = Transition("promote", "promote", environment="prod", run_id="55", attempt=1)
    first = any_store.transact(fn, meta)
    again = any_store.transact(fn, meta)
    assert first.applied and not first.replayed
    assert again.replayed and not again.applied and again.commit == first.commit
    assert len(calls) == 1
    rerun = any_store.transact(
        fn, Transition("promote", "promote", environment="prod", run_id="55", attempt=2)
    )
    assert rerun.applied  # a re-run attempt of the workflow is a new transition
    assert [e.idempotency_key for e in any_store.history()] == ["promote/55/2/prod", "promote/55/1/prod"]
    assert any_store.read().documents["counters/c.json"]["n"] == 2


def test_replay_is_detected_by_a_fresh_clone(make_clone: Callable[..., Path], origin: Path) -> None:
    meta = Transition("promote", "promote", run_id="77")
    with open_store(make_clone("a")) as a:
        a.transact(bump, meta)
    with open_store(make_clone("b")) as b:
        assert b.transact(bump, meta).replayed
    assert len(state_log(origin)) == 1


def test_a_function_returning_none_records_nothing(any_store: StateStore) -> None:
    any_store.transact(bump, Transition("count", "one"))
    before = any_store.read().commit
    result = any_store.transact(lambda docs: None, Transition("count", "nothing"))
    assert not result.applied and not result.replayed and result.commit == before
    assert len(any_store.history()) == 1


def test_an_exception_in_the_function_propagates_and_writes_nothing(
    git_store: StateStore, origin: Path
) -> None:
    git_store.transact(bump, Transition("count", "one"))

    def boom(docs: Documents) -> Documents:
        raise ValueError("no")

    with pytest.raises(ValueError):
        git_store.transact(boom, Transition("count", "boom"))
    assert len(state_log(origin)) == 1


def test_documents_failing_their_schema_are_never_written(any_store: StateStore) -> None:
    def bad(docs: Documents) -> Documents:
        docs["environments/prod.json"] = {"schema_version": 1, "name": "prod", "traffic_share": 250}
        return docs

    with pytest.raises(StateError, match=r"environments/prod.json.*status"):
        any_store.transact(bad, Transition("promote", "bad"))
    with pytest.raises(StateError, match="schema_version"):
        any_store.transact(lambda d: {**d, "misc/x.json": {"a": 1}}, Transition("count", "bad"))  # type: ignore[arg-type]
    with pytest.raises(StateError, match="invalid state document path"):
        any_store.transact(lambda d: {**d, "../x.json": {"schema_version": 1}}, Transition("count", "bad"))  # type: ignore[arg-type]
    assert any_store.history() == []


def test_two_clones_see_each_others_transitions(make_clone: Callable[..., Path]) -> None:
    with open_store(make_clone("a")) as a, open_store(make_clone("b")) as b:
        a.transact(bump, Transition("count", "a1"))
        b.transact(bump, Transition("count", "b1"))
        result = a.transact(bump, Transition("count", "a2"))  # a's known tip is stale: one lost race
        assert result.attempts == 2
        assert result.snapshot.documents["counters/c.json"]["n"] == 3
        assert b.read().documents["counters/c.json"]["n"] == 3


def test_a_decision_taken_on_a_stale_tip_is_checked_on_the_real_one(make_clone: Callable[..., Path]) -> None:
    """A knows a lock that B has released since: A's refusal must not stand on what A merely remembered."""
    with open_store(make_clone("a")) as a, open_store(make_clone("b")) as b:
        a.acquire_lock("prod", pr=1, run_id="r1")
        assert b.release_locks_of_pr(1, run_id="close-1") == ["prod"]
        lock = a.acquire_lock("prod", pr=2, run_id="r2")
        assert lock.pr == 2
        assert a.release_lock("prod", pr=2) is True
        with pytest.raises(LockedError):  # and a real lock is still refused after the re-check
            b.acquire_lock("prod", pr=3) and a.acquire_lock("prod", pr=4)


def test_history_filters_by_environment_and_limits(any_store: StateStore) -> None:
    for env, event in [("pr-1", "deploy"), ("prod", "promote"), ("pr-2", "deploy"), ("prod", "rollback")]:
        any_store.put_environment(
            EnvironmentState(env, "live", updated_at=utc_now()),
            Transition(event, f"{event} {env}", environment=env),
        )
    assert [e.event for e in any_store.history("prod")] == ["rollback", "promote"]
    assert [e.environment for e in any_store.history(limit=2)] == ["prod", "pr-2"]
    assert len(any_store.history()) == 4


def test_files_added_by_hand_to_the_state_branch_survive(
    git_store: StateStore, origin: Path, tmp_path: Path
) -> None:
    git_store.transact(bump, Transition("count", "one"))
    human = tmp_path / "human"
    git(tmp_path, "clone", "-q", "--branch", "squals/state", str(origin), str(human))
    (human / "README.md").write_text("This branch holds squals state.\n")
    git(human, "add", "README.md")
    git(human, "commit", "-q", "-m", "explain the branch")
    git(human, "push", "-q", "origin", "squals/state")
    git_store.transact(bump, Transition("count", "two"))
    assert git(origin, "show", "squals/state:README.md") == "This branch holds squals state.\n"
    assert git_store.read().documents["counters/c.json"]["n"] == 2


def test_the_users_checkout_is_byte_identical_around_every_operation(
    make_clone: Callable[..., Path],
) -> None:
    work = make_clone("user", dirty=True)
    other = open_store(make_clone("other"))
    before = fingerprint(work)
    with open_store(work) as store:
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
            assert fingerprint(work) == before
    other.close()
    assert git(work, "rev-parse", "--abbrev-ref", "HEAD").strip() == "HEAD"  # still detached where it was


def test_a_git_call_that_hangs_is_killed_at_the_timeout(
    make_clone: Callable[..., Path], tmp_path: Path
) -> None:
    work = make_clone()
    pid_file = tmp_path / "hang.pid"
    script = tmp_path / "hang.sh"
    script.write_text(f"#!/bin/sh\necho $$ > {pid_file}\nexec sleep 30\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    git(work, "config", "remote.origin.uploadpack", str(script))
    started = time.monotonic()
    with open_store(work, timeout=1) as store, pytest.raises(GitCommandError, match="timed out after 1s"):
        store.read()
    assert time.monotonic() - started < 20
    pid = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):
        for _ in range(50):
            os.kill(pid, 0)
            time.sleep(0.05)
        os.kill(pid, signal.SIGKILL)
        raise AssertionError("the hanging upload-pack survived the timeout")


def test_a_remote_that_cannot_be_reached_is_one_clear_error(make_clone: Callable[..., Path]) -> None:
    work = make_clone()
    git(work, "remote", "set-url", "origin", str(work.parent / "nowhere.git"))
    with (
        open_store(work) as store,
        pytest.raises(GitCommandError, match="cannot fetch state branch 'squals/state'"),
    ):
        store.read()


def test_a_limited_fetch_depth_keeps_reading_and_writing(
    make_clone: Callable[..., Path], origin: Path
) -> None:
    with open_store(make_clone("a")) as a:
        for i in range(5):
            a.transact(bump, Transition("count", f"n{i}"))
    with open_store(make_clone("b"), fetch_depth=2) as b:
        assert b.read().documents["counters/c.json"]["n"] == 5
        assert len(b.history()) == 2  # only as deep as fetched
        b.transact(bump, Transition("count", "shallow writer"))
    assert len(state_log(origin)) == 6
    assert git(origin, "fsck", "--strict", check=False) is not None


def test_another_branch_name_and_remote_name(make_clone: Callable[..., Path], origin: Path) -> None:
    work = make_clone()
    git(work, "remote", "rename", "origin", "upstream")
    with open_store(work, remote="upstream", branch="ops/state") as store:
        store.transact(bump, Transition("count", "one"))
    assert len(state_log(origin, "ops/state")) == 1
    assert state_log(origin) == []


@pytest.mark.parametrize(
    ("line", "race"),
    [
        ("!\tabc:refs/heads/squals/state\t[rejected] (fetch first)", True),
        ("!\tabc:refs/heads/squals/state\t[rejected] (non-fast-forward)", True),
        (
            "!\tabc:refs/heads/squals/state\t[remote rejected] (cannot lock ref 'refs/heads/squals/state')",
            True,
        ),
        ("!\tabc:refs/heads/squals/state\t[remote rejected] (failed to update ref)", True),
        ("!\tabc:refs/heads/squals/state\t[remote rejected] (pre-receive hook declined)", False),
        ("!\tabc:refs/heads/squals/state\t[remote rejected] (protected branch hook declined)", False),
    ],
)
def test_a_lost_race_is_told_apart_from_a_refusal(line: str, race: bool) -> None:
    from squals_action.state.publish import _lost_race, _porcelain_status

    status = _porcelain_status(f"To origin\n{line}\nDone\n", "squals/state")
    assert status is not None and status[0] == "!"
    assert _lost_race(status[1]) is race
