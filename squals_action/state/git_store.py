"""The git implementation of the state store: JSON documents on an orphan branch, one commit per transition.

The branch lives on a remote (``origin``, the CI case) or, in local-only mode, in the repository itself
(``refs/heads/squals/state``, the laptop case). The two differ only in a small :class:`_Publisher`: how the
tip is read and how a new commit is published with a compare-and-swap -- a non-forced ``git push`` to the
remote, or ``git update-ref <branch> <new> <old>`` locally (git takes the ref's lock file and checks the old
value under it, so concurrent processes on one repository serialise safely). Everything else -- objects,
commits, idempotency, retries, refusals, history -- is the same code.

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
* Every git call runs with a timeout in its own process group (``git`` spawns helpers such as
  ``git-remote-https``; a timeout kills them all), with hooks disabled, no prompts and the C locale.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import random
import select
import signal
import subprocess
import tempfile
import time
import weakref
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

from squals_action.state.errors import (
    ContentionError,
    GitCommandError,
    PushRejectedError,
    StateError,
    UnrelatedHistoryError,
)
from squals_action.state.interface import DEFAULT_BRANCH, StateStore, TransactionFn, TransactionResult
from squals_action.state.layout import META_PATH, SCHEMA_VERSION, JsonObject, dumps_document
from squals_action.state.retry import RetryPolicy
from squals_action.state.transitions import HistoryEntry, Transition
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
#: A file to append one line per step of a transaction to (``bench/state.py --trace``): where time goes.
TRACE_ENV = "SQUALS_STATE_TRACE"

_MODE_BLOB = "100644"
_MODE_TREE = "40000"
# Phrases of a push that lost a race (the server saw another update land first): retried.
_RACE_PHRASES = (
    "fetch first",
    "non-fast-forward",
    "stale info",
    "cannot lock ref",
    "failed to update ref",
    "failed to lock",
    "incorrect old value",
    "already exists",
)
#: The all-zero object id: ``git update-ref`` creates the ref only if it does not exist yet.
ZERO_ID = "0" * 40
#: A ref lock file older than this (seconds) is left over from a crashed git, not held by a live writer.
STALE_LOCK_AGE = 600.0
# Variables that would make git look at another repository than the one we were given.
_REPO_ENV = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY", "GIT_COMMON_DIR",
             "GIT_NAMESPACE", "GIT_ALTERNATE_OBJECT_DIRECTORIES")


@dataclass(frozen=True)
class _GitResult:
    returncode: int
    stdout: bytes
    stderr: str


class _Trace:
    """Appends ``<epoch start> <seconds> <pid> <step> <detail>`` lines to ``$SQUALS_STATE_TRACE``, if set."""

    def __init__(self) -> None:
        self.path = os.environ.get(TRACE_ENV) or None

    @contextlib.contextmanager
    def step(self, name: str, detail: str = "") -> Any:
        if self.path is None:
            yield
            return
        wall, began = time.time(), time.monotonic()
        try:
            yield
        finally:
            line = f"{wall:.6f} {time.monotonic() - began:.6f} {os.getpid()} {name} {detail}\n"
            with open(self.path, "a", encoding="ascii") as out:
                out.write(line)


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
    ) -> None:
        self.repo_path = Path(repo_path)
        #: the remote that holds the branch; ``None``: local-only, the branch is in this repository
        self.remote = remote or None
        self.branch = branch
        self.retry = retry or RetryPolicy()
        self.fetch_depth = fetch_depth
        self.timeout = timeout
        self._publisher: _Publisher = _RemotePublisher(self.remote) if self.remote else _LocalPublisher()
        self.tracking_ref = self._publisher.tracking_ref(branch)
        self._env = {k: v for k, v in os.environ.items() if k not in _REPO_ENV}
        self._env.update({"GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C", "LANGUAGE": "C"})
        self._objects: Path | None = None
        self._common_dir: Path | None = None
        self._reader: _ObjectReader | None = None
        self._trees: dict[str, dict[str, tuple[str, str]]] = {}  # tree sha -> entries below it by path
        self._known_objects: set[str] = set()
        self._pending: dict[str, tuple[bytes, bytes]] = {}  # sha -> (kind, data), not written yet
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
        self._trace = _Trace()
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
                    commit=tip.commit, applied=False, replayed=True, attempts=attempts,
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
                    commit=tip.commit, applied=False, replayed=False, attempts=attempts,
                    snapshot=tip.snapshot(),
                )
            with self._trace.step("build"):
                new_tip = self._write_commit(tip, prepare_documents(result), meta)
            assert new_tip.commit is not None
            pause = os.environ.get(TEST_PAUSE_ENV)
            if pause:
                time.sleep(float(pause))
            with self._trace.step("push", str(attempts)):
                won = self._publisher.publish(self, new_tip.commit, tip.commit)
            if won:
                self._remember(new_tip)
                self._slots = 0
                return TransactionResult(
                    commit=new_tip.commit, applied=True, replayed=False, attempts=attempts,
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
                seen = self._publisher.peek(self)
            if seen == baseline:
                self._remote_tip_seen = seen
                return
            if time.monotonic() - since > self.retry.max_wait:
                raise ContentionError(self.branch, attempts, time.monotonic() - since)
            baseline = seen
            longest = self._publisher.longest_look(self.retry.max_delay, self._slot)
            pause = min(longest, max(pause * 1.5, self._slot) * self._rng.uniform(0.5, 1.5))

    def history(self, environment: str | None = None, limit: int | None = None) -> list[HistoryEntry]:
        tip = self._fetch()
        if tip is None:
            return []
        args = ["log", "--no-show-signature", "--no-decorate", "-z", "--format=%H%x1f%ct%x1f%B", tip]
        if limit is not None and environment is None:
            args.insert(1, f"--max-count={int(limit)}")
        out = self._git(*args).stdout.decode("utf-8", "replace")
        entries: list[HistoryEntry] = []
        for record in out.split("\0"):
            if not record.strip():
                continue
            entry = _parse_log_record(record)
            if entry is None or (environment is not None and entry.environment != environment):
                continue
            entries.append(entry)
            if limit is not None and len(entries) >= limit:
                break
        return entries

    # ------------------------------------------------------------------------------------------------ git

    def _git(self, *args: str, input: bytes | None = None, check: bool = True) -> _GitResult:
        """Run one git command in the repository with a timeout; the whole process group dies on timeout."""
        cmd = [*self._git_prefix(), *args]
        try:
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=self._env,
                start_new_session=True,
            )
        except OSError as exc:
            raise GitCommandError(f"cannot run git: {exc}") from None
        try:
            out, err = proc.communicate(input, timeout=self.timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            raise GitCommandError(
                f"git {args[0]} timed out after {self.timeout:g}s in {self.repo_path}"
            ) from None
        except BaseException:
            _kill_group(proc)
            raise
        result = _GitResult(proc.returncode, out, err.decode("utf-8", "replace"))
        if check and result.returncode != 0:
            raise GitCommandError(f"git {args[0]} failed in {self.repo_path}: {_last_lines(result.stderr)}")
        return result

    def _git_prefix(self) -> list[str]:
        return ["git", "-c", "core.hooksPath=/dev/null", "-C", str(self.repo_path)]

    def _locate(self) -> None:
        """Find the object directory and the common git directory once (worktrees share the repository's)."""
        if self._objects is not None:
            return
        out = self._git("rev-parse", "--show-object-format", "--git-common-dir", "--git-path", "objects")
        lines = out.stdout.decode().splitlines()
        if lines[0].strip() != "sha1":
            raise StateError(f"{self.repo_path} uses {lines[0].strip()} object ids; only sha1 works")
        common, objects = Path(lines[1].strip()), Path(lines[2].strip())
        self._common_dir = common if common.is_absolute() else self.repo_path / common
        self._objects = objects if objects.is_absolute() else self.repo_path / objects

    def _reader_process(self) -> _ObjectReader:
        if self._reader is None:
            self._reader = _ObjectReader(self._git_prefix(), self._env, self.timeout)
            # a store nobody closes still stops its reader when it is collected, or at interpreter exit
            weakref.finalize(self, self._reader.close)
        return self._reader

    def _store(self, kind: bytes, data: bytes) -> str:
        """Queue one object for :meth:`_flush_objects` unless it is known to exist; returns its hex sha."""
        sha = hashlib.sha1(b"%s %d\0" % (kind, len(data)) + data).hexdigest()  # noqa: S324 -- git's id
        if sha not in self._known_objects and sha not in self._pending:
            self._pending[sha] = (kind, data)
        return sha

    def _flush_objects(self) -> None:
        """Write the queued objects as one pack with its index (GitPython's gitdb writes both).

        One pack per commit instead of a loose file per blob, tree and commit: on slow disks every file
        creation costs milliseconds. The index is renamed into place last: git never sees a pack without it.
        """
        if not self._pending:
            return
        from gitdb.base import OStream  # type: ignore[import-untyped,unused-ignore]
        from gitdb.pack import PackEntity  # type: ignore[import-untyped,unused-ignore]

        objects = [
            OStream(bytes.fromhex(sha), kind, len(data), io.BytesIO(data))
            for sha, (kind, data) in self._pending.items()
        ]
        pack, index = io.BytesIO(), io.BytesIO()
        pack_sha, _ = PackEntity.write_pack(objects, pack.write, index.write, object_count=len(objects))
        self._locate()
        assert self._objects is not None
        pack_dir = self._objects / "pack"
        pack_dir.mkdir(parents=True, exist_ok=True)
        name = f"pack-{pack_sha.hex()}"
        for suffix, buffer in ((".pack", pack), (".idx", index)):
            fd, tmp = tempfile.mkstemp(prefix="tmp_squals_", dir=pack_dir)
            with os.fdopen(fd, "wb") as out:
                out.write(buffer.getvalue())
                out.flush()
                os.fsync(out.fileno())  # as git does for packs: a crash never leaves a torn pack behind
            os.chmod(tmp, 0o444)
            os.replace(tmp, pack_dir / f"{name}{suffix}")
        self._known_objects.update(self._pending)
        self._pending.clear()

    # ------------------------------------------------------------------------------------------------ fetch

    def _fetch(self) -> str | None:
        """Bring the current tip in; refuse history not descending from what we saw, or a vanished branch."""
        self._locate()
        if not self._fetched and self._tip is None:
            self._tip = self._recorded = self._read_ref(self.tracking_ref)
        before = self._tip
        after = self._publisher.fetch(self, self.fetch_depth if before is None else None)
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
        if before is not None and after != before and not self._descends(after, before):
            if self._publisher.fetch_records:
                self._git("update-ref", self.tracking_ref, before, after, check=False)
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
        tree, _ = _parse_commit(self._read_object(commit, "commit"))
        entries = dict(self._tree_entries(tree))
        if META_PATH not in entries:
            raise UnrelatedHistoryError(
                f"branch {self.branch!r} {self._publisher.on} (commit {commit[:12]}) is not a squals state "
                f"branch: no {META_PATH}; refusing to write to it"
            )
        docs: dict[str, JsonObject] = {}
        meta: JsonObject | None = None
        for path, (mode, sha) in sorted(entries.items()):
            if not _is_document(path, mode):
                continue
            doc = self._blob_docs.get(sha)
            if doc is None:
                doc = parse_document(path, self._read_object(sha, "blob"), commit)
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

    def _tree_entries(self, tree: str) -> Mapping[str, tuple[str, str]]:
        """Every non-tree entry under ``tree`` by path; subtrees already seen come from the cache."""
        flat = self._trees.get(tree)
        if flat is None:
            flat = {}
            for mode, name, sha in _parse_tree(self._read_object(tree, "tree")):
                if mode == _MODE_TREE:
                    flat.update({f"{name}/{path}": entry for path, entry in self._tree_entries(sha).items()})
                else:
                    flat[name] = (mode, sha)
            if len(self._trees) > 4096:
                self._trees.clear()
            self._trees[tree] = flat
            self._known_objects.add(tree)
        return flat

    def _read_object(self, sha: str, kind: str) -> bytes:
        found = self._reader_process().read(sha)
        if found is None or found[0] != kind:
            what = "missing" if found is None else f"a {found[0]}"
            raise StateError(f"{kind} {sha} of the state branch is {what} in {self.repo_path}")
        self._known_objects.add(sha)
        return found[1]

    def _descends(self, new: str, old: str) -> bool:
        """Whether ``old`` is an ancestor of ``new``: walks parents; git decides long or shallow walks."""
        seen: set[str] = set()
        todo = [new]
        while todo and len(seen) < 2000:
            commit = todo.pop()
            if commit == old:
                return True
            if commit in seen:
                continue
            seen.add(commit)
            found = self._reader_process().read(commit)
            if found is None:  # beyond a shallow boundary: git knows the grafts
                break
            todo.extend(_parse_commit(found[1])[1])
        if not todo and len(seen) < 2000:
            return False
        return self._git("merge-base", "--is-ancestor", old, new, check=False).returncode == 0

    def _read_ref(self, ref: str) -> str | None:
        """The commit ``ref`` points at, ``None`` if it does not exist; a loose ref is read without git."""
        self._locate()
        assert self._common_dir is not None
        try:
            value = (self._common_dir / ref).read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError):
            value = ""
        if len(value) == 40 and all(c in "0123456789abcdef" for c in value):
            return value
        # packed, symbolic or another ref backend: ask git
        found = self._git("rev-parse", "--verify", "--quiet", ref + "^{commit}", check=False)
        return (found.stdout.decode().strip() or None) if found.returncode == 0 else None

    def close(self) -> None:
        """Record the last published tip in the tracking ref and stop the object reader process.

        Both are optional: an unclosed store leaves the ref one step behind (the next fetch fixes it), and
        the reader stops by itself when this process exits.
        """
        if self._tip is not None and self._tip != self._recorded:
            self._git("update-ref", self.tracking_ref, self._tip, check=False)
            self._recorded = self._tip
        if self._reader is not None:
            self._reader.close()
            self._reader = None

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
        """Write the blobs, trees and commit of ``docs`` on top of ``base``; nothing is published yet."""
        entries = {p: e for p, e in base.entries.items() if not _is_document(p, e[0])}
        blob_docs: dict[str, JsonObject] = {}
        for path, doc in docs.items():
            old = base.entries.get(path)
            if old is not None and base.docs.get(path) == doc:
                entries[path] = old
                continue
            sha = self._store(b"blob", dumps_document(doc))
            entries[path] = (_MODE_BLOB, sha)
            blob_docs[sha] = doc
        keys = list(base.recent_keys)
        key = meta.idempotency_key
        if key is not None:
            keys = ([*keys, key])[-RECENT_KEYS:]
        marker: JsonObject = {"schema_version": SCHEMA_VERSION, "format": "squals-state", "recent_keys": keys}
        entries[META_PATH] = (_MODE_BLOB, self._store(b"blob", dumps_document(marker)))
        tree = self._write_tree(entries)
        stamp = f"{COMMITTER_NAME} <{COMMITTER_EMAIL}> {int(time.time())} +0000"
        lines = [f"tree {tree}"]
        if base.commit is not None:
            lines.append(f"parent {base.commit}")
        lines += [f"author {stamp}", f"committer {stamp}", "", meta.message()]
        commit = self._store(b"commit", "\n".join(lines).encode("utf-8"))
        self._flush_objects()
        self._blob_docs.update(blob_docs)
        return _Tip(commit, entries, dict(docs), keys)

    def _write_tree(self, entries: Mapping[str, tuple[str, str]]) -> str:
        root: dict[str, Any] = {}
        for path, entry in entries.items():
            node = root
            *dirs, name = path.split("/")
            for part in dirs:
                child = node.setdefault(part, {})
                if not isinstance(child, dict):
                    raise StateError(f"state path {path} collides with the file {part}")
                node = child
            if name in node:
                raise StateError(f"state path {path} collides with a directory")
            node[name] = entry
        return self._tree_of(root)

    def _tree_of(self, node: Mapping[str, Any]) -> str:
        items: list[tuple[bytes, bytes]] = []
        for name, value in node.items():
            if isinstance(value, dict):
                mode, sha = _MODE_TREE, self._tree_of(value)
                sort_key = name.encode("utf-8", "surrogateescape") + b"/"
            else:
                mode, sha = value
                sort_key = name.encode("utf-8", "surrogateescape")
            head = f"{mode} {name}".encode("utf-8", "surrogateescape")
            items.append((sort_key, head + b"\0" + bytes.fromhex(sha)))
        items.sort()
        return self._store(b"tree", b"".join(data for _, data in items))


