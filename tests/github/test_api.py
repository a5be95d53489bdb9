"""Every GitHub call the action makes, asserted exactly (method, path, body) against `responses` mocks
whose answers are the examples of GitHub's REST description (@octokit/openapi), and checked against it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import responses

from squals_action.github.client import ClientConfig, GitHubClient
from squals_action.github.events import parse_event
from squals_action.github.interface import Request
from squals_action.github.runner import Settings, run
from squals_action.report.comment import MARKER, RunInfo, compose_comment
from squals_action.report.model import Problem, Report, Step
from tests.support.github import API, BASE, REPO, WIRE, assert_documented, event, example

SHA = "ec26c3e57ca3a959ca5aad62de7213c562f8c821"
RUN_URL = f"https://github.com/{REPO}/actions/runs/42"
ENV = {"GITHUB_REPOSITORY": REPO}
CHECKS = f"/commits/{SHA}/check-runs?check_name=squals&per_page=100"
#: What every run that acts does first: look for its check run, then open it (in progress).
START_CHECK_RUN = [
    ("GET", CHECKS, None),
    (
        "POST",
        "/check-runs",
        {
            "name": "squals",
            "head_sha": SHA,
            "details_url": RUN_URL,
            "external_id": "squals:42:1",
            "status": "in_progress",
        },
    ),
]
BOT = {"login": "github-actions[bot]", "id": 41898282, "type": "Bot"}


class FakeCore:
    """Returns a fixed report for whatever it is asked, and remembers what it was asked.

    Like the pipeline it starts the work it was asked for (``on_start``: the prod deployment of a promotion).
    """

    def __init__(self, report: Report) -> None:
        self.report = report
        self.asked: list[tuple[str, Request]] = []

    def _do(self, verb: str, request: Request) -> Report:
        self.asked.append((verb, request))
        if request.on_start is not None:
            request.on_start()
        return self.report

    def preview(self, request: Request) -> Report:
        return self._do("preview", request)

    def promote(self, request: Request) -> Report:
        return self._do("promote", request)

    def rollback(self, request: Request) -> Report:
        return self._do("rollback", request)

    def teardown(self, request: Request) -> Report:
        return self._do("teardown", request)

    def experiment_start(self, request: Request) -> Report:
        return self._do("experiment-start", request)

    def experiment_tick(self, request: Request) -> Report:
        return self._do("experiment-tick", request)


PREVIEW = Report(
    intent="preview",
    status="success",
    headline="PR #2 deployed",
    environment="pr-2",
    url="http://127.0.0.1:8102/",
    validation=Step("Validation", "success", 0.2),
    gates=(Step("unit", "success", 3.5, kind="test"), Step("deps", "success", 1.0, kind="security")),
    exit_tests=(Step("e2e", "success", 2.0),),
    problems=(Problem("hook is slow", file="squals.yml", line=7, col=3, level="warning"),),
)


@pytest.fixture
def gh() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=True) as rsps:
        yield rsps


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        workspace=tmp_path,
        run_url=RUN_URL,
        run_id="42",
        output_path=str(tmp_path / "output"),
        summary_path=str(tmp_path / "summary.md"),
    )


def client(**overrides: Any) -> GitHubClient:
    config = ClientConfig(
        token="gh-test-token",  # no documented prefix: the client asks GET /user who it is
        repository=REPO,
        retries=3,
        backoff_factor=0.0,
        secondary_rate_wait=0.0,
        max_retry_after=0.01,
        write_interval=0.0,
        request_interval=0.0,
    )
    for key, value in overrides.items():
        object.__setattr__(config, key, value)
    return GitHubClient(config)


def made(rsps: responses.RequestsMock) -> list[tuple[str, str, Any]]:
    """The calls as (method, path below the repository, JSON body); each one checked against the API docs."""
    out = []
    for call in rsps.calls:
        req = call.request
        body = json.loads(req.body) if req.body else None
        assert_documented(req.method or "", req.url or "", body)
        out.append((req.method, (req.url or "").removeprefix(WIRE).removeprefix(f"{API}:443"), body))
    return out


# -- response helpers: documented examples with our repository's ids and URLs ------------------------------


def check_run(status: str = "in_progress", external_id: str = "squals:42:1", id_: int = 4) -> dict[str, Any]:
    return example(
        "post",
        "/repos/{owner}/{repo}/check-runs",
        "201",
        "example-of-in-progress-conclusion",
        id=id_,
        head_sha=SHA,
        external_id=external_id,
        status=status,
        url=f"{BASE}/check-runs/{id_}",
        name="squals",
    )


def label(name: str) -> dict[str, Any]:
    return example("get", "/repos/{owner}/{repo}/labels/{name}", name=name, url=f"{BASE}/labels/{name}")


def comment(id_: int, body: str, user: dict[str, Any] | None = None) -> dict[str, Any]:
    c = example(
        "post",
        "/repos/{owner}/{repo}/issues/{issue_number}/comments",
        "201",
        id=id_,
        body=body,
        url=f"{BASE}/issues/comments/{id_}",
    )
    if user is not None:
        c["user"] = dict(c["user"], **user)
    return c


def deployment(id_: int, env: str, sha: str = SHA) -> dict[str, Any]:
    return example(
        "post",
        "/repos/{owner}/{repo}/deployments",
        "201",
        "simple-example",
        id=id_,
        sha=sha,
        environment=env,
        url=f"{BASE}/deployments/{id_}",
        statuses_url=f"{BASE}/deployments/{id_}/statuses",
    )


def status(state: str, dep: int) -> dict[str, Any]:
    return example(
        "post",
        "/repos/{owner}/{repo}/deployments/{deployment_id}/statuses",
        "201",
        state=state,
        deployment_url=f"{BASE}/deployments/{dep}",
    )


NOT_FOUND = {"message": "Not Found", "documentation_url": "https://docs.github.com/rest"}
#: ``GET /user`` with the workflow's GITHUB_TOKEN (an installation token): it writes as github-actions[bot].
NOT_FOR_INTEGRATIONS = {
    "message": "Resource not accessible by integration",
    "documentation_url": "https://docs.github.com/rest/users/users#get-the-authenticated-user",
}
WHO = ("GET", "/user", None)


def mock_identity(rsps: responses.RequestsMock, user: dict[str, Any] | None = None) -> None:
    """Who the token is: a person's token gets its user, an installation token a 403 (it is the app's bot)."""
    if user is None:
        rsps.get(f"{API}:443/user", json=NOT_FOR_INTEGRATIONS, status=403)
    else:
        rsps.get(f"{API}:443/user", json=example("get", "/user", **user))


def mock_check_run_start(
    rsps: responses.RequestsMock, existing: list[dict[str, Any]] | None = None, create: bool = False
) -> None:
    listing = example("get", "/repos/{owner}/{repo}/commits/{ref}/check-runs")
    listing.update(total_count=len(existing or []), check_runs=existing or [])
    rsps.get(WIRE + CHECKS, json=listing)
    if create or not existing:
        rsps.post(WIRE + "/check-runs", json=check_run(), status=201)


def mock_labels(rsps: responses.RequestsMock, exist: bool) -> None:
    for name in ("promote", "rollback"):
        if exist:
            rsps.get(f"{WIRE}/labels/{name}", json=label(name))
        else:
            rsps.get(f"{WIRE}/labels/{name}", json=NOT_FOUND, status=404)
            rsps.post(f"{WIRE}/labels", json=label(name), status=201)


# -- the scenarios ---------------------------------------------------------------------------------------


def test_first_run_on_a_pr(gh: responses.RequestsMock, settings: Settings) -> None:
    intent = parse_event("pull_request", event("pull_request.opened"), ENV)
    mock_check_run_start(gh)
    mock_labels(gh, exist=False)
    gh.get(f"{WIRE}/deployments?environment=pr-2&per_page=100", json=[])
    gh.post(f"{WIRE}/deployments", json=deployment(7, "pr-2"), status=201)
    gh.post(f"{WIRE}/deployments/7/statuses", json=status("in_progress", 7), status=201)
    mock_identity(gh)
    gh.get(f"{WIRE}/issues/2/comments?per_page=100", json=[])
    gh.post(f"{WIRE}/issues/2/comments", json=comment(11, MARKER), status=201)
    gh.patch(f"{WIRE}/check-runs/4", json=check_run("completed"))
    gh.post(f"{WIRE}/deployments/7/statuses", json=status("success", 7), status=201)

    code, report = run(intent, FakeCore(PREVIEW), client(), settings)

    assert code == 0 and report.status == "success"
    info = RunInfo(run_url=RUN_URL, sha=SHA, event="pull_request", actor="Codertocat")
    calls = made(gh)
    body = compose_comment(PREVIEW, info)
    assert calls[:3] == [
        *START_CHECK_RUN,
        ("GET", "/labels/promote", None),
    ]
    assert calls[3:7] == [
        (
            "POST",
            "/labels",
            {
                "name": "promote",
                "color": "0e8a16",
                "description": "Squals: promote this PR's island to prod (blue/green)",
            },
        ),
        ("GET", "/labels/rollback", None),
        (
            "POST",
            "/labels",
            {
                "name": "rollback",
                "color": "b60205",
                "description": "Squals: roll prod back to the previous release",
            },
        ),
        ("GET", "/deployments?environment=pr-2&per_page=100", None),
    ]
    assert calls[7:9] == [
        (
            "POST",
            "/deployments",
            {
                "ref": SHA,
                "auto_merge": False,
                "required_contexts": [],
                "environment": "pr-2",
                "description": "squals preview of PR #2",
                "transient_environment": True,
                "production_environment": False,
            },
        ),
        (
            "POST",
            "/deployments/7/statuses",
            {"state": "in_progress", "description": "squals preview in progress", "log_url": RUN_URL},
        ),
    ]
    assert calls[9:12] == [
        WHO,
        ("GET", "/issues/2/comments?per_page=100", None),
        ("POST", "/issues/2/comments", {"body": body}),
    ]
    patch = calls[12]
    assert patch[:2] == ("PATCH", "/check-runs/4")
    assert patch[2]["conclusion"] == "success"
    assert patch[2]["output"]["title"] == "preview: success"
    assert patch[2]["output"]["annotations"] == [
        {
            "path": "squals.yml",
            "start_line": 7,
            "end_line": 7,
            "annotation_level": "warning",
            "message": "hook is slow",
            "start_column": 3,
            "end_column": 3,
        }
    ]
    assert set(patch[2]) == {"output", "conclusion"}
    assert calls[13] == (
        "POST",
        "/deployments/7/statuses",
        {
            "state": "success",
            "description": "PR #2 deployed",
            "environment_url": "http://127.0.0.1:8102/",
            "log_url": RUN_URL,
        },
    )
    assert len(calls) == 14
    # The comment: marker first, the table, the island's URL, the run link; under the limit.
    assert body.startswith(MARKER + "\n")
    assert "| Gate test · unit | ✅ passed | 3.5 s |" in body
    assert "[<code>http://127.0.0.1:8102/</code>](http://127.0.0.1:8102/)" in body
    assert f"[workflow run]({RUN_URL})" in body
    outputs = Path(settings.output_path or "").read_text()
    assert "status<<" in outputs and "\nsuccess\n" in outputs and "\nhttp://127.0.0.1:8102/\n" in outputs
    assert "| Gate test · unit |" in Path(settings.summary_path or "").read_text()


def test_second_run_edits_the_comment_and_reuses_what_exists(
    gh: responses.RequestsMock, settings: Settings
) -> None:
    intent = parse_event("pull_request", event("pull_request.synchronize"), ENV)
    info = RunInfo(run_url=RUN_URL, sha=SHA, event="pull_request", actor="Codertocat")
    first = compose_comment(PREVIEW, info)
    # The previous run's check run is done; this run (42, attempt 1) makes its own.
    mock_check_run_start(gh, existing=[check_run("completed", "squals:41:1", 3)], create=True)
    mock_labels(gh, exist=True)
    gh.get(f"{WIRE}/deployments?environment=pr-2&per_page=100", json=[deployment(7, "pr-2")])
    gh.post(f"{WIRE}/deployments/7/statuses", json=status("in_progress", 7), status=201)
    someone = comment(10, MARKER + " quoted by a person", {"login": "mallory", "type": "User"})
    ours = comment(11, first, BOT)
    mock_identity(gh)
    gh.get(f"{WIRE}/issues/2/comments?per_page=100", json=[someone, ours])
    gh.patch(f"{WIRE}/issues/comments/11", json=ours)
    gh.patch(f"{WIRE}/check-runs/4", json=check_run("completed"))
    gh.post(f"{WIRE}/deployments/7/statuses", json=status("success", 7), status=201)

    second = Report(
        intent="preview",
        status="failure",
        headline="gate unit failed",
        environment="pr-2",
        gates=(Step("unit", "failure", 4.0, detail="AssertionError: 1 != 2", kind="test"),),
    )
    code, _ = run(intent, FakeCore(second), client(), settings)

    assert code == 1
    calls = made(gh)
    edit = calls[8]
    assert [c[:2] for c in calls] == [  # no second comment, deployment or label: each was found
        ("GET", CHECKS),
        ("POST", "/check-runs"),
        ("GET", "/labels/promote"),
        ("GET", "/labels/rollback"),
        ("GET", "/deployments?environment=pr-2&per_page=100"),
        ("POST", "/deployments/7/statuses"),
        ("GET", "/user"),  # who writes with this token: only its comment is ours
        ("GET", "/issues/2/comments?per_page=100"),
        ("PATCH", "/issues/comments/11"),  # ours (a Bot's), not mallory's quote of the marker
        ("PATCH", "/check-runs/4"),
        ("POST", "/deployments/7/statuses"),
    ]
    assert edit[2] == {"body": compose_comment(second, info, first)}
    assert "❌ failed" in edit[2]["body"] and "AssertionError: 1 != 2" in edit[2]["body"]
    assert "| Validation | ✅ passed |" in edit[2]["body"]  # kept from the first run's hidden data
    assert calls[-1] == (
        "POST",
        "/deployments/7/statuses",
        {"state": "failure", "description": "gate unit failed", "log_url": RUN_URL},
    )


def permission(role: str, permission_: str) -> dict[str, Any]:
    return example(
        "get",
        "/repos/{owner}/{repo}/collaborators/{username}/permission",
        permission=permission_,
        role_name=role,
    )


def forged(login: str, kind: str = "User") -> dict[str, Any]:
    """A comment that looks like squals' own: the marker, and hidden data claiming a passed gate."""
    import base64

    gate = {
        "name": "FORGED-security-gate",
        "status": "success",
        "duration": 1.0,
        "detail": "",
        "kind": "security",
        "url": None,
    }
    data = json.dumps(
        {"intent": "preview", "status": "success", "headline": "ok", "sha": SHA, "gates": [gate]}
    )
    body = f"{MARKER}\n<!-- squals:data {base64.b64encode(data.encode()).decode()} -->\n"
    return comment(30, body, {"login": login, "type": kind})


