"""Do the scripts a squals file's commands start exist? ``squals validate`` asks, so that a hook, test or app
run as ``./scripts/announce.sh`` that is not there fails validation instead of exiting 127 at deploy time.

The scripts are looked up in the working tree, or in one commit's tree (``squals validate --commit REF``:
what a deploy of that commit runs). A missing script under a path git ignores (``node_modules/.bin/jest``,
a build's output) is made by an earlier step, so it is not reported.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from squals_action.errors import UsageError
from squals_action.gitcmd import resolve_commit, run_git
from squals_action.manifest.checks import COMMAND_SECTIONS, get
from squals_action.manifest.paths import reference_problem, script_of
from squals_action.manifest.problems import PathPart, Problem, format_where
from squals_action.manifest.yamlload import Document

GIT_TIMEOUT = 60.0


class Scripts:
    """Where validation looks for scripts: the working tree (``commit=None``) or the tree of ``commit``."""

    def __init__(self, commit: str | None = None) -> None:
        self.commit = commit
        self._trees: dict[Path, frozenset[str]] = {}
        self._known: dict[Path, bool] = {}

    def where(self, repo_root: Path) -> str:
        if self.commit is None:
            return "the working tree"
        return f"commit {self.commit} ({resolve_commit(repo_root, self.commit, error=UsageError)[:12]})"

    def present(self, repo_root: Path, path: Path) -> bool:
        """Whether the script at ``path`` (inside ``repo_root``, lexically normalised) is there, or is made by
        an earlier step (git ignores it). Asked once per path: a thousand hooks may start the same one."""
        known = self._known.get(path)
        if known is None:
            if self.commit is None:
                known = os.path.isfile(os.path.realpath(path))
            else:
                known = path.relative_to(repo_root).as_posix() in self._tree(repo_root)
            known = known or _ignored(repo_root, path)
            self._known[path] = known
        return known

    def _tree(self, repo_root: Path) -> frozenset[str]:
        tree = self._trees.get(repo_root)
        if tree is None:
            sha = resolve_commit(repo_root, self.commit or "HEAD", error=UsageError)
            listed = run_git(
                repo_root,
                "ls-tree",
                "--full-tree",
                "-r",
                "-z",
                "--name-only",
                sha,
                timeout=GIT_TIMEOUT,
                error=UsageError,
            )
            tree = frozenset(listed.decode("utf-8", "surrogateescape").split("\0")) - {""}
            self._trees[repo_root] = tree
        return tree


def _ignored(repo_root: Path, path: Path) -> bool:
    """Whether git ignores ``path`` (something a build or an install makes); False outside a git repo."""
    try:
        done = subprocess.run(
            ["git", "-C", str(repo_root), "check-ignore", "-q", "--no-index", "--", str(path)],
            capture_output=True,
            timeout=GIT_TIMEOUT,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def _commands(data: Any) -> Iterator[tuple[tuple[PathPart, ...], str, str]]:
    """(where, run, workdir) of every command that may start a script: gates, hooks, tests, the app."""
    for section, _, _ in COMMAND_SECTIONS:
        items = get(data, section)
        for index, item in enumerate(items if isinstance(items, list) else ()):
            if isinstance(item, dict) and isinstance(item.get("run"), str):
                workdir = item.get("workdir")
                yield (*section, index, "run"), item["run"], workdir if isinstance(workdir, str) else "."
    start = get(data, ("app", "start"))
    if isinstance(start, str):
        workdir = get(data, ("app", "workdir"))
        yield ("app", "start"), start, workdir if isinstance(workdir, str) else "."


def missing_scripts(doc: Document, base_dir: Path, repo_root: Path, scripts: Scripts) -> list[Problem]:
    """One problem per command whose relative script is not in ``scripts``' tree, at the command's line."""
    root = Path(os.path.normpath(repo_root.absolute()))
    missing: dict[tuple[str, str], str | None] = {}  # (workdir, script) -> its path when missing
    problems: list[Problem] = []
    for where, run, workdir in _commands(doc.data):
        script = script_of(run)
        if script is None:
            continue
        key = (workdir, script)
        if key not in missing:
            missing[key] = _missing(base_dir / workdir, root, script, scripts)
        shown = missing[key]
        if shown is not None:
            line, col = doc.position(where)
            problems.append(
                Problem(
                    doc.file,
                    line,
                    col,
                    format_where(where),
                    f"expected an existing script, {shown} is not in {scripts.where(root)}",
                )
            )
    return problems


def _missing(folder: Path, root: Path, script: str, scripts: Scripts) -> str | None:
    """The repository path of ``script`` (relative to ``folder``) when it is missing, else None."""
    if reference_problem(folder, root, script, must_exist=False):
        return None  # outside the repository: the semantic checks report that
    path = Path(os.path.normpath(folder.absolute() / script))
    return None if scripts.present(root, path) else path.relative_to(root).as_posix()
