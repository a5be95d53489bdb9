"""Git objects of the state branch: read through one long-lived ``git cat-file --batch``, written as packs.

The store never checks anything out: it reads commits, trees and blobs straight from the object database
and writes the blobs, trees and commit of a transition as one pack with its index (GitPython's ``gitdb``
writes both), so the working tree, the index and ``HEAD`` are never touched.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import select
import subprocess
import tempfile
import time
import weakref
from collections.abc import Collection, Mapping
from typing import Any

from squals_action.state.errors import GitCommandError, StateError
from squals_action.state.git_repo import GitRepo, kill_group

MODE_BLOB = "100644"
MODE_TREE = "40000"
#: Past this many commits, :meth:`ObjectDatabase.descends` leaves the walk to ``git merge-base``.
_WALK_LIMIT = 2000


def is_document(path: str, mode: str) -> bool:
    """Whether a tree entry is a state document (a regular ``.json`` file) rather than a file kept as is."""
    return mode == MODE_BLOB and path.endswith(".json")


def parse_commit(data: bytes) -> tuple[str, list[str]]:
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


def parse_tree(data: bytes) -> list[tuple[str, str, str]]:
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


class ObjectDatabase:
    """The objects of one repository as the store uses them: cached reads, queued writes, one pack each flush.

    A store that nobody closes still stops its ``git cat-file`` when this object is collected, or at
    interpreter exit.
    """

    def __init__(self, repo: GitRepo) -> None:
        self._repo = repo
        self._reader: _ObjectReader | None = None
        self._trees: dict[str, dict[str, tuple[str, str]]] = {}  # tree sha -> entries below it by path
        self._known: set[str] = set()
        self._pending: dict[str, tuple[bytes, bytes]] = {}  # sha -> (kind, data), not written yet

    # ---- read -------------------------------------------------------------------------------------------

    def read(self, sha: str, kind: str) -> bytes:
        """The content of object ``sha``, which must be a ``kind``; anything else is a broken branch."""
        found = self._reader_process().read(sha)
        if found is None or found[0] != kind:
            what = "missing" if found is None else f"a {found[0]}"
            raise StateError(f"{kind} {sha} of the state branch is {what} in {self._repo.path}")
        self._known.add(sha)
        return found[1]

    def tree_entries(self, tree: str, opaque: Collection[str] = ()) -> Mapping[str, tuple[str, str]]:
        """Every non-tree entry under ``tree`` by path; subtrees already seen come from the cache.

        A subtree of the root named in ``opaque`` is one entry ``(MODE_TREE, sha)``, not read at all.
        """
        if opaque:
            top: dict[str, tuple[str, str]] = {}
            for mode, name, sha in parse_tree(self.read(tree, "tree")):
                if mode == MODE_TREE and name not in opaque:
                    top.update({f"{name}/{path}": entry for path, entry in self.tree_entries(sha).items()})
                else:
                    top[name] = (mode, sha)
            return top
        flat = self._trees.get(tree)
        if flat is None:
            flat = {}
            for mode, name, sha in parse_tree(self.read(tree, "tree")):
                if mode == MODE_TREE:
                    flat.update({f"{name}/{path}": entry for path, entry in self.tree_entries(sha).items()})
                else:
                    flat[name] = (mode, sha)
            if len(self._trees) > 4096:
                self._trees.clear()
            self._trees[tree] = flat
            self._known.add(tree)
        return flat

    def descends(self, new: str, old: str) -> bool:
        """Whether ``old`` is an ancestor of ``new``: walks parents; git decides long or shallow walks."""
        seen: set[str] = set()
        todo = [new]
        while todo and len(seen) < _WALK_LIMIT:
            commit = todo.pop()
            if commit == old:
                return True
            if commit in seen:
                continue
            seen.add(commit)
            found = self._reader_process().read(commit)
            if found is None:  # beyond a shallow boundary: git knows the grafts
                break
            todo.extend(parse_commit(found[1])[1])
        if not todo and len(seen) < _WALK_LIMIT:
            return False
        return self._repo.run("merge-base", "--is-ancestor", old, new, check=False).returncode == 0

    def _reader_process(self) -> _ObjectReader:
        if self._reader is None:
            self._reader = _ObjectReader(self._repo.prefix, self._repo.env, self._repo.timeout)
            weakref.finalize(self, self._reader.close)
        return self._reader

    def close(self) -> None:
        """Stop the ``git cat-file`` process; the next read starts another."""
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    # ---- write ------------------------------------------------------------------------------------------

    def add(self, kind: bytes, data: bytes) -> str:
        """Queue one object for :meth:`flush` unless it is known to exist; returns its hex sha."""
        sha = hashlib.sha1(b"%s %d\0" % (kind, len(data)) + data).hexdigest()  # noqa: S324 -- git's id
        if sha not in self._known and sha not in self._pending:
            self._pending[sha] = (kind, data)
        return sha

    def tree_with(self, tree: str | None, additions: Mapping[str, tuple[str, str]], where: str) -> str:
        """Queue ``tree`` (``None``: an empty one) with ``additions`` (path -> (mode, sha)) put in; its sha.

        Only the trees on the added paths are read and written, never the rest of ``tree``: adding to a
        large archive costs what its few touched directories hold. ``where`` names ``tree`` in messages.
        """
        listed = parse_tree(self.read(tree, "tree")) if tree else []
        entries = {name: (mode, sha) for mode, name, sha in listed}
        below: dict[str, dict[str, tuple[str, str]]] = {}
        for path, entry in additions.items():
            head, sep, rest = path.partition("/")
            if sep:
                below.setdefault(head, {})[rest] = entry
            else:
                entries[head] = entry
        for head, paths in below.items():
            old = entries.get(head)
            if old is not None and old[0] != MODE_TREE:
                raise StateError(f"state path {where}/{head} is a file where a directory belongs")
            entries[head] = (MODE_TREE, self.tree_with(old[1] if old else None, paths, f"{where}/{head}"))
        return self.write_tree(entries)

    def write_tree(self, entries: Mapping[str, tuple[str, str]]) -> str:
        """Queue the trees holding ``entries`` (path -> (mode, sha)); returns the root tree's sha.

        An entry whose mode is a tree's is an existing subtree, written as it is.
        """
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
                mode, sha = MODE_TREE, self._tree_of(value)
            else:
                mode, sha = value
            sort_key = name.encode("utf-8", "surrogateescape") + (b"/" if mode == MODE_TREE else b"")
            head = f"{mode} {name}".encode("utf-8", "surrogateescape")
            items.append((sort_key, head + b"\0" + bytes.fromhex(sha)))
        items.sort()
        return self.add(b"tree", b"".join(data for _, data in items))

    def flush(self) -> None:
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
        pack_dir = self._repo.objects_dir / "pack"
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
        self._known.update(self._pending)
        self._pending.clear()


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
                kill_group(self._proc)
        for stream in (self._proc.stdin, self._proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