def test_a_comment_holding_the_marker_by_another_author_is_never_taken(
    gh: responses.RequestsMock, settings: Settings
) -> None:
    """Finding 8: a user's (or another app's) comment with the marker is not "the" Squals comment: it is not
    edited, its hidden data is not merged, and the bot's own refusal shows no forged gate."""
    intent = parse_event("pull_request_target", event("pull_request_target.labeled-promote-by-readonly"), ENV)
    gh.get(f"{WIRE}/collaborators/octocat/permission", json=permission("read", "read"))
    mock_identity(gh)
    gh.get(
        f"{WIRE}/issues/2/comments?per_page=100", json=[forged("mallory"), forged("other-app[bot]", "Bot")]
    )
    gh.post(f"{WIRE}/issues/2/comments", json=comment(31, MARKER, BOT), status=201)
    gh.delete(f"{WIRE}/issues/2/labels/promote", json=[])

    code, report = run(intent, FakeCore(PREVIEW), client(), settings)

    assert code == 0 and report.status == "refused"
    calls = made(gh)
    assert [c[:2] for c in calls] == [
        ("GET", "/collaborators/octocat/permission"),
        ("GET", "/user"),
        ("GET", "/issues/2/comments?per_page=100"),
        ("POST", "/issues/2/comments"),  # a comment of its own: neither of the others is edited
        ("DELETE", "/issues/2/labels/promote"),
    ]
    assert "FORGED" not in calls[3][2]["body"] and "refused" in calls[3][2]["body"]


