"""The runner and the entry point with fakes: locks, forks, refusals, inputs, the no-op path."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from squals_action.gates.checks import CheckState
from squals_action.github.events import parse_event
from squals_action.github.interface import Conclusion, DeploymentState, GitHubError, PullInfo, Request
from squals_action.github.runner import Settings, run, settings_from_env
from squals_action.report.model import Problem, Report, Step
from tests.support.github import EVENTS, event

ENV = {"GITHUB_REPOSITORY": "Codertocat/Hello-World"}


class FakeApi:
    """Records every call; one sticky comment per PR, edited in place."""

    def __init__(self, role: str = "write", fork: bool = False) -> None:
        self.role = role
        self.fork = fork
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.comments: dict[int, list[str]] = {}

    def permission(self, user: str) -> str:
        self.calls.append(("permission", (user,)))
        return self.role

    def pull(self, number: int) -> PullInfo:
        self.calls.append(("pull", (number,)))
        return PullInfo(number, "f" * 40, "feature", "open", self.fork, "title")

    def upsert_comment(self, number: int, marker: str, render: Callable[[str | None], str]) -> int:
        bodies = self.comments.setdefault(number, [])
        old = bodies[0] if bodies else None
        body = render(old)
        if bodies:
            bodies[0] = body
        else:
            bodies.append(body)
        self.calls.append(("comment", (number,)))
        return 1

    def ensure_label(self, name: str, color: str, description: str) -> None:
        self.calls.append(("ensure_label", (name,)))

    def remove_label(self, number: int, name: str) -> None:
        self.calls.append(("remove_label", (number, name)))

    def start_check_run(self, head_sha: str, name: str, external_id: str, details_url: str | None) -> int:
        self.calls.append(("start_check_run", (head_sha, name, external_id)))
        return 5

    def finish_check_run(
        self, check_run_id: int, conclusion: Conclusion, title: str, summary: str, problems: Sequence[Problem]
    ) -> None:
        self.calls.append(("finish_check_run", (check_run_id, conclusion)))

    def deployment(
        self, environment: str, ref: str, *, transient: bool, production: bool, description: str
    ) -> int:
        self.calls.append(("deployment", (environment, ref)))
        return 9

    def deployment_status(
        self,
        deployment_id: int,
        state: DeploymentState,
        *,
        environment_url: str | None,
        log_url: str | None,
        description: str,
    ) -> None:
        self.calls.append(("deployment_status", (deployment_id, state)))

    def deactivate(self, environment: str, log_url: str | None, description: str) -> int:
        self.calls.append(("deactivate", (environment,)))
        return 1

    def commit_checks(self, sha: str) -> list[CheckState]:
        self.calls.append(("commit_checks", (sha,)))
        return []

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]


class Core:
    def __init__(self, report: Report | Exception) -> None:
        self.report = report
        self.requests: list[Request] = []

    def _answer(self, request: Request) -> Report:
        self.requests.append(request)
        if isinstance(self.report, Exception):
            raise self.report
        return self.report

    preview = promote = rollback = teardown = experiment_start = experiment_tick = _answer


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        workspace=tmp_path,
        run_url="https://github.com/o/r/actions/runs/7",
        run_id="7",
        output_path=str(tmp_path / "out"),
        summary_path=str(tmp_path / "summary"),
    )


LOCKED = Report(
    intent="promote",
    status="locked",
    headline="promote waits: prod is locked by PR #7",
    lock_holder="PR #7",
    environment="prod",
)


def test_lock_contention_comments_once_and_exits_cleanly(settings: Settings) -> None:
    api = FakeApi()
    intent = parse_event("pull_request", event("pull_request.labeled-promote"), ENV)
    for _ in range(3):  # three retries of the losing run
        code, report = run(intent, Core(LOCKED), api, settings)
        assert code == 0 and report.status == "locked"
    [body] = api.comments[2]
    assert "locked by PR \\#7" in body
    assert api.names().count("comment") == 3  # the same comment edited, never a second one
    assert ("finish_check_run", (5, "neutral")) in api.calls
    assert "deployment" not in api.names()  # the promotion never began: no prod deployment, not even failed
    assert "deployment_status" not in api.names()


class StartingCore(Core):
    """A core that begins the promotion (as the pipeline does once the island passed its checks)."""

    def _answer(self, request: Request) -> Report:
        assert request.on_start is not None
        request.on_start()
        request.on_start()  # a second call opens nothing more
        return super()._answer(request)

    promote = _answer


def test_prod_deployment_opens_only_when_the_promotion_begins(settings: Settings) -> None:
    intent = parse_event("pull_request", event("pull_request.labeled-promote"), ENV)
    refused = Report(
        intent="promote",
        status="failure",
        environment="prod",
        headline="promote failed: pr-2 has no island to promote",
    )
    api = FakeApi()
    code, _ = run(intent, Core(refused), api, settings)
    assert code == 1
    assert "deployment" not in api.names() and "deployment_status" not in api.names()
    assert ("finish_check_run", (5, "failure")) in api.calls and "no island" in api.comments[2][0]

    api = FakeApi()
    code, _ = run(intent, StartingCore(replace(refused, headline="the bake failed")), api, settings)
    assert code == 1
    deployments = [c for c in api.calls if c[0].startswith("deployment")]
    assert deployments == [
        ("deployment", ("prod", intent.head_sha)),
        ("deployment_status", (9, "in_progress")),
        ("deployment_status", (9, "failure")),
    ]


def test_preview_opens_its_deployment_before_the_work(settings: Settings) -> None:
    intent = parse_event("pull_request", event("pull_request.opened"), ENV)
    core = Core(Report(intent="preview", status="success", headline="up", environment="pr-2"))
    api = FakeApi()
    run(intent, core, api, settings)
    [request] = core.requests
    assert request.on_start is None
    assert api.names().index("deployment") < api.names().index("comment")
    assert ("deployment_status", (9, "success")) in api.calls


def test_fork_pr_without_api_writes_nothing_but_reports(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    intent = parse_event("pull_request", event("pull_request.opened-fork"), ENV)
    report = Report(
        intent="preview",
        status="failure",
        headline="squals file invalid",
        problems=(Problem("bad key", file="squals.yml", line=3, col=5),),
    )
    code, _ = run(intent, Core(report), None, settings)
    assert code == 1
    out = capsys.readouterr().out
    assert "::error file=squals.yml,line=3,col=5::bad key" in out
    assert "squals file invalid" in Path(settings.summary_path or "").read_text()


def test_refused_when_no_api_to_check_permission(settings: Settings) -> None:
    intent = parse_event("pull_request", event("pull_request.labeled-promote"), ENV)
    core = Core(LOCKED)
    code, report = run(intent, core, None, settings)
    assert report.status == "refused" and core.requests == [] and code == 0


@pytest.mark.parametrize("role", ["admin", "maintain", "write"])
def test_write_roles_may_act(settings: Settings, role: str) -> None:
    api = FakeApi(role)
    intent = parse_event("pull_request", event("pull_request.labeled-rollback"), ENV)
    ok = Report(intent="rollback", status="success", headline="rolled back", outputs={"commit": "c" * 40})
    code, _ = run(intent, Core(ok), api, settings)
    assert code == 0
    assert api.names()[0] == "permission"
    assert ("deployment", ("prod", "c" * 40)) in api.calls
    assert api.calls[-1] == ("remove_label", (2, "rollback"))


@pytest.mark.parametrize("role", ["triage", "read", "none"])
def test_other_roles_are_refused(settings: Settings, role: str) -> None:
    api = FakeApi(role)
    intent = parse_event("issue_comment", event("issue_comment.created-promote"), ENV)
    core = Core(LOCKED)
    _, report = run(intent, core, api, settings)
    assert report.status == "refused" and core.requests == []
    assert "check_run" not in " ".join(api.names()) and "deployment" not in api.names()
    assert f"has {role}" in api.comments[1][0]


def test_comment_command_looks_up_the_pr_head(settings: Settings) -> None:
    api = FakeApi("admin")
    intent = parse_event("issue_comment", event("issue_comment.created-promote"), ENV)
    core = Core(Report(intent="promote", status="success", headline="live"))
    run(intent, core, api, settings)
    assert api.calls[0] == ("pull", (1,))
    assert core.requests[0].head_sha == "f" * 40
    assert ("start_check_run", ("f" * 40, "squals", "squals:7:1")) in api.calls
    assert "remove_label" not in api.names()  # a comment command has no label to remove


def test_core_error_becomes_a_failure_report(settings: Settings) -> None:
    from squals_action.errors import SqualsError

    api = FakeApi()
    intent = parse_event("pull_request", event("pull_request.opened"), ENV)
    code, report = run(intent, Core(SqualsError("provider: port in use")), api, settings)
    assert code == 1 and "port in use" in report.headline
    assert ("finish_check_run", (5, "failure")) in api.calls
    assert ("deployment_status", (9, "failure")) in api.calls


def test_untrusted_title_and_branch_are_escaped(settings: Settings) -> None:
    api = FakeApi()
    payload = event("pull_request.opened")
    payload["pull_request"]["title"] = "<img src=x onerror=alert(1)> @everyone"
    intent = parse_event("pull_request", payload, ENV)
    evil = Report(
        intent="preview",
        status="failure",
        headline="gate `$(rm -rf /)` <b>x</b> @admins failed",
        gates=(Step("u|nit", "failure", 1.0, detail="```\n</details><script>x</script>"),),
    )
    run(intent, Core(evil), api, settings)
    body = api.comments[2][0]
    # Outside fenced code blocks (where GitHub shows everything verbatim) nothing is live markup.
    outside = re.sub(r"(?ms)^(`{3,})[^\n]*\n.*?^\1$", "", body)
    assert "<b>" not in outside and "<script>" not in outside and "@admins" not in outside
    assert outside.count("<details>") == outside.count("</details>") == 1
    assert "```\n</details><script>x</script>" in body  # the log tail is kept, inside a longer fence
    assert "````" in body


def test_inputs_arrive_as_docker_environment_variables(tmp_path: Path) -> None:
    s = settings_from_env(
        {
            "INPUT_SQUALS-FILES": "squals.yml\nsquals/a.yml, squals/b.yml\n",
            "INPUT_STATE-BRANCH": "ops/state",
            "INPUT_PROVIDER": "local",
            "GITHUB_WORKSPACE": str(tmp_path),
            "GITHUB_SERVER_URL": "https://ghe.example.com",
            "GITHUB_REPOSITORY": "o/r",
            "GITHUB_RUN_ID": "99",
            "GITHUB_RUN_ATTEMPT": "2",
        }
    )
    assert s.squals_files == ("squals.yml", "squals/a.yml", "squals/b.yml")
    assert (s.state_branch, s.provider, s.workspace) == ("ops/state", "local", tmp_path.resolve())
    assert s.run_url == "https://ghe.example.com/o/r/actions/runs/99/attempts/2"
    default = settings_from_env({"INPUT_STATE-BRANCH": "", "INPUT_PROVIDER": ""})
    assert (default.state_branch, default.provider, default.squals_files) == ("squals/state", None, ())


HEAVY = ("github", "git", "boto3", "scipy", "aiohttp", "numpy", "yaml", "jsonschema", "requests")


def test_noop_event_ends_quickly_without_heavy_imports(tmp_path: Path) -> None:
    out = tmp_path / "out"
    code = (
        "import sys, os\n"
        "from squals_action.action import main\n"
        "rc = main()\n"
        f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
        "sys.exit(rc)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "INPUT_"))}
    env.update(
        {
            "GITHUB_EVENT_NAME": "pull_request",
            "GITHUB_EVENT_PATH": str(EVENTS / "pull_request.labeled-other.json"),
            "GITHUB_OUTPUT": str(out),
            "INPUT_GITHUB-TOKEN": "ghs_secret",
        }
    )
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "squals: nothing to do: labeled 'bug' on PR #2: not a squals label" in done.stdout
    assert "HEAVY []" in done.stdout
    assert "::add-mask::ghs_secret" in done.stdout
    assert "nothing" in out.read_text()


def test_broken_event_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "event.json"
    bad.write_text(json.dumps({"action": "opened", "pull_request": {}}))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "INPUT_"))}
    env.update({"GITHUB_EVENT_NAME": "pull_request", "GITHUB_EVENT_PATH": str(bad)})
    action = str(Path(sys.executable).parent / "squals-action")
    done = subprocess.run([action], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "squals-action: error: pull_request payload: pull_request.number: "
        "expected an integer, as GitHub documents it"
    ]


def test_promote_of_a_fork_pr_is_refused_there_is_no_island(settings: Settings) -> None:
    api = FakeApi("admin", fork=True)
    intent = parse_event("issue_comment", event("issue_comment.created-promote"), ENV)
    core = Core(LOCKED)
    code, report = run(intent, core, api, settings)
    assert (code, report.status, core.requests) == (0, "refused", [])
    assert "from a fork" in api.comments[1][0]


def test_a_bug_in_the_core_still_closes_the_check_run_and_deployment(settings: Settings) -> None:
    api = FakeApi()
    intent = parse_event("pull_request", event("pull_request.opened"), ENV)
    with pytest.raises(ZeroDivisionError):
        run(intent, Core(ZeroDivisionError("boom")), api, settings)
    assert ("finish_check_run", (5, "failure")) in api.calls
    assert ("deployment_status", (9, "failure")) in api.calls
    assert "internal error: ZeroDivisionError" in api.comments[2][0]


class UrlRecordingApi(FakeApi):
    """Also keeps the URL every deployment status was given."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str | None] = []

    def deployment_status(
        self,
        deployment_id: int,
        state: DeploymentState,
        *,
        environment_url: str | None,
        log_url: str | None,
        description: str,
    ) -> None:
        self.urls.append(environment_url)
        super().deployment_status(
            deployment_id, state, environment_url=environment_url, log_url=log_url, description=description
        )


