"""Concurrent writers, each a process with its own shallow clone: no lost update, crashes leave the branch
consistent, a refusing remote is one clear error without a retry storm, contention gives up when bounded."""

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
    Documents,
    PushRejectedError,
    RetryPolicy,
    Transition,
    open_store,
)
from squals_action.state.git_store import TEST_PAUSE_ENV
from tests.support.state import WRITER, git, state_log


def writer(
    repo: Path, writer_id: str, count: int, *, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(WRITER), str(repo), writer_id, str(count)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def bump(docs: Documents) -> Documents:
    doc = docs.get("counters/c.json", {"schema_version": 1, "n": 0})
    doc["n"] += 1
    docs["counters/c.json"] = doc
    return docs


@pytest.mark.slow
def test_eight_writers_times_twenty_five_lose_no_update(
    make_clone: Callable[..., Path], origin: Path
) -> None:
    clones = [make_clone(f"w{i}") for i in range(8)]
    procs = [writer(c, str(i), 25) for i, c in enumerate(clones)]
    reports = []
    for proc in procs:
        out, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err
        reports.append(json.loads(out))
    assert len(state_log(origin)) == 200
    counter = json.loads(git(origin, "show", "squals/state:counters/c.json"))
    assert counter == {"schema_version": 1, "n": 200, **{f"w{i}": 25 for i in range(8)}}
    journal = json.loads(git(origin, "show", "squals/state:journal/log.json"))["entries"]
    assert sorted(journal) == sorted(f"{i}-{j}" for i in range(8) for j in range(25))
    for i in range(8):  # each writer's own appends stay in its order
        assert [e for e in journal if e.startswith(f"{i}-")] == [f"{i}-{j}" for j in range(25)]
    with open_store(clones[0]) as store:
        history = store.history()
    assert len(history) == 200
    assert len({e.idempotency_key for e in history}) == 200
    assert git(origin, "fsck", "--strict", check=False) is not None


def test_a_writer_killed_mid_transaction_leaves_a_consistent_branch(
    make_clone: Callable[..., Path], origin: Path
) -> None:
    victim_repo, survivor_repo = make_clone("victim"), make_clone("survivor")
    with open_store(survivor_repo) as store:
        store.transact(bump, Transition("count", "before"))
    tip = state_log(origin)[0]
    packs = victim_repo / ".git" / "objects" / "pack"
    before = set(packs.iterdir())
    victim = writer(victim_repo, "v", 1, env={TEST_PAUSE_ENV: "60"})
    deadline = time.monotonic() + 30
    while set(packs.iterdir()) - before == set():  # its commit is written, the push is next
        assert victim.poll() is None, victim.communicate()
        assert time.monotonic() < deadline, "the writer never wrote its commit"
        time.sleep(0.05)
    time.sleep(0.1)
    victim.send_signal(signal.SIGKILL)
    victim.communicate(timeout=10)
    assert state_log(origin)[0] == tip  # nothing half-published
    assert "error" not in git(origin, "fsck", "--strict", check=False)
    with open_store(survivor_repo) as store:
        result = store.transact(bump, Transition("count", "after"))
        assert result.attempts == 1
    with open_store(victim_repo) as store:  # the killed writer's clone works too
        assert store.transact(bump, Transition("count", "victim again")).snapshot.documents[
            "counters/c.json"
        ] == {
            "schema_version": 1,
            "n": 3,
        }
    assert len(state_log(origin)) == 3


def test_a_push_refused_by_the_remote_fails_at_once_with_its_message(
    make_clone: Callable[..., Path], origin: Path, tmp_path: Path
) -> None:
    with open_store(make_clone("first")) as store:
        store.transact(bump, Transition("count", "before protection"))
    calls = tmp_path / "hook-calls"
    hook = origin / "hooks" / "pre-receive"
    hook.write_text(
        "#!/bin/sh\n"
        f"echo called >> {calls}\n"
        "echo 'GH006: Protected branch update failed for refs/heads/squals/state.' >&2\n"
        "exit 1\n"
    )
    hook.chmod(0o755)
    second = open_store(make_clone("second"), retry=RetryPolicy(max_attempts=10))
    with second as store, pytest.raises(PushRejectedError) as caught:
        store.transact(bump, Transition("count", "refused"))
    message = caught.value.one_line()
    assert "GH006: Protected branch update failed" in message
    assert "pre-receive hook declined" in message
    assert "'squals/state'" in message and "'origin'" in message
    assert calls.read_text().splitlines() == ["called"]  # one push, no retries
    assert len(state_log(origin)) == 1


def test_contention_gives_up_after_the_bounded_attempts_naming_the_branch(
    make_clone: Callable[..., Path], origin: Path
) -> None:
    """Another writer lands a commit while each attempt is being built: every push of ``slow`` loses."""
    fast = open_store(make_clone("fast"))
    slow = open_store(make_clone("slow"), retry=RetryPolicy(max_attempts=3, base_delay=0.001, max_delay=0.01))
    attempts = []

    def racing(docs: Documents) -> Documents:
        attempts.append(1)
        fast.transact(bump, Transition("count", "fast wins"))
        return bump(docs)

    with pytest.raises(ContentionError) as caught:
        slow.transact(racing, Transition("count", "slow loses"))
    assert caught.value.attempts == 3 and caught.value.branch == "squals/state"
    assert "'squals/state'" in caught.value.one_line() and "3 attempts" in caught.value.one_line()
    assert len(attempts) == 3
    assert len(state_log(origin)) == 3  # only the fast writer's commits
    fast.close()
    slow.close()