def test_a_persons_token_finds_the_comment_that_person_wrote(gh: responses.RequestsMock) -> None:
    """With a personal token ``GET /user`` names the author to look for; the Actions bot's comment is not
    it."""
    mock_identity(gh, {"login": "octocat"})
    url = f"{WIRE}/issues/2/comments"
    gh.get(
        url + "?per_page=100",
        json=[
            comment(40, MARKER + "\nbot", BOT),
            comment(41, MARKER + "\nmine", {"login": "Octocat", "type": "User"}),
        ],
    )
    gh.patch(f"{WIRE}/issues/comments/41", json=comment(41, MARKER + "\nnew", {"login": "octocat"}))
    api = client()
    assert api.upsert_comment(2, MARKER, lambda old: MARKER + "\nnew") == 41
    assert [c[:2] for c in made(gh)] == [
        ("GET", "/user"),
        ("GET", url.removeprefix(WIRE) + "?per_page=100"),
        ("PATCH", "/issues/comments/41"),
    ]


def test_an_installation_token_is_known_by_its_prefix(gh: responses.RequestsMock) -> None:
    """``ghs_`` is GitHub's prefix of installation tokens (the workflow's GITHUB_TOKEN): no GET /user."""
    gh.get(f"{WIRE}/issues/2/comments?per_page=100", json=[comment(50, MARKER, BOT)])
    assert client(token="ghs_installation").upsert_comment(2, MARKER, lambda old: MARKER) == 50
    assert made(gh) == [("GET", "/issues/2/comments?per_page=100", None)]