# ------------------------------------------------------------------------------------------------ publish


class _Publisher(ABC):
    """Where the state branch lives: how its tip is read and how a new tip is published (compare-and-swap).

    This is all that differs between the remote mode and the local-only mode. A publisher holds no reference
    to its store (the store is passed in), so no reference cycle keeps a store alive.
    """

    #: whether :meth:`fetch` itself moves the store's tracking ref (``git fetch`` does)
    fetch_records: bool = False
    #: how messages name the place: ``remote 'origin'``, ``this repository``
    place: str = ""
    #: the same after a branch name: ``on 'origin'``, ``in this repository``
    on: str = ""

    @abstractmethod
    def tracking_ref(self, branch: str) -> str:
        """The private ref that remembers the last tip this repository saw of ``branch``."""

    def longest_look(self, max_delay: float, slot: float) -> float:
        """The longest interval between two looks at a moving branch while waiting for it to be quiet.

        One slot (one measured attempt): a writer that publishes a run of transitions moves the branch
        several times per slot, so a branch still for a whole slot has been released; looking less often
        only leaves it idle after a run (measured: looks at up to ``max_delay`` left it idle 2/3 of the time).
        """
        return min(max_delay, slot)

    @abstractmethod
    def fetch(self, store: GitStateStore, depth: int | None) -> str | None:
        """The branch's tip, its objects now in the repository; ``None``: the branch does not exist."""

    @abstractmethod
    def peek(self, store: GitStateStore) -> str | None:
        """The branch's tip as cheaply as possible (its objects may not be here yet)."""

    @abstractmethod
    def publish(self, store: GitStateStore, commit: str, old: str | None) -> bool:
        """Move the branch from ``old`` (``None``: absent) to ``commit``; ``False``: lost a race."""


