"""Bad state is refused, never repaired by overwriting: corrupt documents name file and commit, a branch with
unrelated or rewritten history is not merged, a branch that vanished is not silently started over."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from squals_action.state import (
    CorruptStateError,
    Documents,
    EnvironmentState,
    StateStore,
    Transition,
    UnrelatedHistoryError,
    open_store,
)
from squals_action.state.git_store import GitStateStore
from tests.support.state import git, state_log


def bump(docs: Documents) -> Documents:
    doc = docs.get("counters/c.json", {"schema_version": 1, "n": 0})
    doc["n"] += 1
    docs["counters/c.json"] = doc
    return docs


def edit_by_hand(origin: Path, tmp_path: Path, path: str, content: str, *, name: str = "human") -> str:
    """Commit ``content`` at ``path`` on the state branch as a person would and push it; the commit."""
    human = tmp_path / name
    git(tmp_path, "clone", "-q", "--branch", "squals/state", str(origin), str(human))
    target = human / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(content)
    git(human, "add", path)
    git(human, "commit", "-q", "-m", f"edit {path} by hand")
    git(human, "push", "-q", "origin", "squals/state")
    return git(human, "rev-parse", "HEAD").strip()


@pytest.fixture
def seeded(git_store: StateStore) -> StateStore:
    git_store.put_environment(EnvironmentState("prod", "live", version="1.0"), Transition("promote", "seed"))
    return git_store


CORRUPTIONS = [
    ('{"schema_version": 1, "name": "prod",', r"not JSON: .* at line 1, column \d+"),
    ('["a list"]', "expected a JSON object, found list"),
    ('{"schema_version": 1, "name": "prod", "status": "live", "traffic_share": "all"}', "at traffic_share"),
    ('{"schema_version": 2, "name": "prod", "status": "live", "traffic_share": 1}', "at schema_version"),
    (
        '{"schema_version": 1, "name": "staging", "status": "live", "traffic_share": 1}',
        "at name: .* does not match",
    ),
    # as deep as an attacker likes: the parser's own stack would give up first (RecursionError, exit 70)
    ("[" * 200_000, "nested deeper than 64 levels"),
    ('{"a":' * 65 + "1" + "}" * 65, "nested deeper than 64 levels"),
    ('{"schema_version": 1, "name": "prod", "status": "live", "traffic_share": 1e400}', "not JSON: .*finite"),
    ('{"schema_version": 1, "name": "prod", "status": "live", "traffic_share": NaN}', "not JSON: NaN"),
]


def test_a_corrupt_document_names_file_and_commit_and_is_not_overwritten(
    seeded: StateStore, origin: Path, tmp_path: Path
) -> None:
    for number, (content, reason) in enumerate(CORRUPTIONS):
        bad = edit_by_hand(origin, tmp_path, "environments/prod.json", content, name=f"human{number}")
        with pytest.raises(
            CorruptStateError, match=rf"environments/prod.json at commit {bad[:12]}: {reason}"
        ) as caught:
            seeded.read()
        assert caught.value.path == "environments/prod.json" and caught.value.commit == bad
        with pytest.raises(CorruptStateError):
            seeded.transact(bump, Transition("count", "must not write"))
        assert state_log(origin)[0] == bad
        assert git(origin, "show", "squals/state:environments/prod.json") == content


def test_a_corrupt_lock_document_is_reported_in_one_line(
    seeded: StateStore, origin: Path, tmp_path: Path
) -> None:
    doc = '{"schema_version": 1, "environment": "prod", "pr": "x", "acquired_at": "2026-01-01T00:00:00Z"}'
    edit_by_hand(origin, tmp_path, "locks/prod.json", doc)
    with pytest.raises(CorruptStateError) as caught:
        seeded.acquire_lock("prod", pr=1)
    line = caught.value.one_line()
    assert "\n" not in line
    assert "locks/prod.json" in line and "at pr: 'x' is not of type 'integer'" in line


def test_a_rewritten_branch_is_refused_not_merged(
    seeded: StateStore, make_clone: Callable[..., Path], origin: Path, tmp_path: Path
) -> None:
    seeded.transact(bump, Transition("count", "ours"))
    ours = state_log(origin)[0]
    with open_store(make_clone("rewriter"), branch="other/state") as other:  # a valid but unrelated history
        other.transact(bump, Transition("count", "theirs"))
    git(origin, "update-ref", "refs/heads/squals/state", state_log(origin, "other/state")[0])
    with pytest.raises(UnrelatedHistoryError, match=rf"does not descend from {ours[:12]}"):
        seeded.transact(bump, Transition("count", "must not write"))
    with pytest.raises(UnrelatedHistoryError):  # and it stays refused
        seeded.read()
    assert state_log(origin) == state_log(origin, "other/state")


def test_a_branch_that_is_not_squals_state_is_refused(make_clone: Callable[..., Path], origin: Path) -> None:
    main = git(origin, "rev-parse", "main").strip()
    git(origin, "update-ref", "refs/heads/squals/state", main)  # someone's code branch under that name
    with (
        open_store(make_clone()) as store,
        pytest.raises(UnrelatedHistoryError, match="not a squals state branch"),
    ):
        store.transact(bump, Transition("count", "must not write"))
    assert git(origin, "rev-parse", "squals/state").strip() == main


def test_a_branch_that_vanished_is_not_started_over(seeded: StateStore, origin: Path) -> None:
    seeded.close()  # records the tip it published in the clone's tracking ref
    git(origin, "update-ref", "-d", "refs/heads/squals/state")
    assert isinstance(seeded, GitStateStore)
    with open_store(seeded.repo_path) as again, pytest.raises(UnrelatedHistoryError, match="vanished"):
        again.transact(bump, Transition("count", "must not write"))
    assert state_log(origin) == []


@pytest.mark.parametrize("content", ["[" * 200_000, '{"schema_version": 1,'])
def test_the_cli_refuses_a_deep_document_as_it_refuses_any_bad_one(
    make_local: Callable[..., Path], tmp_path: Path, content: str
) -> None:
    """``squals status`` on a branch holding ``[`` x 200,000 (it was RecursionError, exit 70): one line naming
    the file, the exit code of every other corrupt document."""
    repo = make_local("deep")
    with open_store(repo, remote=None) as store:
        store.put_environment(EnvironmentState("prod", "live", version="1.0"), Transition("promote", "seed"))
    hand = tmp_path / "hand"
    git(repo, "worktree", "add", "-q", str(hand), "squals/state")
    (hand / "environments" / "prod.json").write_text(content)
    git(hand, "commit", "-q", "-am", "edit by hand")
    git(repo, "worktree", "remove", "--force", str(hand))
    done = subprocess.run(
        [sys.executable, "-m", "squals_action.cli", "status", "--local-state"],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert "corrupt state document environments/prod.json" in line and "Traceback" not in done.stderr
