"""Where the state branch lives, and how a new tip is published with a compare-and-swap.

A remote's branch (``origin``, the CI case) is fetched into a private tracking ref and published with a
plain, non-forced ``git push <sha>:refs/heads/<branch>``: the push *is* the compare-and-swap, and a push
refused for another reason than a race (a protected branch, a hook) fails at once with the remote's
message. In local-only mode (the laptop case) the branch is ``refs/heads/<branch>`` of the repository itself,
moved with ``git update-ref <branch> <new> <old>`` (git takes the ref's lock file and checks the old value
under it, so concurrent processes on one repository serialise safely).
"""

from __future__ import annotations

import contextlib
import time
from abc import ABC, abstractmethod
from pathlib import Path

from squals_action.state.errors import (
    AccessDeniedError,
    GitCommandError,
    PushRejectedError,
    RemoteUnreachableError,
    StateError,
)
from squals_action.state.git_repo import GitRepo, last_lines

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
# What git says when the server answered 401 (with prompts off it cannot ask for a user name) or 403.
_REFUSED = (
    ("returned error: 401", 401),
    ("could not read Username", 401),
    ("Authentication failed", 401),
    ("returned error: 403", 403),
)
#: The all-zero object id: ``git update-ref`` creates the ref only if it does not exist yet.
ZERO_ID = "0" * 40
#: A ref lock file older than this (seconds) is left over from a crashed git, not held by a live writer.
STALE_LOCK_AGE = 600.0


class Publisher(ABC):
    """Where the state branch lives: how its tip is read and how a new tip is published (compare-and-swap).

    This is all that differs between the remote mode and the local-only mode. A publisher holds the
    repository and the branch, never its store, so no reference cycle keeps a store alive.
    """

    #: whether :meth:`fetch` itself moves the store's tracking ref (``git fetch`` does)
    fetch_records: bool = False
    #: how messages name the place: ``remote 'origin'``, ``this repository``
    place: str = ""
    #: the same after a branch name: ``on 'origin'``, ``in this repository``
    on: str = ""

    def __init__(self, repo: GitRepo, branch: str) -> None:
        self.repo = repo
        self.branch = branch

    @property
    @abstractmethod
    def tracking_ref(self) -> str:
        """The private ref that remembers the last tip this repository saw of the branch."""

    def longest_look(self, max_delay: float, slot: float) -> float:
        """The longest interval between two looks at a moving branch while waiting for it to be quiet.

        One slot (one measured attempt): a writer that publishes a run of transitions moves the branch
        several times per slot, so a branch still for a whole slot has been released; looking less often
        only leaves it idle after a run (measured: looks at up to ``max_delay`` left it idle 2/3 of the time).
        """
        return min(max_delay, slot)

    @abstractmethod
    def fetch(self, depth: int | None) -> str | None:
        """The branch's tip, its objects now in the repository; ``None``: the branch does not exist."""

    @abstractmethod
    def peek(self) -> str | None:
        """The branch's tip as cheaply as possible (its objects may not be here yet)."""

    @abstractmethod
    def publish(self, commit: str, old: str | None) -> bool:
        """Move the branch from ``old`` (``None``: absent) to ``commit``; ``False``: lost a race."""