def test_an_apps_installation_token_names_its_bot() -> None:
    config = ClientConfig.from_env("t", REPO, {"SQUALS_GITHUB_APP_LOGIN": " shipper[bot] "})
    assert config.app_login == "shipper[bot]"
    assert ClientConfig.from_env("t", REPO, {}).app_login == "github-actions[bot]"


def test_promote_by_a_maintainer(gh: responses.RequestsMock, settings: Settings) -> None:
    intent = parse_event("pull_request", event("pull_request.labeled-promote"), ENV)
    gh.get(f"{WIRE}/collaborators/Codertocat/permission", json=permission("maintain", "write"))
    mock_check_run_start(gh)
    gh.get(f"{WIRE}/deployments?environment=prod&per_page=100", json=[])
    gh.post(f"{WIRE}/deployments", json=deployment(8, "prod"), status=201)
    gh.post(f"{WIRE}/deployments/8/statuses", json=status("in_progress", 8), status=201)
    mock_identity(gh)
    gh.get(f"{WIRE}/issues/2/comments?per_page=100", json=[comment(11, MARKER + "\nold", BOT)])
    gh.patch(f"{WIRE}/issues/comments/11", json=comment(11, "x", BOT))
    gh.patch(f"{WIRE}/check-runs/4", json=check_run("completed"))
    gh.post(f"{WIRE}/deployments/8/statuses", json=status("success", 8), status=201)
    gh.delete(f"{WIRE}/issues/2/labels/promote", json=[])
    promoted = Report(
        intent="promote",
        status="success",
        headline="PR #2 is live",
        environment="prod",
        url="http://127.0.0.1:8100/",
        rollout="BLUE at 10% for 15m, KPIs held; promoted",
    )
    core = FakeCore(promoted)

    code, _ = run(intent, core, client(), settings)

    assert code == 0 and [v for v, _ in core.asked] == ["promote"]
    info = RunInfo(run_url=RUN_URL, sha=SHA, event="pull_request", actor="Codertocat")
    body = compose_comment(promoted, info, MARKER + "\nold")
    calls = made(gh)
    finish = calls[9]
    assert calls[:9] == [
        ("GET", "/collaborators/Codertocat/permission", None),
        *START_CHECK_RUN,
        ("GET", "/deployments?environment=prod&per_page=100", None),
        (
            "POST",
            "/deployments",
            {
                "ref": SHA,
                "auto_merge": False,
                "required_contexts": [],
                "environment": "prod",
                "description": "squals promote of PR #2",
                "transient_environment": False,
                "production_environment": True,
            },
        ),
        (
            "POST",
            "/deployments/8/statuses",
            {"state": "in_progress", "description": "squals promote in progress", "log_url": RUN_URL},
        ),
        WHO,
        ("GET", "/issues/2/comments?per_page=100", None),
        ("PATCH", "/issues/comments/11", {"body": body}),
    ]
    assert finish[:2] == ("PATCH", "/check-runs/4")
    assert finish[2]["conclusion"] == "success" and finish[2]["output"]["title"] == "promote: success"
    assert calls[10:] == [
        (
            "POST",
            "/deployments/8/statuses",
            {
                "state": "success",
                "description": "PR #2 is live",
                "environment_url": "http://127.0.0.1:8100/",
                "log_url": RUN_URL,
            },
        ),
        ("DELETE", "/issues/2/labels/promote", None),
    ]
    assert "| Rollout | BLUE at 10% for 15m, KPIs held; promoted |" in body


