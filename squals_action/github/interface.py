"""The two doors of the action: what it needs from GitHub, and what it needs from the core that does the work.

Both are Protocols so the runner is tested with fakes and wired to PyGithub and to the real pipeline
(manifest, gates, lifecycle, state) at the entry point. Nothing here imports a heavy library.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

from squals_action.errors import SqualsError
from squals_action.github.events import Intent
from squals_action.report.model import Problem, Report

if TYPE_CHECKING:  # the no-op path imports this module: the gates' modules stay unloaded
    from squals_action.gates.checks import CheckState

Conclusion = Literal["success", "failure", "neutral", "cancelled", "skipped", "timed_out", "action_required"]
DeploymentState = Literal["error", "failure", "inactive", "in_progress", "queued", "pending", "success"]
#: Roles of the collaborator permission API that may promote or roll back.
WRITE_ROLES = frozenset({"admin", "maintain", "write"})


class GitHubError(SqualsError):
    """A GitHub API call failed after its retries (the message names the call and GitHub's answer)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status

    @property
    def refused(self) -> bool:
        """A 403 that is not a rate limit: this token may not write (a fork's, Dependabot's, or too few
        ``permissions:``), as GitHub answers "Resource not accessible by integration"."""
        return self.status == 403 and "rate limit" not in str(self).lower()


@dataclass(frozen=True)
class PullInfo:
    """What the action needs of a pull request it did not get in the event (``issue_comment``)."""

    number: int
    head_sha: str
    head_ref: str
    state: str
    fork: bool
    title: str = ""


class GitHubApi(Protocol):
    """Every call the action makes; each write is idempotent (looked up before it is created)."""

    def permission(self, user: str) -> str:
        """The user's role on the repository: admin, maintain, write, triage, read or none."""
        ...

    def pull(self, number: int) -> PullInfo: ...

    def upsert_comment(self, number: int, marker: str, render: Callable[[str | None], str]) -> int:
        """Edit the PR comment holding ``marker`` (``render`` gets its old body) or post it; its id."""
        ...

    def ensure_label(self, name: str, color: str, description: str) -> None: ...

    def remove_label(self, number: int, name: str) -> None:
        """Remove the label from the PR; a label that is already gone is fine."""
        ...

    def start_check_run(self, head_sha: str, name: str, external_id: str, details_url: str | None) -> int: ...

    def finish_check_run(
        self,
        check_run_id: int,
        conclusion: Conclusion,
        title: str,
        summary: str,
        problems: Sequence[Problem],
    ) -> None:
        """Complete the check run; annotations go in batches of at most 50 per request."""
        ...

    def deployment(
        self, environment: str, ref: str, *, transient: bool, production: bool, description: str
    ) -> int:
        """The deployment of ``ref`` to ``environment``: the environment's newest if it is of ``ref`` (a retry
        or a re-run made it), else a new one (a rollback to an older commit is the newest again)."""
        ...

    def deployment_status(
        self,
        deployment_id: int,
        state: DeploymentState,
        *,
        environment_url: str | None,
        log_url: str | None,
        description: str,
    ) -> None: ...

    def deactivate(self, environment: str, log_url: str | None, description: str) -> int:
        """Mark the environment's latest deployment inactive (island torn down); how many changed."""
        ...

    def commit_checks(self, sha: str) -> Sequence[CheckState]:
        """The commit's check runs and statuses, the latest per name (for ``gates.checks``)."""
        ...


@dataclass(frozen=True)
class Request:
    """One intent and the action's inputs, handed to the core."""

    intent: Intent
    workspace: Path
    squals_files: tuple[str, ...] = ()
    provider: str | None = None
    state_branch: str = "squals/state"
    run_url: str | None = None
    head_sha: str | None = None
    #: Called once when the work on the environment really begins (a promotion: once the PR's island passed
    #: the lifecycle's checks), so the ``prod`` deployment is opened only when there is an island to promote.
    on_start: Callable[[], None] | None = None
    #: The check runs and statuses of a commit (``GitHubApi.commit_checks``); None without GitHub.
    checks: Callable[[str], Sequence[CheckState]] | None = None


class Core(Protocol):
    """The work behind each intent, returning what to report; a held lock is a ``locked`` report."""

    def preview(self, request: Request) -> Report: ...

    def promote(self, request: Request) -> Report: ...

    def rollback(self, request: Request) -> Report: ...

    def teardown(self, request: Request) -> Report: ...

    def experiment_start(self, request: Request) -> Report: ...

    def experiment_tick(self, request: Request) -> Report: ...
