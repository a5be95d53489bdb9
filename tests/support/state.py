"""Support of the state tests: a bare ``origin``, shallow single-branch clones like GitHub's checkout action,
repositories with no remote, stores of every kind, and a fingerprint of all a user could notice in their
checkout (working tree, index, HEAD, branches, config).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from squals_action.state import StateStore, open_memory_store, open_store

GIT_TIMEOUT = 60
#: One concurrent writer, run by path: ``python WRITER REPO WRITER_ID COUNT ...`` (see its docstring).
WRITER = Path(__file__).resolve().parent / "scripts" / "state_writer.py"


def git(cwd: Path, *args: str, check: bool = True, env: dict[str, str] | None = None) -> str:
    """Run git in ``cwd`` and return its stdout (the test's own calls; the store has its own runner)."""
    result = subprocess.run(
        ["git", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=GIT_TIMEOUT,
        check=False,
        env={**os.environ, **(env or {})},
    )
    if check and result.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {result.stderr}")
    return result.stdout


def make_origin(root: Path) -> Path:
    """A bare repository with a ``main`` branch of two commits, like a project on GitHub."""
    origin = root / "origin.git"
    git(root, "init", "-q", "--bare", "-b", "main", str(origin))
    git(origin, "config", "receive.autogc", "false")  # as on GitHub: no gc run after every push
    seed = root / "seed"
    git(root, "init", "-q", "-b", "main", str(seed))
    (seed / "README.md").write_text("# project\n")
    git(seed, "add", "README.md")
    git(seed, "commit", "-q", "-m", "first")
    (seed / "app.py").write_text("print('hello')\n")
    git(seed, "add", "app.py")
    git(seed, "commit", "-q", "-m", "second")
    git(seed, "push", "-q", str(origin), "main")
    return origin


def clone(origin: Path, dest: Path, *, dirty: bool = False) -> Path:
    """A shallow, single-branch clone with a detached HEAD, as ``actions/checkout`` leaves it.

    ``dirty`` adds a modified file, a staged change and an untracked file, so a test can see they survive.
    """
    git(
        dest.parent,
        "clone",
        "-q",
        "--depth",
        "1",
        "--single-branch",
        "--branch",
        "main",
        f"file://{origin}",
        str(dest),
    )
    git(dest, "checkout", "-q", "--detach")
    if dirty:
        make_dirty(dest)
    return dest


def copy_clone(template: Path, origin: Path, dest: Path, *, dirty: bool = False) -> Path:
    """A copy of a clone made by :func:`clone`, pointed at ``origin``: ten times faster than cloning again."""
    shutil.copytree(template, dest, symlinks=True)
    git(dest, "remote", "set-url", "origin", f"file://{origin}")
    if dirty:
        make_dirty(dest)
    return dest


def make_dirty(dest: Path) -> None:
    """A modified file, a staged change and an untracked file, so a test can see they survive."""
    (dest / "README.md").write_text("# project, edited but not staged\n")
    (dest / "staged.txt").write_text("staged\n")
    git(dest, "add", "staged.txt")
    (dest / "untracked.txt").write_text("untracked\n")


def make_local_repo(dest: Path, *, dirty: bool = False) -> Path:
    """A repository with no remote at all, ``main`` checked out: a project that lives only on a laptop."""
    git(dest.parent, "init", "-q", "-b", "main", str(dest))
    (dest / "README.md").write_text("# project\n")
    git(dest, "add", "README.md")
    git(dest, "commit", "-q", "-m", "first")
    (dest / "app.py").write_text("print('hello')\n")
    git(dest, "add", "app.py")
    git(dest, "commit", "-q", "-m", "second")
    if dirty:
        make_dirty(dest)
    return dest


def fingerprint(repo: Path, *, except_branches: tuple[str, ...] = ()) -> dict[str, str]:
    """Digest of what the store must never change: every working-tree file, index, HEAD, branches, config.

    ``except_branches``: branches the store may create or move (the state branch in local-only mode).
    """
    # git status refreshes the index's stat cache (rewriting it once after a copy): run it before hashing
    prints: dict[str, str] = {"status": git(repo, "status", "--porcelain=v1", "--untracked-files=all")}
    for path in sorted(repo.rglob("*")):
        rel = path.relative_to(repo).as_posix()
        if rel == ".git" or rel.startswith(".git/") or not path.is_file():
            continue
        prints[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    git_dir = repo / ".git"
    for name in ("index", "HEAD", "config", "shallow", "packed-refs", "logs/HEAD"):
        file = git_dir / name
        prints[f".git/{name}"] = hashlib.sha256(file.read_bytes()).hexdigest() if file.exists() else "-"
    heads = git_dir / "refs" / "heads"
    branches = sorted(p.relative_to(heads).as_posix() for p in heads.rglob("*") if p.is_file())
    for name in branches:
        if name not in except_branches:
            prints[f"refs/heads/{name}"] = (heads / name).read_text()
    prints["refs/heads"] = ",".join(b for b in branches if b not in except_branches)
    return prints


def state_log(origin: Path, branch: str = "squals/state") -> list[str]:
    """Commit ids of the state branch on ``origin``, newest first."""
    out = git(origin, "rev-list", f"refs/heads/{branch}", check=False)
    return out.split()


@pytest.fixture(scope="session")
def template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """One origin and one shallow clone of it, made once; tests get copies."""
    root = tmp_path_factory.mktemp("state-template")
    origin = make_origin(root)
    return origin, clone(origin, root / "clone")


@pytest.fixture
def origin(tmp_path: Path, template: tuple[Path, Path]) -> Path:
    """A bare repository with a ``main`` branch, this test's own."""
    return Path(shutil.copytree(template[0], tmp_path / "origin.git", symlinks=True))


@pytest.fixture
def make_clone(origin: Path, tmp_path: Path, template: tuple[Path, Path]) -> Callable[..., Path]:
    """``make_clone("name", dirty=True)``: a fresh shallow, single-branch clone of ``origin``."""

    def make(name: str = "work", *, dirty: bool = False) -> Path:
        return copy_clone(template[1], origin, tmp_path / name, dirty=dirty)

    return make


@pytest.fixture(scope="session")
def local_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One repository without a remote, made once; tests get copies."""
    return make_local_repo(tmp_path_factory.mktemp("state-local-template") / "laptop")


@pytest.fixture
def make_local(tmp_path: Path, local_template: Path) -> Callable[..., Path]:
    """``make_local("name", dirty=True)``: a fresh copy of a repository that has no remote at all."""

    def make(name: str = "laptop", *, dirty: bool = False) -> Path:
        dest = Path(shutil.copytree(local_template, tmp_path / name, symlinks=True))
        if dirty:
            make_dirty(dest)
        return dest

    return make


@pytest.fixture
def git_store(make_clone: Callable[..., Path]) -> Iterator[StateStore]:
    store = open_store(make_clone("store"))
    yield store
    store.close()


@pytest.fixture(params=["git", "local", "memory"])
def any_store(
    request: pytest.FixtureRequest, make_clone: Callable[..., Path], make_local: Callable[..., Path]
) -> Iterator[StateStore]:
    """The same behaviour is expected of every implementation and mode."""
    if request.param == "git":
        store = open_store(make_clone("store"))
    elif request.param == "local":
        store = open_store(make_local("store"), remote=None)
    else:
        store = open_memory_store()
    yield store
    store.close()
