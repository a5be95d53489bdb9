"""The git implementation of the state store: JSON documents on an orphan branch, one commit per transition.

The branch lives on a remote (``origin``, the CI case) or, in local-only mode, in the repository itself
(``refs/heads/squals/state``, the laptop case). The two differ only in a small
:class:`~squals_action.state.publish.Publisher`: how the tip is read and how a new commit is published with
a compare-and-swap -- a non-forced ``git push`` to the remote, or ``git update-ref <branch> <new> <old>``
locally. Everything else -- commits, idempotency, retries, refusals, history -- is this module: the
transaction loop. Objects are read and written by :mod:`squals_action.state.git_objects`, git is run by
:mod:`squals_action.state.git_repo`.

How it stays out of the user's way and safe under concurrent writers:

* It never touches the working tree, the index or HEAD. The blobs, trees and commit of a transition are
  written as one pack straight into the object database (GitPython's ``gitdb`` writes pack and index);
  objects are read through one long-lived ``git cat-file --batch``. The only ref it moves locally is its
  private ``refs/squals/<remote>/<branch>``, the last tip it saw (updated by fetches and at ``close()``);
  in local-only mode also the state branch itself, and the private ref is ``refs/squals-local/<branch>``.
* It fetches only the state branch (``--refmap=``, so no remote-tracking ref moves either) and publishes
  with a plain, non-forced ``git push <sha>:refs/heads/<branch>``: the push *is* the compare-and-swap.
  A push refused for another reason than a race (a protected branch, a hook) fails at once with the
  remote's message.
* Within one process it is optimistic: after its own push it builds the next commit on the tip it knows,
  without fetching (a stale tip only costs one rejected push, and a decision taken on a tip it did not fetch
  -- a refusal, "nothing to do" -- is checked again on a fetched one).
* A writer that lost a race fetches, backs off (binary exponential, full jitter, in slots of its measured
  attempt time) and then waits until the branch stays still between two cheap ``git ls-remote`` looks
  before it tries again: while another writer publishes a run of transitions, the others do not burn
  fetches and pushes that are bound to lose. Pushes are bounded by ``RetryPolicy.max_attempts``, waiting by
  ``RetryPolicy.max_wait``; then :class:`ContentionError`.
* Every git call runs with a timeout in its own process group, with hooks disabled, no prompts and the C
  locale.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType

from squals_action.faults import point
from squals_action.state.archive import archive_path, to_archive
from squals_action.state.errors import ContentionError, StateError, UnrelatedHistoryError
from squals_action.state.git_log import read_history
from squals_action.state.git_objects import MODE_BLOB, MODE_TREE, ObjectDatabase, is_document, parse_commit
from squals_action.state.git_repo import GitRepo
from squals_action.state.interface import DEFAULT_BRANCH, StateStore, TransactionFn, TransactionResult
from squals_action.state.layout import ARCHIVE_DIR, META_PATH, JsonObject, dumps_document, dumps_marker
from squals_action.state.publish import LocalPublisher, Publisher, RemotePublisher
from squals_action.state.retry import RetryPolicy
from squals_action.state.trace import Trace
from squals_action.state.transitions import HistoryEntry, Transition
from squals_action.state.upkeep import Upkeep
from squals_action.state.validation import parse_document, prepare_documents
from squals_action.state.view import Snapshot

#: The identity of every state commit, so no git config is needed on the runner.
COMMITTER_NAME = "squals-bot"
COMMITTER_EMAIL = "squals-bot@users.noreply.github.com"
#: How many recent idempotency keys the branch remembers (in ``squals-state.json``).
RECENT_KEYS = 1000
#: Ceiling of the backoff window, in slots (one slot: the measured duration of one attempt).
_MAX_SLOTS = 32
#: Seconds to sleep between writing the commit and pushing it; only the crash tests set it.
TEST_PAUSE_ENV = "SQUALS_STATE_TEST_PAUSE_BEFORE_PUSH"


@dataclass
class _Tip:
    """Everything known about one commit of the state branch: its entries, parsed documents and marker."""

    commit: str | None
    #: path -> (mode, sha) of every file, documents or not
    entries: dict[str, tuple[str, str]] = field(default_factory=dict)
    docs: dict[str, JsonObject] = field(default_factory=dict)
    recent_keys: list[str] = field(default_factory=list)

    def snapshot(self) -> Snapshot:
        return Snapshot(commit=self.commit, documents=MappingProxyType(self.docs))


class GitStateStore(StateStore):
    """JSON documents on a git branch, one commit per transition, published by non-forced push to
    ``remote`` -- or, with ``remote=None``, by ``git update-ref <new> <old>`` on the repository's own branch.

    Create it with :func:`squals_action.state.open_store`. One instance is not thread-safe; several processes
    and several clones (local-only: several processes on one repository) may write at once.
    """

    def __init__(
        self,
        repo_path: Path,
        *,
        remote: str | None = "origin",
        branch: str = DEFAULT_BRANCH,
        retry: RetryPolicy | None = None,
        fetch_depth: int | None = None,
        timeout: float = 60.0,
        git_env: Mapping[str, str] | None = None,
    ) -> None:
        self.repo_path = Path(repo_path)
        #: the remote that holds the branch; ``None``: local-only, the branch is in this repository
        self.remote = remote or None
        self.branch = branch
        self.retry = retry or RetryPolicy()
        self.fetch_depth = fetch_depth
        self.timeout = timeout
        self._repo = GitRepo(self.repo_path, timeout=timeout, env=git_env)
        self._publisher: Publisher = (
            RemotePublisher(self._repo, branch, self.remote)
            if self.remote
            else LocalPublisher(self._repo, branch)
        )
        self.tracking_ref = self._publisher.tracking_ref
        self._objects = ObjectDatabase(self._repo)
        self._blob_docs: dict[str, JsonObject] = {}
        self._tips: dict[str, _Tip] = {}
        self._tip: str | None = None  # last tip seen on the remote, None: not fetched yet or no branch
        self._fetched = False
        # Backoff state, kept between transactions while contended: a window of ``_slots`` slots of ``_slot``
        # seconds (the measured duration of one attempt), doubled on each lost race, halved on a clean win.
        self._slots = 0
        self._slot = self.retry.base_delay
        self._warm = False
        self._remote_tip_seen: str | None = None
        self._recorded: str | None = None  # what the tracking ref holds, as far as this store knows
        self._rng = random.Random()
        self._trace = Trace()
        self._upkeep = Upkeep(self._repo, self._trace)
        if not branch or branch.startswith(("-", "/")) or ".." in branch or branch.endswith(("/", ".lock")):
            raise StateError(f"invalid state branch name {branch!r}")

    # ------------------------------------------------------------------------------------------------ public

    @property
    def local(self) -> bool:
        """Whether the branch is this repository's own (local-only mode) rather than a remote's."""
        return self.remote is None

    def read(self) -> Snapshot:
        """Fetch the state branch and return its documents (``commit=None`` while it does not exist)."""
        return self._load(self._fetch()).snapshot()

    def transact(self, fn: TransactionFn, meta: Transition) -> TransactionResult:
        key = meta.idempotency_key
        attempts = 0
        started = time.monotonic()
        fetch = not self._fetched
        verified = False  # the tip we build on was confirmed current during this transaction
        while True:
            attempts += 1
            began = time.monotonic()
            if fetch:
                with self._trace.step("fetch"):
                    self._fetch()
                verified = True
            tip = self._load(self._tip)
            if key is not None and key in tip.recent_keys:
                return TransactionResult(
                    commit=tip.commit,
                    applied=False,
                    replayed=True,
                    attempts=attempts,
                    snapshot=tip.snapshot(),
                )
            try:
                result = fn(tip.snapshot().working_copy())
            except StateError:
                if not verified:  # decided on a tip we only remembered: check again on the real one
                    attempts, fetch = attempts - 1, True
                    continue
                raise
            if result is None:
                if not verified:
                    attempts, fetch = attempts - 1, True
                    continue
                return TransactionResult(
                    commit=tip.commit,
                    applied=False,
                    replayed=False,
                    attempts=attempts,
                    snapshot=tip.snapshot(),
                )
            with self._trace.step("build"):
                new_tip = self._write_commit(tip, prepare_documents(result, tip.docs), meta)
            assert new_tip.commit is not None
            pause = os.environ.get(TEST_PAUSE_ENV)
            if pause:
                time.sleep(float(pause))
            step = f"{meta.event}@{meta.environment}" if meta.environment else meta.event
            point(f"before-commit:{step}")  # kill points of the fault sweep (squals_action.faults)
            with self._trace.step("push", str(attempts)):
                won = self._publisher.publish(new_tip.commit, tip.commit)
            if won:
                point(f"after-commit:{step}")
                self._remember(new_tip)
                self._slots = 0
                self._upkeep.after_write()  # outside the critical section: the branch has moved
                return TransactionResult(
                    commit=new_tip.commit,
                    applied=True,
                    replayed=False,
                    attempts=attempts,
                    snapshot=new_tip.snapshot(),
                )
            if fetch and self._warm:  # the slot: how long a full read-modify-push takes here, now
                self._slot = max(self.retry.base_delay, time.monotonic() - began)
            self._warm = True  # the first attempt also paid for start-up (imports, processes): not a slot
            self._wait_for_quiet(attempts, started)
            fetch = self._remote_tip_seen != self._tip
            verified = not fetch

    def _wait_for_quiet(self, attempts: int, since: float) -> None:
        """After a lost race: learn the new tip, then wait until the branch stays still for one sleep.

        The first sleep is binary exponential backoff with full jitter in slots (one slot: the measured
        duration of one attempt), which spreads the losers of one race apart. While another writer keeps
        publishing, each look costs one ``git ls-remote`` (locally: a ref read) instead of a wasted fetch
        and push, about once a slot (locally: twice a slot; never more than ``max_delay`` apart), so the
        branch is taken over soon after a run ends; the wait ends with :class:`ContentionError` after
        ``max_wait``.
        """
        self._slots = min(_MAX_SLOTS, max(1, self._slots * 2))
        if attempts >= self.retry.max_attempts:
            raise ContentionError(self.branch, attempts)
        with self._trace.step("fetch", "lost"):
            baseline = self._fetch()
        pause = min(self.retry.max_delay, self._rng.uniform(0, self._slots * self._slot))
        while True:
            with self._trace.step("sleep", f"{pause:.4f}"):
                time.sleep(pause)
            with self._trace.step("peek"):
                seen = self._publisher.peek()
            if seen == baseline:
                self._remote_tip_seen = seen
                return
            if time.monotonic() - since > self.retry.max_wait:
                raise ContentionError(self.branch, attempts, time.monotonic() - since)
            baseline = seen
            longest = self._publisher.longest_look(self.retry.max_delay, self._slot)
            pause = min(longest, max(pause * 1.5, self._slot) * self._rng.uniform(0.5, 1.5))

    def history(
        self, environment: str | None = None, limit: int | None = None, since: datetime | None = None
    ) -> list[HistoryEntry]:
        """Newest first, reading only the commits it returns (and, for one environment, those git skips)."""
        tip = self._fetch()
        if tip is None:
            return []
        return read_history(self._repo, tip, environment=environment, limit=limit, since=since)

    # ------------------------------------------------------------------------------------------------ fetch

    def _fetch(self) -> str | None:
        """Bring the current tip in; refuse history not descending from what we saw, or a vanished branch."""
        self._repo.locate()
        if not self._fetched and self._tip is None:
            self._tip = self._recorded = self._repo.read_ref(self.tracking_ref)
        before = self._tip
        after = self._publisher.fetch(self.fetch_depth if before is None else None)
        if after is None:
            if before is not None:
                raise UnrelatedHistoryError(
                    f"state branch {self.branch!r} vanished from {self._publisher.place} (it was at "
                    f"{before[:12]}); refusing to start a new history. To start over on purpose, run "
                    f"`git update-ref -d {self.tracking_ref}`"
                )
            self._fetched = True
            return None
        if self._publisher.fetch_records:
            self._recorded = after
        if before is not None and after != before and not self._objects.descends(after, before):
            if self._publisher.fetch_records:
                self._repo.run("update-ref", self.tracking_ref, before, after, check=False)
                self._recorded = before
            raise UnrelatedHistoryError(
                f"state branch {self.branch!r} {self._publisher.on} is now at {after[:12]}, which does not "
                f"descend from {before[:12]} read before (history rewritten?); "
                "refusing to merge or overwrite"
            )
        self._tip = after
        self._fetched = True
        return after

    # ------------------------------------------------------------------------------------------------ read

    def _load(self, commit: str | None) -> _Tip:
        """The parsed documents of ``commit`` (cached); corrupt documents raise, nothing is repaired.

        Only trees and blobs not seen before are read, through one long-lived ``git cat-file --batch``.
        """
        if commit is None:
            return _Tip(None)
        cached = self._tips.get(commit)
        if cached is not None:
            return cached
        tree, _ = parse_commit(self._objects.read(commit, "commit"))
        entries = dict(self._objects.tree_entries(tree, opaque=(ARCHIVE_DIR,)))
        if META_PATH not in entries:
            raise UnrelatedHistoryError(
                f"branch {self.branch!r} {self._publisher.on} (commit {commit[:12]}) is not a squals state "
                f"branch: no {META_PATH}; refusing to write to it"
            )
        docs: dict[str, JsonObject] = {}
        meta: JsonObject | None = None
        for path, (mode, sha) in sorted(entries.items()):
            if not is_document(path, mode):
                continue
            doc = self._blob_docs.get(sha)
            if doc is None:
                doc = parse_document(path, self._objects.read(sha, "blob"), commit)
                self._blob_docs[sha] = doc
            if path == META_PATH:
                meta = doc
            else:
                docs[path] = doc
        if meta is None:
            raise UnrelatedHistoryError(f"{META_PATH} at commit {commit[:12]} is not a regular file")
        tip = _Tip(commit, entries, docs, list(meta.get("recent_keys", [])))
        self._remember(tip, current=False)
        return tip

    def close(self) -> None:
        """Record the last published tip in the tracking ref and stop the object reader process.

        Both are optional: an unclosed store leaves the ref one step behind (the next fetch fixes it), and
        the reader stops by itself when this process exits.
        """
        if self._tip is not None and self._tip != self._recorded:
            self._repo.run("update-ref", self.tracking_ref, self._tip, check=False)
            self._recorded = self._tip
        self._objects.close()
        self._upkeep.wait()

    def _remember(self, tip: _Tip, current: bool = True) -> None:
        if len(self._tips) > 16:
            self._tips.clear()
        if len(self._blob_docs) > 20000:
            self._blob_docs.clear()
        assert tip.commit is not None
        self._tips[tip.commit] = tip
        if current:
            self._tip = tip.commit

    # ------------------------------------------------------------------------------------------------ write

    def _write_commit(self, base: _Tip, docs: Mapping[str, JsonObject], meta: Transition) -> _Tip:
        """Write the blobs, trees and commit of ``docs`` on top of ``base``; nothing is published yet.

        Retired documents beyond the few kept live move into the archive subtree (see
        :mod:`squals_action.state.archive`); only the archive's directories they land in are rewritten.
        """
        entries = {p: e for p, e in base.entries.items() if not is_document(p, e[0])}
        blob_docs: dict[str, JsonObject] = {}
        now = int(time.time())
        docs = self._archive_retired(entries, docs, datetime.fromtimestamp(now, UTC))
        for path, doc in docs.items():
            old = base.entries.get(path)
            if old is not None and base.docs.get(path) == doc:
                entries[path] = old
                continue
            sha = self._objects.add(b"blob", dumps_document(doc))
            entries[path] = (MODE_BLOB, sha)
            blob_docs[sha] = doc
        keys = list(base.recent_keys)
        key = meta.idempotency_key
        if key is not None:
            keys = ([*keys, key])[-RECENT_KEYS:]
        entries[META_PATH] = (MODE_BLOB, self._objects.add(b"blob", dumps_marker(keys)))
        tree = self._objects.write_tree(entries)
        stamp = f"{COMMITTER_NAME} <{COMMITTER_EMAIL}> {now} +0000"
        lines = [f"tree {tree}"]
        if base.commit is not None:
            lines.append(f"parent {base.commit}")
        lines += [f"author {stamp}", f"committer {stamp}", "", meta.message()]
        commit = self._objects.add(b"commit", "\n".join(lines).encode("utf-8"))
        self._objects.flush()
        self._blob_docs.update(blob_docs)
        return _Tip(commit, entries, dict(docs), keys)

    def _archive_retired(
        self, entries: dict[str, tuple[str, str]], docs: Mapping[str, JsonObject], when: datetime
    ) -> Mapping[str, JsonObject]:
        """The live documents of ``docs``; those to archive go into the archive subtree of ``entries``."""
        retiring = to_archive(docs)
        if not retiring:
            return docs
        live = dict(docs)
        moved = {}
        for path in retiring:
            blob = self._objects.add(b"blob", dumps_document(live.pop(path)))
            moved[archive_path(path, when)] = (MODE_BLOB, blob)
        archive = entries.get(ARCHIVE_DIR)
        if archive is not None and archive[0] != MODE_TREE:
            raise StateError(f"state path {ARCHIVE_DIR} is a file; the store keeps its archive there")
        tree = self._objects.tree_with(archive[1] if archive else None, moved, ARCHIVE_DIR)
        entries[ARCHIVE_DIR] = (MODE_TREE, tree)
        return live