LOOPBACK_REPORT = Report(
    intent="preview",
    status="success",
    headline="pr-2 is ready at http://127.0.0.1:41237",
    environment="pr-2",
    url="http://127.0.0.1:41237/",
    outputs={"commit": "c" * 40, "preview": "http://localhost:8080/shop"},
    sections=(("Environments, hooks and tests", "| pr-2 | island, ready | http://[::1]:9000/ |"),),
)


@pytest.mark.parametrize("container", [True, False])
def test_in_the_container_no_loopback_url_reaches_a_comment_an_output_or_a_deployment(
    settings: Settings, container: bool
) -> None:
    api = UrlRecordingApi()
    intent = parse_event("pull_request", event("pull_request.opened"), ENV)
    code, _ = run(intent, Core(LOOPBACK_REPORT), api, replace(settings, container=container))
    assert code == 0
    [body] = api.comments[2]
    published = [body, *(Path(p or "").read_text() for p in (settings.output_path, settings.summary_path))]
    loopback = re.compile(r"127\.0\.0\.1|localhost|\[::1\]")
    if container:
        assert not [text for text in published if loopback.search(text)]
        assert api.urls == [None, None]  # in progress, then success without a URL
        assert "a loopback address, withheld" in body
    else:  # outside the container (the CLI-like end-to-end runs) the URLs are real and shown
        assert all(loopback.search(text) for text in published)
        assert api.urls == [None, "http://127.0.0.1:41237/"]


