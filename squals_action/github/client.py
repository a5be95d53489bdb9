"""The GitHub client: PyGithub behind :class:`~squals_action.github.interface.GitHubApi`.

- ``GITHUB_API_URL`` is the base URL, so GitHub Enterprise Server works unchanged.
- Every request has a timeout; PyGithub's ``GithubRetry`` retries 5xx answers and rate limits (honouring
  ``Retry-After``, capped). A POST that failed with a 5xx may still have been carried out, so it is not
  retried blindly: the caller looks the object up again (comment by marker, deployment by sha and
  environment, check run by external id) and creates it only when it is really missing. Re-runs find what
  earlier runs made.
- The sticky comment is the one the token's own identity wrote (``GET /user``, or the app's bot for an
  installation token), never another author's comment that holds the marker.
- PyGithub is imported when a client is built, never by the no-op path.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from squals_action import __version__
from squals_action.gates.checks import CheckState
from squals_action.github.interface import (
    Conclusion,
    DeploymentState,
    GitHubError,
    PullInfo,
)
from squals_action.report.markdown import truncate
from squals_action.report.model import Problem

T = TypeVar("T")
#: The Checks API takes at most this many annotations per request.
ANNOTATIONS_PER_REQUEST = 50
#: Lists read in full (a commit's check runs and statuses): GitHub's largest page, and a bound.
PER_PAGE = 100
MAX_PAGES = 20
#: Check-run ``output.summary`` and ``output.text`` are limited to this many characters.
CHECK_OUTPUT_LIMIT = 65_535
#: Who writes with the workflow's ``GITHUB_TOKEN``: an installation token of the GitHub Actions app, which may
#: not call ``GET /user``. A GitHub App's own installation token sets ``SQUALS_GITHUB_APP_LOGIN``.
ACTIONS_BOT = "github-actions[bot]"
#: GitHub's prefix of installation ("server-to-server") tokens: they write as their app's bot, no need to ask.
INSTALLATION_TOKEN_PREFIX = "ghs_"  # noqa: S105 - a documented prefix, not a secret


@dataclass(frozen=True)
class ClientConfig:
    """How to reach GitHub and how patient to be. ``from_env`` reads the runner's variables."""

    token: str
    repository: str
    api_url: str = "https://api.github.com"
    timeout: float = 15.0
    retries: int = 5
    backoff_factor: float = 1.0
    secondary_rate_wait: float = 60.0
    max_retry_after: float = 120.0
    write_interval: float = 1.0
    request_interval: float = 0.25
    #: The login an installation token writes as (GET /user answers 403 to those tokens).
    app_login: str = ACTIONS_BOT

    @classmethod
    def from_env(cls, token: str, repository: str, environ: Mapping[str, str] | None = None) -> ClientConfig:
        """``GITHUB_API_URL`` for the server; ``SQUALS_GITHUB_*`` tune timeouts and pacing (tests: low)."""
        env = os.environ if environ is None else environ

        def num(name: str, default: float) -> float:
            raw = env.get(name, "")
            try:
                return float(raw) if raw else default
            except ValueError:
                return default

        return cls(
            token=token,
            repository=repository,
            api_url=(env.get("GITHUB_API_URL") or "https://api.github.com").rstrip("/"),
            timeout=num("SQUALS_GITHUB_TIMEOUT", 15.0),
            retries=int(num("SQUALS_GITHUB_RETRIES", 5)),
            backoff_factor=num("SQUALS_GITHUB_BACKOFF", 1.0),
            secondary_rate_wait=num("SQUALS_GITHUB_SECONDARY_WAIT", 60.0),
            max_retry_after=num("SQUALS_GITHUB_MAX_RETRY_AFTER", 120.0),
            write_interval=num("SQUALS_GITHUB_WRITE_INTERVAL", 1.0),
            request_interval=num("SQUALS_GITHUB_REQUEST_INTERVAL", 0.25),
            app_login=env.get("SQUALS_GITHUB_APP_LOGIN", "").strip() or ACTIONS_BOT,
        )


