"""One run of the action: permission check, check run, deployment, the core's work, and the reports.

The runner only orchestrates: the work is the ``Core``'s, the GitHub calls are the ``GitHubApi``'s (see
:mod:`squals_action.github.interface`). Local outputs (job summary, ``GITHUB_OUTPUT``, workflow-command
annotations) are written before any GitHub write, so a failing API still leaves the result on the run page.
"""

from __future__ import annotations

import contextlib
import functools
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TextIO

from squals_action.errors import EXIT_FAILURE, EXIT_OK, SqualsError
from squals_action.github.events import PROMOTE_LABEL, ROLLBACK_LABEL, Intent, IntentKind
from squals_action.github.interface import (
    WRITE_ROLES,
    Conclusion,
    Core,
    DeploymentState,
    GitHubApi,
    GitHubError,
    Request,
)
from squals_action.report import workflow_commands as wc
from squals_action.report.comment import MARKER, RunInfo, compose_comment, compose_summary, run_url_from_env
from squals_action.report.loopback import withhold_loopback
from squals_action.report.model import Report, Status

#: The action's own check run; the squals file may not wait for it (manifest.checks.OWN_CHECK, the same name).
CHECK_NAME = "squals"
#: Set to 1 by the action's Dockerfile: this process runs in the container GitHub starts for one job.
CONTAINER_VARIABLE = "SQUALS_ACTION_CONTAINER"
LABELS: dict[str, tuple[str, str]] = {
    PROMOTE_LABEL: ("0e8a16", "Squals: promote this PR's island to prod (blue/green)"),
    ROLLBACK_LABEL: ("b60205", "Squals: roll prod back to the previous release"),
}
_CONCLUSIONS: dict[Status, Conclusion] = {
    "success": "success",
    "failure": "failure",
    "skipped": "skipped",
    "running": "neutral",
    "refused": "neutral",
    "locked": "neutral",
    "neutral": "neutral",
}


@dataclass(frozen=True)
class Settings:
    """The action's inputs and the runner's environment, read once by the entry point."""

    workspace: Path
    squals_files: tuple[str, ...] = ()
    provider: str | None = None
    state_branch: str = "squals/state"
    run_url: str | None = None
    run_id: str = "local"
    run_attempt: str = "1"
    output_path: str | None = None
    summary_path: str | None = None
    #: Running as the Docker action (``SQUALS_ACTION_CONTAINER=1``, set by the image): nothing started here
    #: outlives the job, so local islands are refused and no loopback address is published.
    container: bool = False
    #: the ``github-token`` input: the API's and the state branch's credentials (never in a repr)
    token: str = field(default="", repr=False)
    #: ``GITHUB_SERVER_URL``: the only host git sends the token to
    server_url: str = "https://github.com"


