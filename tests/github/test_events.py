"""Events to intents, on full payloads from @octokit/webhooks-examples (tests/fixtures/github/README.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from squals_action.github.events import EventError, IntentKind, load_event, parse_event
from tests.support.github import EVENTS, event

ENV = {"GITHUB_REPOSITORY": "Codertocat/Hello-World", "GITHUB_SHA": "a" * 40}


def intent(file: str, name: str | None = None):  # type: ignore[no-untyped-def]
    event_name = name or file.split(".")[0]
    return parse_event(event_name, event(file), ENV)


def test_opened_is_a_preview_of_pr_n() -> None:
    i = intent("pull_request.opened")
    assert i.kind is IntentKind.PREVIEW
    assert (i.pr_number, i.environment, i.repository) == (2, "pr-2", "Codertocat/Hello-World")
    assert i.head_sha == "ec26c3e57ca3a959ca5aad62de7213c562f8c821"
    assert i.head_ref == "changes" and i.base_ref == "master"
    assert i.deploy and not i.fork
    assert i.actor == "Codertocat"


def test_synchronize_is_a_preview() -> None:
    assert intent("pull_request.synchronize").kind is IntentKind.PREVIEW


def test_synchronize_on_a_closed_pr_does_nothing() -> None:
    i = intent("pull_request.synchronize-on-closed")
    assert i.kind is IntentKind.NOTHING
    assert "closed" in i.reason


def test_fork_pr_is_validated_but_never_deployed() -> None:
    i = intent("pull_request.opened-fork")
    assert i.kind is IntentKind.PREVIEW
    assert i.fork and not i.deploy
    assert "Octocoders/Hello-World" in i.reason


def test_fork_pr_on_pull_request_target_builds_nothing() -> None:
    i = parse_event("pull_request_target", event("pull_request.opened-fork"), ENV)
    assert i.kind is IntentKind.NOTHING
    assert "pull_request_target" in i.reason


@pytest.mark.parametrize(
    "file", ["pull_request.labeled-other", "pull_request.unlabeled", "pull_request.assigned"]
)
def test_irrelevant_pr_actions_do_nothing(file: str) -> None:
    assert intent(file).kind is IntentKind.NOTHING


def test_promote_label() -> None:
    i = intent("pull_request.labeled-promote")
    assert i.kind is IntentKind.PROMOTE and i.trigger_label == "promote"
    assert i.environment == "prod" and i.needs_write_permission
    assert i.actor == "Codertocat"


def test_promote_label_by_a_read_only_user_is_still_an_intent_checked_later() -> None:
    i = parse_event("pull_request_target", event("pull_request_target.labeled-promote-by-readonly"), ENV)
    assert i.kind is IntentKind.PROMOTE
    assert i.actor == "octocat" and i.needs_write_permission


def test_rollback_label() -> None:
    i = intent("pull_request.labeled-rollback")
    assert i.kind is IntentKind.ROLLBACK and i.trigger_label == "rollback"


def test_promote_label_on_a_closed_pr_does_nothing() -> None:
    payload = event("pull_request.labeled-promote")
    payload["pull_request"]["state"] = "closed"
    assert parse_event("pull_request", payload, ENV).kind is IntentKind.NOTHING


def test_closed_tears_down() -> None:
    i = intent("pull_request.closed")
    assert i.kind is IntentKind.TEARDOWN and i.environment == "pr-2" and not i.merged and not i.deploy


def test_merged_tears_down_and_remembers_the_merge() -> None:
    i = intent("pull_request.closed-merged")
    assert i.kind is IntentKind.TEARDOWN and i.merged


def test_comment_commands() -> None:
    p = intent("issue_comment.created-promote")
    assert p.kind is IntentKind.PROMOTE and p.pr_number == 1 and p.comment_id == 492700400
    assert p.head_sha is None  # not in an issue_comment payload: the action looks the PR up
    assert intent("issue_comment.created-rollback").kind is IntentKind.ROLLBACK


@pytest.mark.parametrize("file", ["issue_comment.created-on-issue", "issue_comment.edited-promote"])
def test_comments_that_are_not_commands(file: str) -> None:
    assert intent(file).kind is IntentKind.NOTHING


@pytest.mark.parametrize(
    "body",
    [
        "please /squals promote",
        "/squals promoted",
        "/squals  promote now",
        "`/squals promote`",
        "/SQUALS promote",
    ],
)
def test_command_must_stand_alone_on_the_first_line(body: str) -> None:
    payload = event("issue_comment.created-promote")
    payload["comment"]["body"] = body
    assert parse_event("issue_comment", payload, ENV).kind is IntentKind.NOTHING


def test_comment_by_a_bot_is_ignored() -> None:
    payload = event("issue_comment.created-promote")
    payload["comment"]["user"]["type"] = "Bot"
    assert parse_event("issue_comment", payload, ENV).kind is IntentKind.NOTHING


def test_push_to_default_branch_starts_the_experiment() -> None:
    i = intent("push.default-branch")
    assert i.kind is IntentKind.EXPERIMENT_START
    assert i.sha == "6113728f27ae82c7b1a177c8d03f9e96e0adf246" and i.default_branch == "master"


def test_push_of_a_tag_does_nothing() -> None:
    assert intent("push.tag").kind is IntentKind.NOTHING


def test_schedule_and_dispatch_tick() -> None:
    s = intent("schedule")
    assert s.kind is IntentKind.EXPERIMENT_TICK and s.repository == "Codertocat/Hello-World"
    d = intent("workflow_dispatch")
    assert d.kind is IntentKind.EXPERIMENT_TICK and d.repository == "octo-org/octo-repo"


def test_unknown_event() -> None:
    i = parse_event("star", {"action": "created"}, ENV)
    assert i.kind is IntentKind.NOTHING and "star" in i.reason


def test_malformed_payload_names_the_field() -> None:
    payload = event("pull_request.opened")
    del payload["pull_request"]["number"]
    with pytest.raises(EventError, match=r"pull_request payload: pull_request\.number: expected an integer"):
        parse_event("pull_request", payload, ENV)


def test_load_event_reads_the_runner_files(tmp_path: Path) -> None:
    name, payload = load_event(
        {"GITHUB_EVENT_NAME": "pull_request", "GITHUB_EVENT_PATH": str(EVENTS / "pull_request.opened.json")}
    )
    assert name == "pull_request" and payload["number"] == 2
    bad = tmp_path / "e.json"
    bad.write_text("{\n  nope")
    with pytest.raises(EventError, match=r"e\.json:2:3: the event payload is not JSON"):
        load_event({"GITHUB_EVENT_NAME": "push", "GITHUB_EVENT_PATH": str(bad)})
    bad.write_text(json.dumps([1]))
    with pytest.raises(EventError, match="expected a JSON object"):
        load_event({"GITHUB_EVENT_NAME": "push", "GITHUB_EVENT_PATH": str(bad)})
    with pytest.raises(EventError, match="GITHUB_EVENT_NAME"):
        load_event({})


def _paths(node: object, prefix: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    out: list[tuple[object, ...]] = []
    if isinstance(node, dict):
        for key, value in node.items():
            out.append((*prefix, key))
            out.extend(_paths(value, (*prefix, key)))
    return out


FILES = sorted(p.stem for p in EVENTS.glob("*.json"))


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from(FILES),
    st.data(),
    st.one_of(
        st.none(), st.integers(), st.text(max_size=20), st.booleans(), st.lists(st.integers(), max_size=2)
    ),
)
def test_mangled_payloads_give_an_intent_or_one_event_error(
    file: str, data: st.DataObject, junk: object
) -> None:
    payload = event(file)
    paths = _paths(payload)
    path = data.draw(st.sampled_from(paths)) if paths else ()
    node = payload
    for key in path[:-1]:
        node = node[key]
    if path:
        if data.draw(st.booleans()):
            del node[path[-1]]
        else:
            node[path[-1]] = junk
    try:
        parse_event(file.split(".")[0], payload, ENV)
    except EventError as exc:
        assert "\n" not in exc.one_line() and "payload" in exc.one_line()


def test_read_only_tokens_are_told_by_the_payload() -> None:
    fork = intent("pull_request.opened-fork")
    assert fork.read_only is not None and "read-only token" in fork.read_only
    assert intent("pull_request.opened").read_only is None

    by_dependabot = event("pull_request.opened")
    by_dependabot["sender"]["login"] = "dependabot[bot]"
    preview = parse_event("pull_request", by_dependabot, ENV)
    assert preview.kind is IntentKind.PREVIEW and not preview.deploy
    assert preview.read_only == "dependabot[bot] triggered this run: GitHub gives it a read-only token"
    closed = event("pull_request.closed")
    closed["sender"]["login"] = "dependabot[bot]"  # Dependabot closes the PRs it superseded
    assert parse_event("pull_request", closed, ENV).read_only is not None
    # pull_request_target gives Dependabot a write token (unless it created the base branch): not told here
    assert parse_event("pull_request_target", closed, ENV).read_only is None
    push = event("push.default-branch")
    push["sender"]["login"] = "dependabot[bot]"
    assert parse_event("push", push, ENV).read_only is not None
