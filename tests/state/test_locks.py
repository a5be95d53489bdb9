"""Environment locks held by pull requests: refusal naming the holder, expiry, renewal, release when a PR
closes, and a person breaking a lock on the record. The rules live in the shared base class, so most checks
run on the in-memory store; one runs the whole story on git."""

from __future__ import annotations

import dataclasses
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from squals_action.state import (
    BusyError,
    Documents,
    Holder,
    LockedError,
    StaleLockError,
    StateStore,
    Transition,
    open_memory_store,
    open_store,
)
from tests.support.state import git

T0 = datetime(2026, 5, 1, 12, 0, 0, tzinfo=UTC)


@pytest.fixture
def store() -> StateStore:
    return open_memory_store()


def test_a_second_pr_is_refused_naming_the_holder_and_since_when(store: StateStore) -> None:
    store.acquire_lock("prod", pr=12, run_id="900", actor="alice", ttl=3600, now=T0)
    with pytest.raises(LockedError) as caught:
        store.acquire_lock("prod", pr=13, run_id="901", now=T0 + timedelta(minutes=5))
    assert caught.value.lock.pr == 12 and caught.value.lock.acquired_at == T0
    assert caught.value.one_line() == (
        "environment 'prod' is locked by PR #12 since 2026-05-01T12:00:00Z (run 900, expires "
        "2026-05-01T13:00:00Z); wait for it, or break it with `squals unlock prod`"
    )
    assert [e.event for e in store.history()] == ["lock"]  # the refusal records nothing


def test_the_holder_renews_and_keeps_its_since(store: StateStore) -> None:
    store.acquire_lock("prod", pr=12, ttl=60, now=T0)
    renewed = store.acquire_lock("prod", pr=12, ttl=60, run_id="2", now=T0 + timedelta(seconds=30))
    assert renewed.acquired_at == T0 and renewed.expires_at == T0 + timedelta(seconds=90)


def test_an_expired_lock_is_taken_over(store: StateStore) -> None:
    store.acquire_lock("prod", pr=12, ttl=60, now=T0)
    taken = store.acquire_lock("prod", pr=13, ttl=None, run_id="b", now=T0 + timedelta(seconds=61))
    assert taken.pr == 13 and taken.acquired_at == T0 + timedelta(seconds=61) and taken.expires_at is None
    with pytest.raises(LockedError, match="PR #13"):
        store.acquire_lock("prod", pr=12, now=T0 + timedelta(days=365))


def test_closing_a_pr_releases_all_its_locks_in_one_transition(store: StateStore) -> None:
    store.acquire_lock("prod", pr=12, run_id="1")
    store.acquire_lock("postprod", pr=12, run_id="2")
    store.acquire_lock("pr-14", pr=14, run_id="3")
    assert store.release_locks_of_pr(12, run_id="close-12", actor="github") == ["postprod", "prod"]
    assert sorted(store.read().locks()) == ["pr-14"]
    assert store.release_locks_of_pr(12, run_id="close-12-again") == []  # nothing held: nothing recorded
    assert [e.event for e in store.history()] == ["release-locks", "lock", "lock", "lock"]
    store.acquire_lock("prod", pr=15)


def test_release_only_by_the_holder(store: StateStore) -> None:
    store.acquire_lock("prod", pr=12)
    assert store.release_lock("prod", pr=13) is False
    assert store.release_lock("prod", pr=12) is True
    assert store.read().lock("prod") is None


def test_a_person_breaks_a_lock_and_it_is_recorded_with_who(store: StateStore) -> None:
    store.acquire_lock("prod", pr=12, run_id="1", actor="alice")
    broken = store.break_lock("prod", actor="bob")
    assert broken is not None and broken.pr == 12
    entry = store.history("prod")[0]
    assert (entry.event, entry.actor, entry.summary) == ("break-lock", "bob", "bob broke the lock of prod")
    assert store.break_lock("prod", actor="bob") is None


def test_a_transition_can_depend_on_the_lock_in_the_same_commit(store: StateStore) -> None:
    store.acquire_lock("prod", pr=12)

    def promote(pr: int) -> Callable[[Documents], Documents]:
        def fn(docs: Documents) -> Documents:
            docs.require_lock("prod", pr)
            docs["counters/promotions.json"] = {"schema_version": 1, "last": pr}
            return docs

        return fn

    store.transact(promote(12), Transition("promote", "by the holder"))
    with pytest.raises(LockedError):
        store.transact(promote(13), Transition("promote", "by another"))
    assert store.read().documents["counters/promotions.json"]["last"] == 12


def test_replaying_a_lock_event_returns_the_lock(store: StateStore) -> None:
    first = store.acquire_lock("prod", pr=12, run_id="7", now=T0)
    again = store.acquire_lock("prod", pr=12, run_id="7", now=T0 + timedelta(minutes=1))
    assert again == first
    assert len(store.history()) == 1