def run(
    intent: Intent,
    core: Core,
    api: GitHubApi | None,
    settings: Settings,
    stream: TextIO | None = None,
) -> tuple[int, Report]:
    """Carry out ``intent`` and report it everywhere; returns the exit code and the report."""
    out = stream if stream is not None else sys.stdout
    if api is not None and intent.pr_number is not None and intent.head_sha is None:
        pull = api.pull(intent.pr_number)
        intent = replace(
            intent,
            head_sha=pull.head_sha,
            sha=pull.head_sha,
            head_ref=pull.head_ref,
            fork=pull.fork,
            pr_title=intent.pr_title or pull.title,
        )
    info = RunInfo(
        run_url=settings.run_url,
        sha=intent.head_sha or intent.sha,
        event=intent.event_name,
        actor=intent.actor,
    )

    if intent.needs_write_permission:
        refusal = _check_permission(intent, api)
        if refusal is None and intent.kind is IntentKind.PROMOTE and intent.fork:
            refusal = Report(
                intent="promote",
                status="refused",
                headline=f"PR #{intent.pr_number} comes from a fork: forks are never deployed, so there "
                "is no island to promote. Nothing was changed.",
            )
        if refusal is not None:
            return _publish(intent, refusal, api, settings, info, out, check_run=None, deployment=None)

    check_run: int | None = None
    sha = intent.head_sha or intent.sha
    try:
        if api is not None and sha and intent.kind not in (IntentKind.TEARDOWN, IntentKind.EXPERIMENT_TICK):
            external_id = f"squals:{settings.run_id}:{settings.run_attempt}"
            check_run = api.start_check_run(sha, CHECK_NAME, external_id, settings.run_url)
        if api is not None and intent.kind is IntentKind.PREVIEW:
            for name, (color, description) in LABELS.items():
                api.ensure_label(name, color, description)
    except GitHubError as exc:
        if not exc.refused:
            raise
        # The first write told what the payload could not: this token is read-only. Degrade, as up front.
        intent, api = replace(intent, read_only=_refused(exc, out), deploy=False), None
    if intent.read_only and intent.kind not in (IntentKind.PREVIEW, IntentKind.TEARDOWN):
        verb = intent.kind.value
        refusal = Report(
            intent=verb,
            status="refused",
            headline=f"{verb} not carried out: {intent.read_only}; nothing was changed",
        )
        return _publish(intent, refusal, api, settings, info, out, check_run=check_run, deployment=None)
    env_name = intent.environment
    # A preview's island is built by this run: its deployment opens now. The prod deployment opens only once
    # the promotion begins (the core calls ``on_start``): a promote of a PR with no island, or one that waits
    # for another PR's lock, deployed nothing and leaves nothing in the Deployments view.
    opened: list[int] = []
    on_start: Callable[[], None] | None = None
    if (
        api is not None
        and sha
        and env_name
        and intent.deploy
        and intent.kind in (IntentKind.PREVIEW, IntentKind.PROMOTE)
    ):
        on_start = functools.partial(_open_deployment, api, intent, env_name, sha, settings.run_url, opened)
        if intent.kind is IntentKind.PREVIEW:
            on_start()
            on_start = None

    request = Request(
        intent=intent,
        workspace=settings.workspace,
        squals_files=settings.squals_files,
        provider=settings.provider,
        state_branch=settings.state_branch,
        run_url=settings.run_url,
        head_sha=sha,
        on_start=on_start,
        checks=api.commit_checks if api is not None else None,
    )

    def publish(result: Report) -> tuple[int, Report]:
        """Report ``result`` everywhere, with the deployment the core opened meanwhile (if it did)."""
        deployment = opened[0] if opened else None
        return _publish(intent, result, api, settings, info, out, check_run=check_run, deployment=deployment)

    try:
        report = _dispatch(core, request)
    except SqualsError as exc:
        report = Report(
            intent=intent.kind.value,
            status="failure",
            environment=env_name,
            headline=f"{intent.kind.value} failed: {exc.one_line()}",
        )
    except Exception as exc:
        # A bug: close the check run and the deployment as failed (never leave them "in progress"),
        # then let the one exit place log the traceback.
        crash = Report(
            intent=intent.kind.value,
            status="failure",
            environment=env_name,
            headline=f"{intent.kind.value} failed: internal error: {type(exc).__name__}",
        )
        with contextlib.suppress(Exception):
            publish(crash)
        raise
    return publish(report)


def _open_deployment(
    api: GitHubApi, intent: Intent, env_name: str, sha: str, run_url: str | None, opened: list[int]
) -> None:
    """Create the deployment of ``env_name`` at ``sha`` (its id goes into ``opened`` at once, so a failure
    to mark it in progress still gets it closed by the report) and mark it in progress; once per run."""
    if opened:
        return
    opened.append(
        api.deployment(
            env_name,
            sha,
            transient=intent.kind is IntentKind.PREVIEW,
            production=env_name == "prod",
            description=f"squals {intent.kind.value} of PR #{intent.pr_number}",
        )
    )
    api.deployment_status(
        opened[-1],
        "in_progress",
        environment_url=None,
        log_url=run_url,
        description=f"squals {intent.kind.value} in progress",
    )


def _refused(exc: GitHubError, out: TextIO) -> str:
    """Why this run stops writing to GitHub, said once on the log: GitHub refused a write (HTTP 403)."""
    why = f"GitHub refused a write with this run's token, so it is read-only ({exc.one_line()})"
    wc.emit(f"squals: {why}: nothing more is written to GitHub; see the job summary", stream=out)
    return why


def _dispatch(core: Core, request: Request) -> Report:
    kind = request.intent.kind
    if kind is IntentKind.PREVIEW:
        return core.preview(request)
    if kind is IntentKind.PROMOTE:
        return core.promote(request)
    if kind is IntentKind.ROLLBACK:
        return core.rollback(request)
    if kind is IntentKind.TEARDOWN:
        return core.teardown(request)
    if kind is IntentKind.EXPERIMENT_START:
        return core.experiment_start(request)
    if kind is IntentKind.EXPERIMENT_TICK:
        return core.experiment_tick(request)
    return Report(intent=kind.value, status="skipped", headline=request.intent.reason)


def _check_permission(intent: Intent, api: GitHubApi | None) -> Report | None:
    """None when the sender may act; otherwise the refusal to report (nothing else happens)."""
    verb = intent.kind.value
    actor = intent.actor or "an unknown user"
    if api is None:
        role = "unknown (no GitHub token)"
    elif intent.actor is None:
        role = "none"
    else:
        role = api.permission(intent.actor)
    if role in WRITE_ROLES:
        return None
    return Report(
        intent=verb,
        status="refused",
        headline=f"{verb} requested by {actor} was refused: it needs write, maintain or admin permission "
        f"on the repository, and {actor} has {role}. Nothing was changed.",
        notes=(f"Ask a maintainer to add the `{intent.trigger_label or verb}` label.",),
    )