class _RemotePublisher(_Publisher):
    """A remote's branch: fetched into the tracking ref, published by a plain, non-forced push."""

    fetch_records = True

    def __init__(self, remote: str) -> None:
        self.remote = remote
        self.place = f"remote {remote!r}"
        self.on = f"on {remote!r}"

    def tracking_ref(self, branch: str) -> str:
        return f"refs/squals/{self.remote}/{branch}"

    def fetch(self, store: GitStateStore, depth: int | None) -> str | None:
        args = ["fetch", "--no-tags", "--no-write-fetch-head", "--no-recurse-submodules", "--no-auto-gc",
                "--no-prune", "--refmap=", "--quiet"]
        if depth is not None:
            args.append(f"--depth={int(depth)}")
        refspec = f"+refs/heads/{store.branch}:{store.tracking_ref}"
        result = store._git(*args, self.remote, refspec, check=False)
        if result.returncode != 0:
            if "couldn't find remote ref" in result.stderr:
                return None
            raise GitCommandError(
                f"cannot fetch state branch {store.branch!r} from {self.remote!r}: "
                f"{_last_lines(result.stderr)}"
            )
        tip = store._read_ref(store.tracking_ref)
        if tip is None:
            raise GitCommandError(f"git fetch of {store.branch!r} from {self.remote!r} left no commit behind")
        return tip

    def peek(self, store: GitStateStore) -> str | None:
        out = store._git("ls-remote", self.remote, f"refs/heads/{store.branch}").stdout.decode()
        for line in out.splitlines():
            sha, _, ref = line.partition("\t")
            if ref == f"refs/heads/{store.branch}":
                return sha
        return None

    def publish(self, store: GitStateStore, commit: str, old: str | None) -> bool:
        # ``old`` is the new commit's parent: a non-forced push only lands if the branch is still there
        result = store._git(
            "push",
            "--porcelain",
            "--no-verify",
            "--no-signed",
            "--no-follow-tags",
            "--recurse-submodules=no",
            self.remote,
            f"{commit}:refs/heads/{store.branch}",
            check=False,
        )
        status = _porcelain_status(result.stdout.decode("utf-8", "replace"), store.branch)
        if result.returncode == 0 and status is not None and status[0] != "!":
            return True  # the tracking ref catches up at the next fetch or at close()
        if status is not None and status[0] == "!":
            reason = status[1]
            if _lost_race(reason):
                return False
            raise PushRejectedError(store.branch, self.remote, _remote_message(reason, result.stderr))
        raise GitCommandError(
            f"cannot push state branch {store.branch!r} to {self.remote!r}: {_last_lines(result.stderr)}"
        )


