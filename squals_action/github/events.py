"""What does this GitHub event ask for? One :class:`Intent` per run, decided from the event name and payload.

This module is on the no-op path (an unrelated label must end in well under half a second), so it imports
only the standard library: no PyGithub, no git, no YAML.

The payload is read exactly as GitHub documents it for each event (``pull_request``, ``pull_request_target``,
``push``, ``schedule``, ``workflow_dispatch``, ``issue_comment``). Text in it (titles, branch names, labels,
comment bodies) is untrusted: it is kept as data here and escaped by whoever renders it.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from squals_action.errors import SqualsError

PROMOTE_LABEL = "promote"
ROLLBACK_LABEL = "rollback"
#: ``/squals promote`` or ``/squals rollback`` alone on the first line of a PR comment.
_COMMAND = re.compile(r"\A[ \t]*/squals[ \t]+(promote|rollback)[ \t]*(?:\r?\n|\Z)")
#: The actor whose ``pull_request`` and ``push`` runs get a read-only token (and only Dependabot's secrets).
DEPENDABOT = "dependabot[bot]"
_DEPENDABOT_TOKEN = f"{DEPENDABOT} triggered this run: GitHub gives it a read-only token"
#: Actions that (re)build the PR's island.
_PREVIEW_ACTIONS = frozenset({"opened", "synchronize", "reopened", "ready_for_review"})


class IntentKind(StrEnum):
    """Everything the action can be asked to do; ``NOTHING`` ends the run at once."""

    PREVIEW = "preview"
    PROMOTE = "promote"
    ROLLBACK = "rollback"
    TEARDOWN = "teardown"
    EXPERIMENT_START = "experiment-start"
    EXPERIMENT_TICK = "experiment-tick"
    NOTHING = "nothing"


class EventError(SqualsError):
    """The event payload is missing or not shaped as GitHub documents it."""


@dataclass(frozen=True)
class Intent:
    """One run's job, with the facts from the event the rest of the action needs.

    ``actor`` is who triggered it (whose permission a promote or rollback needs); ``trigger_label`` is the
    label to remove after acting; ``fork`` marks a PR whose head lives in another repository (no deployment,
    no secrets); ``deploy`` is False when the run must not provision anything; ``read_only`` says why the
    run's token cannot write, when the payload tells (a fork's ``pull_request``, Dependabot).
    """

    kind: IntentKind
    event_name: str
    reason: str
    action: str | None = None
    repository: str | None = None
    default_branch: str | None = None
    pr_number: int | None = None
    pr_title: str | None = None
    pr_url: str | None = None
    head_sha: str | None = None
    head_ref: str | None = None
    base_ref: str | None = None
    sha: str | None = None
    actor: str | None = None
    trigger_label: str | None = None
    comment_id: int | None = None
    fork: bool = False
    merged: bool = False
    deploy: bool = True
    read_only: str | None = None

    @property
    def environment(self) -> str | None:
        """The environment this intent acts on: ``pr-N`` for previews and teardowns, ``prod`` otherwise."""
        if self.kind in (IntentKind.PREVIEW, IntentKind.TEARDOWN) and self.pr_number is not None:
            return f"pr-{self.pr_number}"
        if self.kind in (IntentKind.PROMOTE, IntentKind.ROLLBACK):
            return "prod"
        return None

    @property
    def needs_write_permission(self) -> bool:
        """Promote and rollback change prod, so the sender must have write, maintain or admin."""
        return self.kind in (IntentKind.PROMOTE, IntentKind.ROLLBACK)


def load_event(environ: Mapping[str, str] | None = None) -> tuple[str, dict[str, Any]]:
    """Read ``GITHUB_EVENT_NAME`` and the JSON payload at ``GITHUB_EVENT_PATH``."""
    env = os.environ if environ is None else environ
    name = env.get("GITHUB_EVENT_NAME", "").strip()
    if not name:
        raise EventError("GITHUB_EVENT_NAME is not set: squals-action runs as a GitHub Actions step")
    path = env.get("GITHUB_EVENT_PATH", "")
    if not path:
        raise EventError("GITHUB_EVENT_PATH is not set: the runner writes the event payload there")
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise EventError(f"{path}: cannot read the event payload: {exc.strerror or exc}") from None
    try:
        payload = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        where = f":{exc.lineno}:{exc.colno}" if isinstance(exc, json.JSONDecodeError) else ""
        raise EventError(f"{path}{where}: the event payload is not JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise EventError(f"{path}: the event payload is {type(payload).__name__}, expected a JSON object")
    return name, payload


def parse_event(name: str, payload: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> Intent:
    """Turn one event into one intent; unknown events and irrelevant actions give ``NOTHING`` and a reason."""
    env = os.environ if environ is None else environ
    p = _Payload(payload, name)
    if name in ("pull_request", "pull_request_target"):
        return _pull_request(name, p)
    if name == "issue_comment":
        return _issue_comment(p)
    if name == "push":
        return _push(p, env)
    if name in ("schedule", "workflow_dispatch"):
        return Intent(
            IntentKind.EXPERIMENT_TICK,
            name,
            reason=f"{name}: advance running experiments",
            repository=p.opt_text("repository", "full_name") or env.get("GITHUB_REPOSITORY") or None,
            default_branch=p.opt_text("repository", "default_branch"),
            sha=env.get("GITHUB_SHA") or None,
            actor=p.opt_text("sender", "login") or env.get("GITHUB_ACTOR") or None,
        )
    return _nothing(name, None, f"the event {name!r} is not one squals acts on")


def _nothing(name: str, action: str | None, reason: str) -> Intent:
    return Intent(IntentKind.NOTHING, name, reason=reason, action=action, deploy=False)


def _pull_request(name: str, p: _Payload) -> Intent:
    action = p.text("action")
    pr = p.sub("pull_request")
    number = pr.integer("number")
    repo = p.text("repository", "full_name")
    head_repo = pr.opt_text("head", "repo", "full_name")
    fork = head_repo is None or head_repo != pr.text("base", "repo", "full_name")
    actor = p.opt_text("sender", "login")
    read_only = None
    if name == "pull_request" and fork:
        read_only = (
            f"PR #{number} comes from the fork {head_repo or '(deleted)'}: GitHub gives its "
            "pull_request runs a read-only token and no secrets"
        )
    elif name == "pull_request" and actor == DEPENDABOT:
        read_only = _DEPENDABOT_TOKEN
    common: dict[str, Any] = {
        "event_name": name,
        "action": action,
        "repository": repo,
        "default_branch": p.opt_text("repository", "default_branch"),
        "pr_number": number,
        "pr_title": pr.opt_text("title"),
        "pr_url": pr.opt_text("html_url"),
        "head_sha": pr.text("head", "sha"),
        "head_ref": pr.opt_text("head", "ref"),
        "base_ref": pr.opt_text("base", "ref"),
        "sha": pr.text("head", "sha"),
        "actor": actor,
        "fork": fork,
        "read_only": read_only,
    }
    state = pr.opt_text("state")
    if action == "closed":
        merged = pr.flag("merged")
        return Intent(
            IntentKind.TEARDOWN,
            reason=f"PR #{number} was {'merged' if merged else 'closed'}: tear down its island",
            merged=merged,
            deploy=False,
            **common,
        )
    if action in ("labeled", "unlabeled"):
        label = p.opt_text("label", "name")
        if action == "labeled" and label in (PROMOTE_LABEL, ROLLBACK_LABEL):
            if state != "open":
                return _nothing(name, action, f"PR #{number} is {state}: the label {label!r} is ignored")
            kind = IntentKind.PROMOTE if label == PROMOTE_LABEL else IntentKind.ROLLBACK
            return Intent(kind, reason=f"label {label!r} added", trigger_label=label, **common)
        return _nothing(name, action, f"{action} {label!r} on PR #{number}: not a squals label")
    if action in _PREVIEW_ACTIONS:
        if state != "open":
            return _nothing(name, action, f"{action} on PR #{number}, which is {state}: nothing to deploy")
        if name == "pull_request_target":
            # pull_request_target runs with secrets on the base branch's code; building the PR's head here is
            # the classic way to leak them. Previews belong to `pull_request`.
            return _nothing(
                name,
                action,
                "previews run on `pull_request`; `pull_request_target` never builds the PR's code",
            )
        if read_only:
            return Intent(
                IntentKind.PREVIEW,
                reason=f"{read_only}: validate and gate only, no deployment",
                deploy=False,
                **common,
            )
        return Intent(IntentKind.PREVIEW, reason=f"PR #{number} {action}: preview it", **common)
    return _nothing(name, action, f"{action} on PR #{number}: nothing to do")


def _issue_comment(p: _Payload) -> Intent:
    action = p.text("action")
    issue = p.sub("issue")
    number = issue.integer("number")
    if action != "created":
        return _nothing("issue_comment", action, f"comment {action}: only new comments carry commands")
    if issue.get("pull_request") is None:
        return _nothing("issue_comment", action, f"#{number} is an issue, not a pull request")
    body = p.opt_text("comment", "body") or ""
    match = _COMMAND.match(body)
    if match is None:
        return _nothing("issue_comment", action, f"comment on PR #{number} holds no /squals command")
    if p.opt_text("comment", "user", "type") == "Bot":
        return _nothing("issue_comment", action, "comments by bots do not carry commands")
    if issue.opt_text("state") != "open":
        return _nothing("issue_comment", action, f"PR #{number} is not open")
    verb = match.group(1)
    kind = IntentKind.PROMOTE if verb == "promote" else IntentKind.ROLLBACK
    return Intent(
        kind,
        "issue_comment",
        reason=f"comment `/squals {verb}`",
        action=action,
        repository=p.text("repository", "full_name"),
        default_branch=p.opt_text("repository", "default_branch"),
        pr_number=number,
        pr_title=issue.opt_text("title"),
        pr_url=issue.opt_text("html_url"),
        actor=p.opt_text("sender", "login"),
        comment_id=p.opt_integer("comment", "id"),
    )


def _push(p: _Payload, env: Mapping[str, str]) -> Intent:
    ref = p.text("ref")
    default = p.opt_text("repository", "default_branch") or p.opt_text("repository", "master_branch")
    if p.flag("deleted"):
        return _nothing("push", None, f"{ref} was deleted")
    if not ref.startswith("refs/heads/") or ref.removeprefix("refs/heads/") != default:
        return _nothing(
            "push", None, f"push to {ref}: only the default branch ({default}) starts experiments"
        )
    actor = p.opt_text("sender", "login") or p.opt_text("pusher", "name")
    read_only = _DEPENDABOT_TOKEN if actor == DEPENDABOT else None
    return Intent(
        IntentKind.EXPERIMENT_START,
        "push",
        reason=f"push to {default}: start the declared experiment",
        repository=p.opt_text("repository", "full_name") or env.get("GITHUB_REPOSITORY") or None,
        default_branch=default,
        sha=p.opt_text("after"),
        head_ref=default,
        actor=actor,
        read_only=read_only,
    )


class _Payload:
    """Typed access to a JSON payload; a missing or mistyped field names its dotted path in the error."""

    def __init__(self, data: Mapping[str, Any], event: str, prefix: tuple[str, ...] = ()) -> None:
        self._data = data
        self._event = event
        self._prefix = prefix

    def get(self, *keys: str) -> Any:
        node: Any = self._data
        for key in keys:
            if not isinstance(node, Mapping):
                return None
            node = node.get(key)
        return node

    def _fail(self, keys: tuple[str, ...], expected: str) -> EventError:
        dotted = ".".join(self._prefix + keys)
        return EventError(f"{self._event} payload: {dotted}: expected {expected}, as GitHub documents it")

    def sub(self, *keys: str) -> _Payload:
        node = self.get(*keys)
        if not isinstance(node, Mapping):
            raise self._fail(keys, "an object")
        return _Payload(node, self._event, self._prefix + keys)

    def text(self, *keys: str) -> str:
        node = self.get(*keys)
        if not isinstance(node, str):
            raise self._fail(keys, "a string")
        return node

    def opt_text(self, *keys: str) -> str | None:
        node = self.get(*keys)
        return node if isinstance(node, str) else None

    def integer(self, *keys: str) -> int:
        node = self.get(*keys)
        if not isinstance(node, int) or isinstance(node, bool):
            raise self._fail(keys, "an integer")
        return node

    def opt_integer(self, *keys: str) -> int | None:
        node = self.get(*keys)
        return node if isinstance(node, int) and not isinstance(node, bool) else None

    def flag(self, *keys: str) -> bool:
        return self.get(*keys) is True