def test_one_run_locks_two_environments_and_locks_again_after_a_release(store: StateStore) -> None:
    store.acquire_lock("prod", pr=12, run_id="5")
    store.acquire_lock("postprod", pr=12, run_id="5")  # same run, same event, another environment
    assert sorted(store.read().locks()) == ["postprod", "prod"]
    assert store.release_lock("prod", pr=12, run_id="5")
    again = store.acquire_lock("prod", pr=12, run_id="5")  # same run asks again: a new acquisition
    assert again.pr == 12 and store.read().lock("prod") == again
    assert [e.event for e in store.history("prod")] == ["lock", "unlock", "lock"]


def test_locks_between_two_clones_on_git(make_clone: Callable[..., Path], origin: Path) -> None:
    with open_store(make_clone("a")) as a, open_store(make_clone("b")) as b:
        a.acquire_lock("prod", pr=12, run_id="1", actor="alice", ttl=600)
        with pytest.raises(LockedError, match="PR #12"):
            b.acquire_lock("prod", pr=13, run_id="2")
        assert b.break_lock("prod", actor="bob") is not None
        b.acquire_lock("prod", pr=13, run_id="3")
        assert a.release_locks_of_pr(13, run_id="close-13") == ["prod"]
    with open_store(make_clone("reader")) as reader:
        trail = [(e.event, e.environment, e.pr, e.actor) for e in reader.history()]
    assert trail == [
        ("release-locks", None, 13, None),
        ("lock", "prod", 13, None),
        ("break-lock", "prod", None, "bob"),
        ("lock", "prod", 12, "alice"),
    ]
    assert "Squals-Actor: bob" in git(origin, "log", "-1", "--skip=2", "--format=%B", "squals/state")


# ---- locks held per run ---------------------------------------------------------------------------------


def _gone_holder() -> Holder:
    """A holder whose process ran on this machine and has exited."""
    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return dataclasses.replace(Holder.current(), pid=int(proc.stdout))


def test_a_second_run_of_the_same_pr_is_refused_naming_its_process(store: StateStore) -> None:
    first, second = Holder.current(), Holder.current()
    store.acquire_lock("pr-22", pr=22, ttl=600, holder=first, operation="deploy", now=T0)
    with pytest.raises(BusyError) as caught:
        store.acquire_lock("pr-22", pr=22, ttl=600, holder=second, operation="deploy", now=T0)
    assert caught.value.one_line() == (
        f"pr-22 is being deployed by another run (pid {os.getpid()} on {socket.gethostname()}, since "
        "2026-05-01T12:00:00Z, expires 2026-05-01T12:10:00Z); wait for it (--lock-wait), or if that run is "
        "gone, break the lock with `squals unlock pr-22`"
    )
    assert store.release_lock("pr-22", pr=22, holder=second) is False  # not its lock: nothing released
    assert store.read().lock("pr-22") is not None
    again = store.acquire_lock("pr-22", pr=22, ttl=600, holder=first, now=T0 + timedelta(seconds=5))
    assert again.acquired_at == T0  # the holder itself renews
    assert [e.event for e in store.history()] == ["lock", "lock"]


def test_a_lock_whose_holder_died_on_this_machine_is_stale_and_says_what_to_run(store: StateStore) -> None:
    store.acquire_lock("pr-22", pr=22, ttl=600, holder=_gone_holder(), operation="deploy", now=T0)
    for pr in (22, 23):  # the same PR or another: never taken over silently, never waited for
        started = time.monotonic()
        with pytest.raises(StaleLockError, match=r"no longer running \(pid \d+ on .*`squals unlock pr-22`"):
            store.acquire_lock("pr-22", pr=pr, holder=Holder.current(), wait=30, now=T0)
        assert time.monotonic() - started < 5
    assert store.break_lock("pr-22", actor="me") is not None
    store.acquire_lock("pr-22", pr=22, holder=Holder.current())


def test_a_second_run_waits_for_the_lock_within_its_bound(store: StateStore) -> None:
    first = Holder.current()
    store.acquire_lock("pr-22", pr=22, holder=first)
    releaser = threading.Timer(1.0, lambda: store.release_lock("pr-22", pr=22, holder=first))
    releaser.start()
    started = time.monotonic()
    store.acquire_lock("pr-22", pr=22, holder=Holder.current(), wait=20)
    assert 0.9 < time.monotonic() - started < 10
    with pytest.raises(BusyError):  # and a bound that runs out ends in the refusal
        store.acquire_lock("pr-22", pr=22, holder=Holder.current(), wait=1.2)
    releaser.join()


def test_a_rerun_of_the_same_workflow_run_takes_its_lock_over(store: StateStore) -> None:
    store.acquire_lock("pr-22", pr=22, run_id="77", attempt=1, holder=Holder.current())
    taken = store.acquire_lock("pr-22", pr=22, run_id="77", attempt=2, holder=Holder.current())
    assert taken.run_id == "77"
    with pytest.raises(BusyError, match="run 77, pid"):
        store.acquire_lock("pr-22", pr=22, run_id="78", holder=Holder.current())