class _LocalPublisher(_Publisher):
    """Local-only mode: the branch is ``refs/heads/<branch>`` of this repository, moved by ``git update-ref``.

    ``git update-ref <ref> <new> <old>`` takes the ref's lock file, checks the old value under the lock and
    renames the new value into place: the compare-and-swap git offers locally, safe between processes.
    """

    place = "this repository"
    on = "in this repository"

    def tracking_ref(self, branch: str) -> str:
        return f"refs/squals-local/{branch}"

    def longest_look(self, max_delay: float, slot: float) -> float:
        # a look is a file read, not a round trip: look often, so the wait ends soon after the branch stops
        return min(max_delay, 2 * slot)

    def fetch(self, store: GitStateStore, depth: int | None) -> str | None:
        return store._read_ref(f"refs/heads/{store.branch}")

    def peek(self, store: GitStateStore) -> str | None:
        return store._read_ref(f"refs/heads/{store.branch}")

    def publish(self, store: GitStateStore, commit: str, old: str | None) -> bool:
        ref = f"refs/heads/{store.branch}"
        _refuse_checked_out(store, ref)
        result = store._git("update-ref", "-m", "squals: state transition", ref, commit, old or ZERO_ID,
                            check=False)
        if result.returncode == 0:
            return True
        if self.peek(store) != old:
            return False  # another writer moved (or removed) the branch: re-read, re-apply
        assert store._common_dir is not None
        lock = store._common_dir / f"{ref}.lock"
        try:
            age: float | None = time.time() - lock.stat().st_mtime
        except OSError:
            age = None
        if age is not None or "File exists" in result.stderr:
            if age is not None and age > STALE_LOCK_AGE:
                raise GitCommandError(
                    f"cannot update state branch {store.branch!r}: {lock} was left {age:.0f}s ago by a git "
                    "that did not finish; remove it if no git command is running in this repository"
                )
            return False  # another writer holds the lock right now: it is about to move the branch
        raise GitCommandError(
            f"cannot update state branch {store.branch!r} in {store.repo_path}: {_last_lines(result.stderr)}"
        )