def test_the_container_is_told_by_its_variable() -> None:
    assert settings_from_env({"SQUALS_ACTION_CONTAINER": "1"}).container is True
    assert settings_from_env({}).container is False
    dockerfile = (Path(__file__).parents[2] / "Dockerfile").read_text()
    assert "\nENV SQUALS_ACTION_CONTAINER=1\n" in dockerfile


class ReadOnlyApi(FakeApi):
    """Reads answer; the first write of ``refuse`` gets GitHub's 403 for a read-only token."""

    def __init__(self, refuse: str, message: str = "Resource not accessible by integration") -> None:
        super().__init__("write")
        self.refuse = refuse
        self.message = message

    def _refused(self, call: str) -> None:
        if call == self.refuse:
            self.calls.append((f"{call} refused", ()))
            raise GitHubError(f"GitHub API: {call}: HTTP 403: {self.message}", status=403)

    def start_check_run(self, head_sha: str, name: str, external_id: str, details_url: str | None) -> int:
        self._refused("start_check_run")
        return super().start_check_run(head_sha, name, external_id, details_url)

    def upsert_comment(self, number: int, marker: str, render: Callable[[str | None], str]) -> int:
        self._refused("comment")
        return super().upsert_comment(number, marker, render)


def test_a_refused_check_run_turns_the_run_read_only_before_the_work(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    api = ReadOnlyApi("start_check_run")
    core = Core(Report(intent="preview", status="success", headline="valid, gates passed; not deployed"))
    code, _ = run(parse_event("pull_request", event("pull_request.opened"), ENV), core, api, settings)
    assert code == 0
    assert api.names() == ["start_check_run refused"]  # no label, deployment, comment after it
    [request] = core.requests
    assert not request.intent.deploy and request.on_start is None
    assert request.intent.read_only is not None and "HTTP 403" in request.intent.read_only
    out = capsys.readouterr().out
    assert "squals: GitHub refused a write with this run's token, so it is read-only" in out


def test_a_refused_comment_stops_the_writes_and_keeps_the_exit_code(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    intent = parse_event("pull_request", event("pull_request.closed"), ENV)
    api = ReadOnlyApi("comment")
    ok = Report(intent="teardown", status="success", headline="PR #2 closed: pr-2: nothing to tear down")
    code, _ = run(intent, Core(ok), api, settings)
    assert code == 0
    assert api.names() == ["comment refused"]  # no deactivation after it
    out = capsys.readouterr().out
    assert "squals: teardown: success: PR #2 closed" in out and "so it is read-only" in out
    failed = replace(ok, status="failure", headline="teardown failed")
    assert run(intent, Core(failed), ReadOnlyApi("comment"), settings)[0] == 1


def test_a_rate_limit_403_is_not_taken_for_a_read_only_token(settings: Settings) -> None:
    api = ReadOnlyApi("start_check_run", "You have exceeded a secondary rate limit")
    intent = parse_event("pull_request", event("pull_request.opened"), ENV)
    with pytest.raises(GitHubError, match="rate limit"):
        run(intent, Core(Report(intent="preview", status="success", headline="up")), api, settings)


def test_a_read_only_run_does_not_promote(settings: Settings) -> None:
    intent = replace(
        parse_event("pull_request", event("pull_request.labeled-promote"), ENV),
        read_only="dependabot[bot] triggered this run: GitHub gives it a read-only token",
    )
    core = Core(Report(intent="promote", status="success", headline="promoted"))
    code, report = run(intent, core, FakeApi("write"), settings)
    assert (code, report.status, core.requests) == (0, "refused", [])
    assert report.headline.startswith("promote not carried out: dependabot[bot] triggered this run")