def _publish(
    intent: Intent,
    report: Report,
    api: GitHubApi | None,
    settings: Settings,
    info: RunInfo,
    out: TextIO,
    *,
    check_run: int | None,
    deployment: int | None,
) -> tuple[int, Report]:
    """Job summary, outputs and annotations first (local), then the comment, check run, deployment, label."""
    if settings.container:
        report = withhold_loopback(report)
    for problem in report.problems:
        line = wc.annotation(
            "error" if problem.level == "failure" else problem.level,
            problem.message,
            file=problem.file,
            line=problem.line,
            col=problem.col,
            title=problem.title,
        )
        wc.emit(line, stream=out)
    wc.emit(f"squals: {intent.kind.value}: {report.status}: {' '.join(report.headline.split())}", stream=out)
    wc.append_step_summary(compose_summary(report, info), path=settings.summary_path)
    outputs: dict[str, str] = {"status": report.status, "intent": intent.kind.value}
    outputs["environment-url"] = report.url or ""
    outputs.update(report.outputs)
    wc.set_outputs(outputs, path=settings.output_path)

    if api is not None:
        try:
            _write_github(intent, report, api, settings, info, check_run=check_run, deployment=deployment)
        except GitHubError as exc:
            if not exc.refused:
                raise
            _refused(exc, out)
    code = EXIT_FAILURE if report.status == "failure" else EXIT_OK
    return code, report


def _write_github(
    intent: Intent,
    report: Report,
    api: GitHubApi,
    settings: Settings,
    info: RunInfo,
    *,
    check_run: int | None,
    deployment: int | None,
) -> None:
    """The comment, the check run, the deployment and the label: what a read-only token may not do."""
    if intent.pr_number is not None:
        api.upsert_comment(intent.pr_number, MARKER, lambda old: compose_comment(report, info, old))
    if check_run is not None:
        title = f"{intent.kind.value}: {report.status}"
        api.finish_check_run(
            check_run, _CONCLUSIONS[report.status], title, compose_summary(report, info), report.problems
        )
    if deployment is None and intent.kind is IntentKind.ROLLBACK and report.status == "success":
        # The commit now live is known only after the rollback: record prod's deployment of it.
        ref = report.outputs.get("commit") or intent.default_branch or intent.sha
        if ref:
            deployment = api.deployment(
                "prod",
                ref,
                transient=False,
                production=True,
                description=f"squals rollback of PR #{intent.pr_number}",
            )
    if deployment is not None:
        ok = report.status in ("success", "skipped", "neutral")
        # A run that waited for a lock, could not write the state (neutral) or was refused deployed nothing:
        # its deployment is simply not active.
        state: DeploymentState = "success" if ok else "failure"
        if report.status in ("locked", "neutral", "refused"):
            state = "inactive"
        api.deployment_status(
            deployment,
            state,
            environment_url=report.url if ok else None,
            log_url=settings.run_url,
            description=" ".join(report.headline.split())[:140],
        )
    if intent.kind is IntentKind.TEARDOWN and intent.environment and report.status != "locked":
        api.deactivate(intent.environment, settings.run_url, f"PR #{intent.pr_number} closed")
    if intent.trigger_label and intent.pr_number is not None:
        api.remove_label(intent.pr_number, intent.trigger_label)


def settings_from_env(environ: Mapping[str, str]) -> Settings:
    """The action's inputs: Docker passes them as ``INPUT_<NAME>``, upper-cased with hyphens kept."""
    raw_files = environ.get("INPUT_SQUALS-FILES", "")
    files = tuple(f.strip() for chunk in raw_files.splitlines() for f in chunk.split(",") if f.strip())
    workspace = Path(environ.get("GITHUB_WORKSPACE") or ".").resolve()
    return Settings(
        workspace=workspace,
        squals_files=files,
        provider=environ.get("INPUT_PROVIDER", "").strip() or None,
        state_branch=environ.get("INPUT_STATE-BRANCH", "").strip() or "squals/state",
        run_url=run_url_from_env(dict(environ)),
        run_id=environ.get("GITHUB_RUN_ID", "") or "local",
        run_attempt=environ.get("GITHUB_RUN_ATTEMPT", "") or "1",
        output_path=environ.get("GITHUB_OUTPUT") or None,
        summary_path=environ.get("GITHUB_STEP_SUMMARY") or None,
        container=environ.get(CONTAINER_VARIABLE, "") == "1",
        server_url=environ.get("GITHUB_SERVER_URL", "").strip() or "https://github.com",
    )