def _refuse_checked_out(store: GitStateStore, ref: str) -> None:
    """Refuse to move a branch a working tree has checked out: its files would no longer match ``HEAD``."""
    assert store._common_dir is not None
    heads = [(store._common_dir / "HEAD", store.repo_path)]
    with contextlib.suppress(OSError):
        heads += [(admin / "HEAD", admin) for admin in (store._common_dir / "worktrees").iterdir()]
    for head, where in heads:
        try:
            checked_out = head.read_text(encoding="utf-8", errors="replace").strip() == f"ref: {ref}"
        except OSError:
            continue
        if checked_out:
            with contextlib.suppress(OSError):
                where = Path((where / "gitdir").read_text(encoding="utf-8").strip()).parent
            raise StateError(
                f"state branch {ref.removeprefix('refs/heads/')!r} is checked out in {where}; squals will "
                "not move a branch under a working tree: check out another branch there first"
            )


# ---------------------------------------------------------------------------------------------------- helpers


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()


def _last_lines(stderr: str, count: int = 3) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    return " / ".join(lines[-count:]) or "no message"


def _is_document(path: str, mode: str) -> bool:
    return mode == _MODE_BLOB and path.endswith(".json")


def _porcelain_status(stdout: str, branch: str) -> tuple[str, str] | None:
    """``(flag, summary)`` of our ref in ``push --porcelain`` output, e.g. ``("!", "[rejected] ...")``."""
    for line in stdout.splitlines():
        parts = line.split("\t")
        if len(parts) >= 3 and parts[1].endswith(f":refs/heads/{branch}"):
            return parts[0], "\t".join(parts[2:])
    return None