def test_promote_by_a_read_only_user_is_refused(gh: responses.RequestsMock, settings: Settings) -> None:
    intent = parse_event("pull_request_target", event("pull_request_target.labeled-promote-by-readonly"), ENV)
    gh.get(f"{WIRE}/collaborators/octocat/permission", json=permission("read", "read"))
    mock_identity(gh)
    gh.get(f"{WIRE}/issues/2/comments?per_page=100", json=[])
    gh.post(f"{WIRE}/issues/2/comments", json=comment(12, MARKER, BOT), status=201)
    gh.delete(f"{WIRE}/issues/2/labels/promote", json=[])
    core = FakeCore(PREVIEW)

    code, report = run(intent, core, client(), settings)

    assert code == 0 and report.status == "refused" and core.asked == []
    calls = made(gh)
    info = RunInfo(run_url=RUN_URL, sha=SHA, event="pull_request_target", actor="octocat")
    body = compose_comment(report, info)
    assert calls == [
        ("GET", "/collaborators/octocat/permission", None),
        WHO,
        ("GET", "/issues/2/comments?per_page=100", None),
        ("POST", "/issues/2/comments", {"body": body}),
        ("DELETE", "/issues/2/labels/promote", None),
    ]
    assert "refused" in body and "octocat has read" in body and "Nothing was changed" in body


