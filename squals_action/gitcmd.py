"""Running git for its output: a timeout, no credential prompt, refs as argv, failures as one-line errors.

Every concern that only needs what a git command prints goes through here; each passes its own error class
so the message reaches the user as that concern's error. (The state store keeps its own runner: it streams
objects through long-lived ``git cat-file`` processes and kills process groups.)
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from urllib.parse import urlsplit

from squals_action.errors import SqualsError

GIT_TIMEOUT = 120.0


def run_git(
    repo: Path,
    *args: str,
    timeout: float = GIT_TIMEOUT,
    error: type[SqualsError] = SqualsError,
    env: Mapping[str, str] = MappingProxyType({}),
) -> bytes:
    """Run ``git -C repo ARGS`` (``env`` added to its environment) and return its stdout; a failure or
    timeout raises ``error`` in one line."""
    try:
        proc = subprocess.run(
            ["git", "-C", str(repo), *args],
            capture_output=True,
            timeout=timeout,
            env={**os.environ, "GIT_TERMINAL_PROMPT": "0", **env},
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise error(f"git {' '.join(args[:2])} in {repo} timed out after {timeout:g}s") from exc
    except OSError as exc:
        raise error(f"could not run git: {exc.strerror or exc}") from exc
    if proc.returncode != 0:
        lines = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        detail = lines[-1] if lines else f"exit code {proc.returncode}"
        raise error(f"git {' '.join(args[:2])} failed in {repo}: {detail}")
    return proc.stdout


def git_text(
    repo: Path,
    *args: str,
    timeout: float = GIT_TIMEOUT,
    error: type[SqualsError] = SqualsError,
    env: Mapping[str, str] = MappingProxyType({}),
) -> str:
    """:func:`run_git`'s output as text, without surrounding white space."""
    out = run_git(repo, *args, timeout=timeout, error=error, env=env)
    return out.decode("utf-8", "surrogateescape").strip()


def resolve_commit(repo: Path, ref: str, *, error: type[SqualsError] = SqualsError) -> str:
    """The full sha of the commit ``ref`` names (a PR's branch name is untrusted: never an option)."""
    if not ref or ref.startswith("-"):
        raise error(f"not a commit: {ref!r}")
    try:
        sha = git_text(
            repo, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}", timeout=30
        )
    except SqualsError as exc:
        raise error(f"{ref!r} is not a commit of the repository at {repo}") from exc
    return sha


def has_commit(repo: Path, ref: str) -> bool:
    """Whether ``ref`` names a commit in ``repo``."""
    try:
        resolve_commit(repo, ref)
    except SqualsError:
        return False
    return True


def repo_top(start: Path, *, error: type[SqualsError] = SqualsError) -> Path:
    """The top folder of the git working tree that holds ``start``."""
    return Path(git_text(start, "rev-parse", "--show-toplevel", timeout=30, error=error))


def token_header_env(server_url: str, token: str, environ: Mapping[str, str]) -> dict[str, str]:
    """Git config, as environment variables, sending ``token`` to ``server_url`` as ``actions/checkout`` does.

    The header is ``AUTHORIZATION: basic base64(x-access-token:TOKEN)`` on ``http.<server>/.extraheader``,
    scoped to that server so the token goes nowhere else. It travels in ``GIT_CONFIG_COUNT`` /
    ``GIT_CONFIG_KEY_n`` / ``GIT_CONFIG_VALUE_n`` (appended after any the caller already has): never in
    ``.git/config``, nor in an argv other users can read. An empty value first clears a header the checkout
    persisted, so the identity is this token's, not whichever one is in the repository's config.
    """
    parts = urlsplit(server_url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise SqualsError(f"server URL {server_url!r}: expected http(s)://host, as GITHUB_SERVER_URL is")
    key = f"http.{parts.scheme}://{parts.netloc}/.extraheader"
    basic = base64.b64encode(f"x-access-token:{token}".encode()).decode()
    raw = environ.get("GIT_CONFIG_COUNT", "0").strip()
    first = int(raw) if raw.isdigit() else 0
    entries = [(key, ""), (key, f"AUTHORIZATION: basic {basic}")]
    env = {"GIT_CONFIG_COUNT": str(first + len(entries))}
    for index, (name, value) in enumerate(entries, start=first):
        env[f"GIT_CONFIG_KEY_{index}"] = name
        env[f"GIT_CONFIG_VALUE_{index}"] = value
    return env


def add_worktree(repo: Path, path: Path, sha: str, *, error: type[SqualsError] = SqualsError) -> None:
    """Check ``sha`` out at ``path`` as a detached worktree (the user's tree, index and HEAD untouched)."""
    run_git(repo, "worktree", "add", "--detach", str(path), sha, error=error)


def remove_worktree(repo: Path, path: Path) -> str:
    """Remove the worktree at ``path`` (the folder too, even when git no longer knows it); "" when all went
    well, else a note saying what was done instead."""
    note = ""
    if path.exists():
        try:
            run_git(repo, "worktree", "remove", "--force", str(path))
        except SqualsError as exc:
            note = f"git worktree remove failed ({exc.one_line()}); deleted the folder"
            shutil.rmtree(path, ignore_errors=True)
    with contextlib.suppress(SqualsError):
        run_git(repo, "worktree", "prune")
    return note