def _lost_race(reason: str) -> bool:
    """Whether a push was refused because the branch moved (retry) rather than by policy (give up)."""
    return reason.startswith("[rejected]") or any(phrase in reason for phrase in _RACE_PHRASES)


def _remote_message(reason: str, stderr: str) -> str:
    said = [line[7:].strip() for line in stderr.splitlines() if line.startswith("remote:")]
    said = [line for line in said if line]
    return " / ".join([*said[-5:], reason.strip()])


def _parse_log_record(record: str) -> HistoryEntry | None:
    commit, ts, body = record.lstrip("\n").split("\x1f", 2)
    lines = body.strip("\n").splitlines()
    trailers: dict[str, str] = {}
    for line in reversed(lines):
        if not line.strip():
            break
        name, sep, value = line.partition(": ")
        if sep and name.startswith("Squals-"):
            trailers.setdefault(name, value.strip())
    event = trailers.get("Squals-Event")
    if event is None:
        return None

    def number(name: str) -> int | None:
        value = trailers.get(name)
        return int(value) if value is not None and value.isdigit() else None

    return HistoryEntry(
        commit=commit,
        time=datetime.fromtimestamp(int(ts), UTC),
        event=event,
        summary=lines[0] if lines else "",
        environment=trailers.get("Squals-Environment"),
        pr=number("Squals-PR"),
        run_id=trailers.get("Squals-Run"),
        attempt=number("Squals-Attempt"),
        actor=trailers.get("Squals-Actor"),
        idempotency_key=trailers.get("Squals-Idempotency-Key"),
    )