def test_rollback(gh: responses.RequestsMock, settings: Settings) -> None:
    intent = parse_event("pull_request", event("pull_request.labeled-rollback"), ENV)
    gh.get(f"{WIRE}/collaborators/Codertocat/permission", json=permission("admin", "admin"))
    mock_check_run_start(gh)
    gh.get(f"{WIRE}/deployments?environment=prod&per_page=100", json=[])
    gh.post(f"{WIRE}/deployments", json=deployment(9, "prod", "abc123"), status=201)
    mock_identity(gh)
    gh.get(f"{WIRE}/issues/2/comments?per_page=100", json=[])
    gh.post(f"{WIRE}/issues/2/comments", json=comment(13, MARKER, BOT), status=201)
    gh.patch(f"{WIRE}/check-runs/4", json=check_run("completed"))
    gh.post(f"{WIRE}/deployments/9/statuses", json=status("success", 9), status=201)
    gh.delete(f"{WIRE}/issues/2/labels/rollback", json=[])
    rolled = Report(
        intent="rollback",
        status="success",
        headline="prod rolled back to pr-1",
        environment="prod",
        url="http://127.0.0.1:8100/",
        outputs={"commit": "abc123"},
    )

    code, _ = run(intent, FakeCore(rolled), client(), settings)

    assert code == 0
    info = RunInfo(run_url=RUN_URL, sha=SHA, event="pull_request", actor="Codertocat")
    calls = made(gh)
    assert calls[:6] == [
        ("GET", "/collaborators/Codertocat/permission", None),
        *START_CHECK_RUN,
        WHO,
        ("GET", "/issues/2/comments?per_page=100", None),
        ("POST", "/issues/2/comments", {"body": compose_comment(rolled, info)}),
    ]
    assert calls[6][:2] == ("PATCH", "/check-runs/4") and calls[6][2]["conclusion"] == "success"
    assert calls[7:] == [
        ("GET", "/deployments?environment=prod&per_page=100", None),
        (
            "POST",
            "/deployments",
            {
                "ref": "abc123",
                "auto_merge": False,
                "required_contexts": [],
                "environment": "prod",
                "description": "squals rollback of PR #2",
                "transient_environment": False,
                "production_environment": True,
            },
        ),
        (
            "POST",
            "/deployments/9/statuses",
            {
                "state": "success",
                "description": "prod rolled back to pr-1",
                "environment_url": "http://127.0.0.1:8100/",
                "log_url": RUN_URL,
            },
        ),
        ("DELETE", "/issues/2/labels/rollback", None),
    ]