@functools.cache
def _retry_class() -> type[Any]:
    """A ``GithubRetry`` that caps ``Retry-After`` and never replays a POST that may have been carried out."""
    from github.GithubRetry import GithubRetry

    class SqualsRetry(GithubRetry):
        max_retry_after: float = 120.0

        def new(self, **kw: Any) -> Any:
            retry = super().new(**kw)
            retry.max_retry_after = self.max_retry_after
            return retry

        def is_retry(self, method: str, status_code: int, has_retry_after: bool = False) -> bool:
            if method.upper() == "POST":
                # A rate-limited POST was refused before anything happened: safe to send again. A 5xx POST
                # may have created the object; the client looks it up before creating it again.
                if status_code not in (403, 429):
                    return False
                return bool(super().is_retry("GET", status_code, has_retry_after))
            return bool(super().is_retry(method, status_code, has_retry_after))

        def get_retry_after(self, response: Any) -> float | None:
            value = super().get_retry_after(response)
            return None if value is None else min(float(value), self.max_retry_after)

    return SqualsRetry


def make_retry(config: ClientConfig) -> Any:
    """The retry policy PyGithub's requests go through (exposed so tests can shrink the waits)."""
    cls = _retry_class()
    retry = cls(
        total=config.retries,
        backoff_factor=config.backoff_factor,
        secondary_rate_wait=config.secondary_rate_wait,
        allowed_methods=frozenset({"GET", "HEAD", "PUT", "PATCH", "DELETE", "OPTIONS"}),
    )
    retry.max_retry_after = config.max_retry_after
    return retry