class RemotePublisher(Publisher):
    """A remote's branch: fetched into the tracking ref, published by a plain, non-forced push."""

    fetch_records = True

    def __init__(self, repo: GitRepo, branch: str, remote: str) -> None:
        super().__init__(repo, branch)
        self.remote = remote
        self.place = f"remote {remote!r}"
        self.on = f"on {remote!r}"

    @property
    def tracking_ref(self) -> str:
        return f"refs/squals/{self.remote}/{self.branch}"

    def fetch(self, depth: int | None) -> str | None:
        args = [
            "fetch",
            "--no-tags",
            "--no-write-fetch-head",
            "--no-recurse-submodules",
            "--no-auto-gc",
            "--no-prune",
            "--refmap=",
            "--quiet",
        ]
        if depth is not None:
            args.append(f"--depth={int(depth)}")
        refspec = f"+refs/heads/{self.branch}:{self.tracking_ref}"
        result = self.repo.run(*args, self.remote, refspec, check=False)
        if result.returncode != 0:
            if "couldn't find remote ref" in result.stderr:
                return None
            raise self._failure("fetch", "from", result.stderr)
        tip = self.repo.read_ref(self.tracking_ref)
        if tip is None:
            raise GitCommandError(f"git fetch of {self.branch!r} from {self.remote!r} left no commit behind")
        return tip

    def peek(self) -> str | None:
        result = self.repo.run("ls-remote", self.remote, f"refs/heads/{self.branch}", check=False)
        if result.returncode != 0:
            raise self._failure("look at", "on", result.stderr)
        out = result.stdout.decode()
        for line in out.splitlines():
            sha, _, ref = line.partition("\t")
            if ref == f"refs/heads/{self.branch}":
                return sha
        return None

    def publish(self, commit: str, old: str | None) -> bool:
        # ``old`` is the new commit's parent: a non-forced push only lands if the branch is still there
        result = self.repo.run(
            "push",
            "--porcelain",
            "--no-verify",
            "--no-signed",
            "--no-follow-tags",
            "--recurse-submodules=no",
            self.remote,
            f"{commit}:refs/heads/{self.branch}",
            check=False,
        )
        status = _porcelain_status(result.stdout.decode("utf-8", "replace"), self.branch)
        if result.returncode == 0 and status is not None and status[0] != "!":
            return True  # the tracking ref catches up at the next fetch or at close()
        if status is not None and status[0] == "!":
            reason = status[1]
            if _lost_race(reason):
                return False
            raise PushRejectedError(self.branch, self.remote, _remote_message(reason, result.stderr))
        raise self._failure("push", "to", result.stderr)

    def _failure(self, verb: str, preposition: str, stderr: str) -> StateError:
        """A failed fetch, look or push in one line: a refusal of the credentials says so and its status."""
        for phrase, status in _REFUSED:
            if phrase in stderr:
                said = [line[7:].strip() for line in stderr.splitlines() if line.startswith("remote:")]
                detail = " / ".join(line for line in said if line)
                if not detail:
                    detail = "the token was not accepted" if status == 401 else last_lines(stderr, 1)
                return AccessDeniedError(self.branch, self.remote, status, detail)
        return RemoteUnreachableError(
            f"cannot {verb} state branch {self.branch!r} {preposition} {self.remote!r}: {last_lines(stderr)}",
            self.remote,
        )


class LocalPublisher(Publisher):
    """Local-only mode: the branch is ``refs/heads/<branch>`` of this repository, moved by ``git update-ref``.

    ``git update-ref <ref> <new> <old>`` takes the ref's lock file, checks the old value under the lock and
    renames the new value into place: the compare-and-swap git offers locally, safe between processes.
    """

    place = "this repository"
    on = "in this repository"

    @property
    def tracking_ref(self) -> str:
        return f"refs/squals-local/{self.branch}"

    def longest_look(self, max_delay: float, slot: float) -> float:
        # a look is a file read, not a round trip: look often, so the wait ends soon after the branch stops
        return min(max_delay, 2 * slot)

    def fetch(self, depth: int | None) -> str | None:
        return self.repo.read_ref(f"refs/heads/{self.branch}")

    def peek(self) -> str | None:
        return self.repo.read_ref(f"refs/heads/{self.branch}")

    def publish(self, commit: str, old: str | None) -> bool:
        ref = f"refs/heads/{self.branch}"
        _refuse_checked_out(self.repo, ref)
        result = self.repo.run(
            "update-ref", "-m", "squals: state transition", ref, commit, old or ZERO_ID, check=False
        )
        if result.returncode == 0:
            return True
        if self.peek() != old:
            return False  # another writer moved (or removed) the branch: re-read, re-apply
        lock = self.repo.common_dir / f"{ref}.lock"
        try:
            age: float | None = time.time() - lock.stat().st_mtime
        except OSError:
            age = None
        if age is not None or "File exists" in result.stderr:
            if age is not None and age > STALE_LOCK_AGE:
                raise GitCommandError(
                    f"cannot update state branch {self.branch!r}: {lock} was left {age:.0f}s ago by a git "
                    "that did not finish; remove it if no git command is running in this repository"
                )
            return False  # another writer holds the lock right now: it is about to move the branch
        raise GitCommandError(
            f"cannot update state branch {self.branch!r} in {self.repo.path}: {last_lines(result.stderr)}"
        )


def _refuse_checked_out(repo: GitRepo, ref: str) -> None:
    """Refuse to move a branch a working tree has checked out: its files would no longer match ``HEAD``."""
    heads = [(repo.common_dir / "HEAD", repo.path)]
    with contextlib.suppress(OSError):
        heads += [(admin / "HEAD", admin) for admin in (repo.common_dir / "worktrees").iterdir()]
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
