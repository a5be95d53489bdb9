"""One repository as the state store talks to it: git commands with a timeout, and its refs and directories.

Every git call runs with a timeout in its own process group (``git`` spawns helpers such as
``git-remote-https``; a timeout kills them all), with hooks disabled, no prompts and the C locale, and with
none of the variables that would point git at another repository than the one given.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from squals_action.gitcmd import git_text
from squals_action.state.errors import GitCommandError, StateError

# Variables that would make git look at another repository than the one we were given.
_REPO_ENV = (
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_COMMON_DIR",
    "GIT_NAMESPACE",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
)


@dataclass(frozen=True)
class GitResult:
    returncode: int
    stdout: bytes
    stderr: str


class GitRepo:
    """The repository at ``path``: runs git in it (every call bounded by ``timeout`` seconds), reads refs.

    ``env`` is added to every git call's environment: the credentials of fetches and pushes (see
    :func:`squals_action.gitcmd.token_header_env`), which must not be written to the repository's config.
    """

    def __init__(self, path: Path, *, timeout: float, env: Mapping[str, str] | None = None) -> None:
        self.path = path
        self.timeout = timeout
        self.env = {k: v for k, v in os.environ.items() if k not in _REPO_ENV}
        self.env.update({"GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C", "LANGUAGE": "C", **(env or {})})
        self._objects: Path | None = None
        self._common_dir: Path | None = None

    @property
    def prefix(self) -> list[str]:
        """The start of every git command line: this repository, hooks off."""
        return ["git", "-c", "core.hooksPath=/dev/null", "-C", str(self.path)]

    def run(self, *args: str, input: bytes | None = None, check: bool = True) -> GitResult:
        """Run one git command in the repository with a timeout; the whole process group dies on timeout."""
        cmd = [*self.prefix, *args]
        try:
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=self.env,
                start_new_session=True,
            )
        except OSError as exc:
            raise GitCommandError(f"cannot run git: {exc}") from None
        try:
            out, err = proc.communicate(input, timeout=self.timeout)
        except subprocess.TimeoutExpired:
            kill_group(proc)
            raise GitCommandError(f"git {args[0]} timed out after {self.timeout:g}s in {self.path}") from None
        except BaseException:
            kill_group(proc)
            raise
        result = GitResult(proc.returncode, out, err.decode("utf-8", "replace"))
        if check and result.returncode != 0:
            raise GitCommandError(f"git {args[0]} failed in {self.path}: {last_lines(result.stderr)}")
        return result

    def locate(self) -> None:
        """Find the object directory and the common git directory once (worktrees share the repository's)."""
        if self._objects is not None:
            return
        out = self.run("rev-parse", "--show-object-format", "--git-common-dir", "--git-path", "objects")
        lines = out.stdout.decode().splitlines()
        if lines[0].strip() != "sha1":
            raise StateError(f"{self.path} uses {lines[0].strip()} object ids; only sha1 works")
        common, objects = Path(lines[1].strip()), Path(lines[2].strip())
        self._common_dir = common if common.is_absolute() else self.path / common
        self._objects = objects if objects.is_absolute() else self.path / objects

    @property
    def common_dir(self) -> Path:
        """The git directory shared by every worktree: refs, lock files, ``worktrees/``."""
        self.locate()
        assert self._common_dir is not None
        return self._common_dir

    @property
    def objects_dir(self) -> Path:
        self.locate()
        assert self._objects is not None
        return self._objects

    def read_ref(self, ref: str) -> str | None:
        """The commit ``ref`` points at, ``None`` if it does not exist; a loose ref is read without git."""
        try:
            value = (self.common_dir / ref).read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError):
            value = ""
        if len(value) == 40 and all(c in "0123456789abcdef" for c in value):
            return value
        # packed, symbolic or another ref backend: ask git
        found = self.run("rev-parse", "--verify", "--quiet", ref + "^{commit}", check=False)
        return (found.stdout.decode().strip() or None) if found.returncode == 0 else None


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    """Kill ``proc`` and every helper it spawned (it runs in its own session), then reap it."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()


def last_lines(stderr: str, count: int = 3) -> str:
    """The last lines of what git said, on one line: the part that names the problem."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    return " / ".join(lines[-count:]) or "no message"


def list_remotes(repo_path: Path, *, timeout: float = 30.0) -> list[str]:
    """The names of the remotes of the repository at ``repo_path`` (``git remote``)."""
    return git_text(repo_path, "remote", timeout=timeout, error=GitCommandError).split()