class GitHubClient:
    """One repository on one GitHub server, through PyGithub."""

    def __init__(self, config: ClientConfig) -> None:
        from github import Auth, Github

        self._config = config
        self._gh = Github(
            auth=Auth.Token(config.token),
            base_url=config.api_url,
            timeout=max(1, round(config.timeout)),
            user_agent=f"squals-action/{__version__}",
            per_page=100,
            retry=make_retry(config),
            seconds_between_requests=config.request_interval or None,
            seconds_between_writes=config.write_interval or None,
            lazy=True,
        )
        self._repo = self._gh.get_repo(config.repository)  # lazy: no request until a call needs one

    # -- helpers ---------------------------------------------------------------------------------------

    @contextmanager
    def _call(self, what: str) -> Iterator[None]:
        """Turn PyGithub and requests failures into one-line :class:`GitHubError` naming the call."""
        import requests
        from github import GithubException

        try:
            yield
        except GithubException as exc:
            message = exc.message or (exc.data.get("message") if isinstance(exc.data, dict) else None)
            raise GitHubError(
                f"GitHub API: {what}: HTTP {exc.status}: {message or 'no message'}", status=exc.status
            ) from None
        except requests.RequestException as exc:
            raise GitHubError(f"GitHub API: {what}: {type(exc).__name__}: {exc}") from None

    def _create_with_lookup(
        self, what: str, find: Callable[[], T | None], create: Callable[[], T], looked: bool = False
    ) -> T:
        """Find, else create; after a 5xx on create, look again before trying again (no duplicates).

        ``looked``: the caller has just looked and found nothing, so the first look-up is skipped.
        """
        from github import GithubException

        for attempt in range(self._config.retries + 1):
            if attempt or not looked:
                with self._call(f"look up {what}"):
                    found = find()
                if found is not None:
                    return found
            try:
                return create()
            except GithubException as exc:
                if exc.status < 500 or attempt == self._config.retries:
                    with self._call(f"create {what}"):
                        raise
                time.sleep(min(self._config.backoff_factor * (2**attempt), 30.0))
        raise GitHubError(f"GitHub API: create {what}: gave up")  # pragma: no cover - loop always returns

    @functools.cached_property
    def own_login(self) -> str:
        """Who this token writes as: ``GET /user`` for a person's token; an installation token (the
        workflow's ``GITHUB_TOKEN``, a GitHub App's) is refused that call and writes as its app's bot."""
        if self._config.token.startswith(INSTALLATION_TOKEN_PREFIX):
            return self._config.app_login
        try:
            with self._call("the token's user"):
                _, data = self._gh.requester.requestJsonAndCheck("GET", "/user")
        except GitHubError as exc:
            if exc.status in (401, 403):
                return self._config.app_login
            raise
        return str(data.get("login") or "")

    # -- GitHubApi ---------------------------------------------------------------------------------------

    def permission(self, user: str) -> str:
        import urllib.parse

        with self._call(f"permission of {user}"):
            _, data = self._gh.requester.requestJsonAndCheck(
                "GET", f"{self._repo.url}/collaborators/{urllib.parse.quote(user, safe='')}/permission"
            )
        role = data.get("role_name") or data.get("permission") or "none"
        return str(role)

    def pull(self, number: int) -> PullInfo:
        with self._call(f"pull request #{number}"):
            pr = self._repo.get_pull(number)
            head_repo = pr.head.repo
            return PullInfo(
                number=number,
                head_sha=pr.head.sha,
                head_ref=pr.head.ref,
                state=pr.state,
                fork=head_repo is None or head_repo.full_name != pr.base.repo.full_name,
                title=pr.title or "",
            )

    def upsert_comment(self, number: int, marker: str, render: Callable[[str | None], str]) -> int:
        issue = self._repo.get_issue(number)
        me = self.own_login.casefold()

        def find() -> Any:
            # Anyone may post a comment starting with the marker: only our own is the sticky comment.
            for c in issue.get_comments():
                if (c.body or "").startswith(marker) and str(getattr(c.user, "login", "")).casefold() == me:
                    return c
            return None

        with self._call(f"comments of #{number}"):
            existing = find()
        if existing is not None:
            body = render(existing.body)
            if body != existing.body:
                with self._call(f"edit comment {existing.id}"):
                    existing.edit(body)
            return int(existing.id)
        body = render(None)
        created = self._create_with_lookup(
            f"comment on #{number}", find, lambda: issue.create_comment(body), looked=True
        )
        return int(created.id)

    def ensure_label(self, name: str, color: str, description: str) -> None:
        from github import UnknownObjectException

        def find() -> bool | None:
            try:
                self._repo.get_label(name).color  # noqa: B018 - completes the lazy object: GET
            except UnknownObjectException:
                return None
            return True

        with self._call(f"label {name}"):
            if find():
                return
        try:
            with self._call(f"create label {name}"):
                self._repo.create_label(name, color, description)
        except GitHubError:
            # 422 "already_exists": another run created it between our look-up and create. Fine.
            with self._call(f"label {name}"):
                if find():
                    return
            raise

    def remove_label(self, number: int, name: str) -> None:
        from github import UnknownObjectException

        with self._call(f"remove label {name} from #{number}"):
            try:
                self._repo.get_issue(number).remove_from_labels(name)
            except UnknownObjectException:
                return  # already removed (by a person or an earlier attempt)

    def start_check_run(self, head_sha: str, name: str, external_id: str, details_url: str | None) -> int:
        commit = self._repo.get_commit(head_sha)

        def find() -> Any:
            for run in commit.get_check_runs(check_name=name):
                if run.external_id == external_id:
                    return run
            return None

        def create() -> Any:
            kwargs: dict[str, Any] = {"external_id": external_id, "status": "in_progress"}
            if details_url:
                kwargs["details_url"] = details_url
            return self._repo.create_check_run(name, head_sha, **kwargs)

        # The external id names the workflow run and attempt: a retried request finds the check run it made,
        # while a re-run attempt gets its own, as GitHub does for the jobs themselves.
        run = self._create_with_lookup(f"check run {name}", find, create)
        return int(run.id)

    def finish_check_run(
        self,
        check_run_id: int,
        conclusion: Conclusion,
        title: str,
        summary: str,
        problems: Sequence[Problem],
    ) -> None:
        run = self._repo.get_check_run(check_run_id)
        annotations = [a for a in (_annotation(p) for p in problems) if a is not None]
        batches = [
            annotations[i : i + ANNOTATIONS_PER_REQUEST]
            for i in range(0, len(annotations), ANNOTATIONS_PER_REQUEST)
        ] or [[]]
        output = {"title": title[:1000], "summary": _cut(summary)}
        for index, batch in enumerate(batches):
            last = index == len(batches) - 1
            body: dict[str, Any] = {"output": dict(output, annotations=batch) if batch else dict(output)}
            if last:
                body["conclusion"] = conclusion
            with self._call(f"update check run {check_run_id}"):
                run.edit(**body)

    def deployment(
        self, environment: str, ref: str, *, transient: bool, production: bool, description: str
    ) -> int:
        def find() -> Any:
            # Only the environment's newest deployment is reused (a retried POST, a re-run): after a
            # rollback prod runs an older commit again, and its deployment must be the newest, or the
            # Deployments view would show the commit rolled back from as live.
            for dep in self._repo.get_deployments(environment=environment):
                return dep if ref in (dep.sha, dep.ref) else None
            return None

        def create() -> Any:
            return self._repo.create_deployment(
                ref=ref,
                environment=environment,
                auto_merge=False,
                required_contexts=[],
                description=description[:140],
                transient_environment=transient,
                production_environment=production,
            )

        dep = self._create_with_lookup(f"deployment to {environment}", find, create)
        return int(dep.id)

    def deployment_status(
        self,
        deployment_id: int,
        state: DeploymentState,
        *,
        environment_url: str | None,
        log_url: str | None,
        description: str,
    ) -> None:
        body: dict[str, Any] = {"state": state, "description": description[:140]}
        if environment_url:
            body["environment_url"] = environment_url
        if log_url:
            body["log_url"] = log_url
        with self._call(f"status {state} of deployment {deployment_id}"):
            # PyGithub's Deployment.create_status has no ``log_url``; the documented field goes in raw.
            self._gh.requester.requestJsonAndCheck(
                "POST", f"{self._repo.url}/deployments/{deployment_id}/statuses", input=body
            )

    def commit_checks(self, sha: str) -> list[CheckState]:
        """The check runs and commit statuses of ``sha``, the latest per name; both lists paginated."""
        latest: dict[str, tuple[int, CheckState]] = {}
        for run in self._pages(f"commits/{sha}/check-runs", "check_runs", f"check runs of {sha[:12]}"):
            done = run.get("status") == "completed"
            state = CheckState(
                str(run.get("name")),
                run.get("conclusion") if done else None,
                run.get("html_url") or run.get("details_url"),
                str(run.get("status")),
            )
            order = int(run.get("id") or 0)
            if state.name not in latest or latest[state.name][0] < order:
                latest[state.name] = (order, state)
        checks = {name: state for name, (_, state) in latest.items()}
        for status in self._pages(f"commits/{sha}/status", "statuses", f"commit statuses of {sha[:12]}"):
            context, value = str(status.get("context")), str(status.get("state"))
            # The combined status holds the latest status per context; a check run of that name wins.
            checks.setdefault(
                context,
                CheckState(context, None if value == "pending" else value, status.get("target_url"), value),
            )
        return list(checks.values())

    def _pages(self, path: str, key: str, what: str) -> Iterator[dict[str, Any]]:
        """Every item of a paginated list (``per_page=100``) until ``total_count`` or a short page."""
        seen = 0
        for page in range(1, MAX_PAGES + 1):
            with self._call(what):
                _, data = self._gh.requester.requestJsonAndCheck(
                    "GET", f"{self._repo.url}/{path}", parameters={"per_page": PER_PAGE, "page": page}
                )
            items = data.get(key) or []
            yield from items
            seen += len(items)
            if len(items) < PER_PAGE or seen >= int(data.get("total_count") or 0):
                return
        raise GitHubError(f"GitHub API: {what}: more than {MAX_PAGES * PER_PAGE} items")

    def deactivate(self, environment: str, log_url: str | None, description: str) -> int:
        with self._call(f"deployments of {environment}"):
            latest = next(iter(self._repo.get_deployments(environment=environment)), None)
            if latest is None:
                return 0
            status = next(iter(latest.get_statuses()), None)
        if status is not None and status.state == "inactive":
            return 0
        self.deployment_status(
            int(latest.id), "inactive", environment_url=None, log_url=log_url, description=description
        )
        return 1


def _annotation(problem: Problem) -> dict[str, Any] | None:
    """A Checks API annotation; problems without a file are reported in the summary only."""
    if not problem.file:
        return None
    line = problem.line or 1
    ann: dict[str, Any] = {
        "path": problem.file,
        "start_line": line,
        "end_line": line,
        "annotation_level": problem.level,
        "message": problem.message[:64_000] or "(no message)",
    }
    if problem.col:
        ann["start_column"] = problem.col
        ann["end_column"] = problem.col
    if problem.title:
        ann["title"] = problem.title[:255]
    return ann


def _cut(text: str) -> str:
    return truncate(text, limit=CHECK_OUTPUT_LIMIT, pointer="… cut to fit; the job summary has the rest.")