def test_pr_closed_tears_down(gh: responses.RequestsMock, settings: Settings) -> None:
    intent = parse_event("pull_request", event("pull_request.closed"), ENV)
    mock_identity(gh)
    gh.get(f"{WIRE}/issues/2/comments?per_page=100", json=[comment(11, MARKER + "\nold", BOT)])
    gh.patch(f"{WIRE}/issues/comments/11", json=comment(11, "x", BOT))
    listing = example("get", "/repos/{owner}/{repo}/deployments")
    listing[0].update(id=7, url=f"{BASE}/deployments/7", statuses_url=f"{BASE}/deployments/7/statuses")
    gh.get(f"{WIRE}/deployments?environment=pr-2&per_page=100", json=listing)
    gh.get(
        f"{WIRE}/deployments/7/statuses?per_page=100",
        json=example("get", "/repos/{owner}/{repo}/deployments/{deployment_id}/statuses"),
    )
    gh.post(f"{WIRE}/deployments/7/statuses", json=status("inactive", 7), status=201)
    gone = Report(
        intent="teardown", status="success", headline="pr-2 torn down, locks released", environment="pr-2"
    )

    code, _ = run(intent, FakeCore(gone), client(), settings)

    assert code == 0
    info = RunInfo(run_url=RUN_URL, sha=SHA, event="pull_request", actor="Codertocat")
    assert made(gh) == [
        WHO,
        ("GET", "/issues/2/comments?per_page=100", None),
        ("PATCH", "/issues/comments/11", {"body": compose_comment(gone, info, MARKER + "\nold")}),
        ("GET", "/deployments?environment=pr-2&per_page=100", None),
        ("GET", "/deployments/7/statuses?per_page=100", None),
        (
            "POST",
            "/deployments/7/statuses",
            {"state": "inactive", "description": "PR #2 closed", "log_url": RUN_URL},
        ),
    ]


def test_a_502_then_success_creates_one_comment(gh: responses.RequestsMock, settings: Settings) -> None:
    api = client()
    url = f"{WIRE}/issues/2/comments"
    mock_identity(gh)
    gh.get(url + "?per_page=100", json={"message": "Server Error"}, status=502)  # GET: retried by GithubRetry
    gh.get(url + "?per_page=100", json=[])
    gh.post(url, json={"message": "Server Error"}, status=502)  # POST: looked up again before a new try
    gh.get(url + "?per_page=100", json=[])
    gh.post(url, json=comment(14, MARKER + "\nhello", BOT), status=201)

    assert api.upsert_comment(2, MARKER, lambda old: MARKER + "\nhello") == 14
    assert made(gh) == [
        WHO,
        ("GET", "/issues/2/comments?per_page=100", None),
        ("GET", "/issues/2/comments?per_page=100", None),
        ("POST", "/issues/2/comments", {"body": MARKER + "\nhello"}),
        ("GET", "/issues/2/comments?per_page=100", None),
        ("POST", "/issues/2/comments", {"body": MARKER + "\nhello"}),
    ]


def test_a_502_on_create_that_did_create_is_not_duplicated(gh: responses.RequestsMock) -> None:
    url = f"{WIRE}/deployments"
    gh.get(url + "?environment=pr-2&per_page=100", json=[])
    gh.post(url, json={"message": "Bad Gateway"}, status=502)  # ... but GitHub did create it
    gh.get(url + "?environment=pr-2&per_page=100", json=[deployment(7, "pr-2")])

    dep = client().deployment("pr-2", SHA, transient=True, production=False, description="d")
    assert dep == 7
    assert [c[:2] for c in made(gh)] == [
        ("GET", "/deployments?environment=pr-2&per_page=100"),
        ("POST", "/deployments"),
        ("GET", "/deployments?environment=pr-2&per_page=100"),
    ]


def test_secondary_rate_limit_with_retry_after(gh: responses.RequestsMock) -> None:
    url = f"{WIRE}/issues/2/comments"
    mock_identity(gh)
    limited = {
        "message": "You have exceeded a secondary rate limit. Please wait a few minutes and try again.",
        "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api",
    }
    gh.get(url + "?per_page=100", json=[])
    gh.post(url, json=limited, status=403, headers={"Retry-After": "1"})
    gh.post(url, json=comment(15, MARKER, BOT), status=201)
    gh.get(url + "?per_page=100", json=limited, status=403, headers={"Retry-After": "1"})
    gh.get(url + "?per_page=100", json=[comment(15, MARKER, BOT)])

    api = client()
    assert api.upsert_comment(2, MARKER, lambda old: MARKER) == 15
    assert api.upsert_comment(2, MARKER, lambda old: MARKER) == 15  # same body: no edit at all
    assert made(gh) == [
        WHO,
        ("GET", "/issues/2/comments?per_page=100", None),
        ("POST", "/issues/2/comments", {"body": MARKER}),
        ("POST", "/issues/2/comments", {"body": MARKER}),
        ("GET", "/issues/2/comments?per_page=100", None),
        ("GET", "/issues/2/comments?per_page=100", None),
    ]


