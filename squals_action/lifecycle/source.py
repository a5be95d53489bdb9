"""Where a command's squals file, variant files, hooks, tests and app come from: the commit it records.

A deploy, a promotion and an experiment's start never read the working tree: :func:`checkout` makes a
detached ``git worktree`` of the commit in a temporary folder, loads the squals file (and so its variant
files) from there, and the hooks and tests run there; the provider checks the same commit out for the app.
The worktree is removed when the command ends.

Uncommitted files are deployed only when asked (``--allow-dirty``): :func:`snapshot` then writes the working
tree as it is (tracked changes and untracked files that are not ignored) as a commit object on top of
``HEAD``, through a temporary index (the user's index, branch and ``HEAD`` are untouched), and that commit
is what is checked out; the state records ``HEAD``'s commit and ``dirty: true``, the history
``deploy 2e8d1e07124b+dirty to pr-41``.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from squals_action import gitcmd
from squals_action.errors import SqualsError
from squals_action.gitcmd import git_text, run_git
from squals_action.manifest.model import Manifest

#: Who writes the snapshot commit of a dirty working tree (no git identity needs to be configured).
_IDENTITY = {
    "GIT_AUTHOR_NAME": "squals-bot",
    "GIT_AUTHOR_EMAIL": "squals-bot@users.noreply.github.com",
    "GIT_COMMITTER_NAME": "squals-bot",
    "GIT_COMMITTER_EMAIL": "squals-bot@users.noreply.github.com",
}


class SourceError(SqualsError):
    """The commit to run cannot be used as asked (uncommitted changes, no squals file in it)."""


@dataclass(frozen=True, kw_only=True)
class Source:
    """One command's files: the checkout of ``tree`` at ``root`` and the squals file loaded from it."""

    #: the commit recorded in the state (``HEAD``'s for a dirty deploy)
    commit: str
    #: the commit checked out: ``commit``, or the snapshot of the dirty working tree on top of it
    tree: str
    dirty: bool
    root: Path
    manifest: Manifest
    #: the squals file was read from ``tree`` here; ``False``: the caller's model, used as it is (built in
    #: code, or an experiment's variant file, loaded by the experiment from its start commit)
    read_here: bool

    @property
    def label(self) -> str:
        """``2e8d1e07124b`` or ``2e8d1e07124b+dirty``: how messages and the history name it."""
        return commit_label(self.commit, self.dirty)


def commit_label(commit: str, dirty: bool) -> str:
    """How messages and the history name a commit run: ``2e8d1e07124b``, ``2e8d1e07124b+dirty``."""
    return commit[:12] + ("+dirty" if dirty else "")


def dirty_files(repo: Path) -> list[str]:
    """Files of the working tree that differ from ``HEAD``: changed, staged, deleted, untracked (not
    ignored), as ``git status`` names them."""
    # --no-optional-locks: looking must not rewrite the user's index (git status refreshes its stat cache)
    out = run_git(repo, "--no-optional-locks", "status", "--porcelain=v1", "-z", error=SourceError)
    entries = out.decode("utf-8", "surrogateescape").split("\0")
    names: list[str] = []
    skip = False
    for entry in entries:
        if skip or not entry:
            skip = False
            continue
        names.append(entry[3:])
        skip = entry[0] in "RC"  # a rename or copy is followed by its source path
    return names


def snapshot(repo: Path) -> str:
    """A commit object holding the working tree as it is, with ``HEAD`` as its parent (no ref points to it;
    the provider's worktree of it keeps it alive)."""
    with tempfile.TemporaryDirectory(prefix="squals-index-") as scratch:
        env = {**_IDENTITY, "GIT_INDEX_FILE": str(Path(scratch) / "index")}
        run_git(repo, "read-tree", "HEAD", env=env, error=SourceError)
        run_git(repo, "add", "-A", env=env, error=SourceError)
        tree = git_text(repo, "write-tree", env=env, error=SourceError)
        head = gitcmd.resolve_commit(repo, "HEAD", error=SourceError)
        message = f"squals: the working tree on {head[:12]} with uncommitted files (--allow-dirty)"
        return git_text(repo, "commit-tree", tree, "-p", head, "-m", message, env=env, error=SourceError)


def squals_file_in(repo: Path, manifest: Manifest) -> str | None:
    """The squals file's path inside ``repo`` when ``manifest`` was loaded from ``repo``'s working tree;
    ``None`` for a model built in code, or loaded from a checkout of a commit already (used as it is)."""
    if manifest.repo_root in ("", ".") or Path(manifest.repo_root).resolve() != repo.resolve():
        return None
    try:
        return Path(manifest.path).resolve().relative_to(repo.resolve()).as_posix()
    except ValueError:
        return None


@contextlib.contextmanager
def checkout(
    repo: Path, commit: str | None, manifest: Manifest, *, allow_dirty: bool = False
) -> Iterator[Source]:
    """The files of ``commit`` in a temporary worktree, with ``manifest``'s squals file as that commit has
    it. A model built in code, or loaded from a checkout by the caller (an experiment's winner, from its
    start commit), is used as it is, its commands running where it was loaded from.

    ``commit=None`` is ``HEAD`` as the working tree has it: uncommitted changes are refused in one line
    naming them, unless ``allow_dirty``, which deploys them (:func:`snapshot`). A named commit is taken as
    it is, whatever the working tree holds.
    """
    from squals_action.manifest import load

    head = gitcmd.resolve_commit(repo, commit or "HEAD", error=SourceError)
    tree, dirty = head, False
    if commit is None:
        changed = dirty_files(repo)
        if changed and not allow_dirty:
            shown = ", ".join(changed[:5]) + (f" and {len(changed) - 5} more" if len(changed) > 5 else "")
            raise SourceError(
                f"uncommitted changes in {repo}: {shown}; commit them, or deploy them as they are with "
                "--allow-dirty (recorded as dirty)"
            )
        if changed:
            tree, dirty = snapshot(repo), True
    relative = squals_file_in(repo, manifest)
    if relative is None:
        root = Path(manifest.repo_root) if manifest.repo_root not in ("", ".") else repo
        yield Source(commit=head, tree=tree, dirty=dirty, root=root, manifest=manifest, read_here=False)
        return
    with worktree(repo, tree) as root:
        if not (root / relative).is_file():
            raise SourceError(f"{relative} is not in commit {head[:12]}: nothing to run it with")
        # its problems and every location of the model name the file as the repository does, and the commit
        # (squals.yml:12:3 in commit 1a2b3c4d5e6f), never this temporary checkout
        manifest = load(root / relative, root, relative_to=root, commit=commit_label(head, dirty))
        yield Source(commit=head, tree=tree, dirty=dirty, root=root, manifest=manifest, read_here=True)


@contextlib.contextmanager
def worktree(repo: Path, commit: str, remote: str = "origin") -> Iterator[Path]:
    """A detached worktree of ``commit`` in a temporary folder that lives as long as the context. A shallow
    clone (a runner's checkout) that lacks the commit fetches it from ``remote`` first."""
    if not gitcmd.has_commit(repo, commit):
        run_git(repo, "fetch", "--quiet", "--depth=1", remote, commit, timeout=120, error=SourceError)
    with tempfile.TemporaryDirectory(prefix="squals-source-") as scratch:
        root = Path(scratch) / "tree"
        run_git(repo, "worktree", "add", "--detach", str(root), commit, error=SourceError)
        try:
            yield root
        finally:
            with contextlib.suppress(SqualsError):
                run_git(repo, "worktree", "remove", "--force", str(root))
            with contextlib.suppress(SqualsError):
                run_git(repo, "worktree", "prune")