def _parse_commit(data: bytes) -> tuple[str, list[str]]:
    """``(tree, parents)`` of a raw commit object."""
    tree, parents = "", []
    for line in data.split(b"\n"):
        if not line:
            break
        if line.startswith(b"tree "):
            tree = line[5:].decode()
        elif line.startswith(b"parent "):
            parents.append(line[7:].decode())
    return tree, parents


def _parse_tree(data: bytes) -> list[tuple[str, str, str]]:
    """``(mode, name, sha)`` of each entry of a raw tree object."""
    entries = []
    pos = 0
    while pos < len(data):
        space = data.index(b" ", pos)
        nul = data.index(b"\0", space)
        mode = data[pos:space].decode()
        name = data[space + 1 : nul].decode("utf-8", "surrogateescape")
        entries.append((mode, name, data[nul + 1 : nul + 21].hex()))
        pos = nul + 21
    return entries


class _ObjectReader:
    """A long-lived ``git cat-file --batch``: reads objects without a process each; every read has a deadline.

    It exits on its own when its stdin closes, so even a killed writer leaves no process behind.
    """

    def __init__(self, prefix: list[str], env: Mapping[str, str], timeout: float) -> None:
        self._timeout = timeout
        self._proc = subprocess.Popen(
            [*prefix, "cat-file", "--batch"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=dict(env),
            start_new_session=True,
        )
        self._buffer = bytearray()

    def read(self, sha: str) -> tuple[str, bytes] | None:
        """``(type, content)`` of object ``sha``, ``None`` when the repository does not have it."""
        assert self._proc.stdin is not None
        deadline = time.monotonic() + self._timeout
        try:
            self._proc.stdin.write(f"{sha}\n".encode())
            self._proc.stdin.flush()
        except OSError as exc:
            self.close()
            raise GitCommandError(f"git cat-file stopped: {exc}") from None
        while b"\n" not in self._buffer:
            self._fill(deadline)
        end = self._buffer.index(b"\n")
        header = bytes(self._buffer[:end]).split()
        del self._buffer[: end + 1]
        if len(header) != 3:
            return None
        size = int(header[2])
        while len(self._buffer) < size + 1:
            self._fill(deadline)
        content = bytes(self._buffer[:size])
        del self._buffer[: size + 1]
        return header[1].decode(), content

    def _fill(self, deadline: float) -> None:
        assert self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        chunk = os.read(fd, 1 << 16) if ready else b""
        if not chunk:
            self.close()
            raise GitCommandError("git cat-file " + ("timed out" if not ready else "ended unexpectedly"))
        self._buffer += chunk

    def close(self) -> None:
        if self._proc.poll() is None:
            with contextlib.suppress(OSError):
                assert self._proc.stdin is not None
                self._proc.stdin.close()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                _kill_group(self._proc)
        for stream in (self._proc.stdin, self._proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()



def list_remotes(repo_path: Path, *, timeout: float = 30.0) -> list[str]:
    """The names of the remotes of the repository at ``repo_path`` (``git remote``)."""
    from squals_action.gitcmd import git_text

    return git_text(repo_path, "remote", timeout=timeout, error=GitCommandError).split()