def test_annotations_go_in_batches_of_50(gh: responses.RequestsMock) -> None:
    for _ in range(3):
        gh.patch(f"{WIRE}/check-runs/4", json=check_run("completed"))
    problems = [Problem(f"p{i}", file="squals.yml", line=i + 1) for i in range(120)]
    client().finish_check_run(4, "failure", "t", "s", problems)
    calls = made(gh)
    assert [len(c[2]["output"]["annotations"]) for c in calls] == [50, 50, 20]
    assert ["conclusion" in c[2] for c in calls] == [False, False, True]
    assert calls[2][2]["output"]["annotations"][-1]["message"] == "p119"


def test_ghes_base_url(gh: responses.RequestsMock) -> None:
    ghes = "https://ghe.example.com:443/api/v3/repos/" + REPO
    gh.get(ghes + "/collaborators/Codertocat/permission", json=permission("write", "write"))
    api = client(api_url="https://ghe.example.com/api/v3")
    assert api.permission("Codertocat") == "write"
    assert gh.calls[0].request.headers["Authorization"] == "token gh-test-token"


def test_every_call_the_action_can_make_is_documented() -> None:
    """The excerpt itself: each operation the client uses is there with the parameters we send."""
    from tests.support.github import find_operation

    for method, path in [
        ("GET", "/repos/o/r/collaborators/u/permission"),
        ("GET", "/repos/o/r/issues/1/comments"),
        ("POST", "/repos/o/r/issues/1/comments"),
        ("PATCH", "/repos/o/r/issues/comments/1"),
        ("GET", "/repos/o/r/labels/promote"),
        ("POST", "/repos/o/r/labels"),
        ("DELETE", "/repos/o/r/issues/1/labels/promote"),
        ("POST", "/repos/o/r/check-runs"),
        ("PATCH", "/repos/o/r/check-runs/1"),
        ("GET", "/repos/o/r/commits/abc/check-runs"),
        ("GET", "/repos/o/r/deployments"),
        ("POST", "/repos/o/r/deployments"),
        ("GET", "/repos/o/r/deployments/1/statuses"),
        ("POST", "/repos/o/r/deployments/1/statuses"),
        ("GET", "/repos/o/r/pulls/1"),
    ]:
        find_operation(method, path)


def test_retry_after_is_honoured_but_capped() -> None:
    from urllib3 import HTTPResponse

    from squals_action.github.client import make_retry

    config = ClientConfig(token="t", repository=REPO, max_retry_after=0.01)
    retry = make_retry(config)
    assert retry.get_retry_after(HTTPResponse(status=403, headers={"Retry-After": "100"})) == 0.01
    again = retry.new(total=2)
    assert again.max_retry_after == 0.01 and again.secondary_rate_wait == config.secondary_rate_wait
    assert retry.is_retry("POST", 403, has_retry_after=True)
    assert not retry.is_retry("POST", 502)
    assert retry.is_retry("GET", 502) and retry.is_retry("PATCH", 503)


def test_a_retried_check_run_create_finds_the_one_it_made(gh: responses.RequestsMock) -> None:
    listing = example("get", "/repos/{owner}/{repo}/commits/{ref}/check-runs")
    listing.update(total_count=0, check_runs=[])
    gh.get(WIRE + CHECKS, json=listing)
    gh.post(WIRE + "/check-runs", json={"message": "Server Error"}, status=500)
    gh.get(WIRE + CHECKS, json=dict(listing, total_count=1, check_runs=[check_run()]))
    assert client().start_check_run(SHA, "squals", "squals:42:1", RUN_URL) == 4
    assert [c[:2] for c in made(gh)] == [("GET", CHECKS), ("POST", "/check-runs"), ("GET", CHECKS)]


def test_a_403_that_is_not_a_rate_limit_is_one_clear_error(gh: responses.RequestsMock) -> None:
    from squals_action.github.interface import GitHubError

    url = f"{WIRE}/issues/2/comments"
    mock_identity(gh)
    gh.get(url + "?per_page=100", json=[])
    gh.post(url, json={"message": "Resource not accessible by integration"}, status=403)
    with pytest.raises(GitHubError) as info:
        client().upsert_comment(2, MARKER, lambda old: MARKER)
    assert info.value.one_line() == (
        "GitHub API: create comment on #2: HTTP 403: Resource not accessible by integration"
    )
    assert len(gh.calls) == 3  # who am I, look up, create: not retried
