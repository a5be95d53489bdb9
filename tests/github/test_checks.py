"""`gates.checks`: the wait (bounded, backing off), its verdicts, the client's paginated reads of a commit's
check runs and combined status (asserted against @octokit/openapi), the comment's rows, and the CLI's
honest "not checked"."""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import responses

from squals_action.gates.checks import NEEDS_GITHUB, CheckState, wait_for_checks
from squals_action.report.comment import RunInfo, compose_comment
from squals_action.report.model import Report, Step
from tests.cli.test_cli import run_squals
from tests.github.test_api import SHA, client, made
from tests.support.github import BASE, WIRE, example


class Clock:
    """A monotonic clock that only ``sleep`` moves; every pause is recorded."""

    def __init__(self) -> None:
        self.now = 0.0
        self.pauses: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.pauses.append(seconds)
        self.now += seconds


def scripted(*looks: Sequence[CheckState]) -> Iterator[Sequence[CheckState]]:
    """What the commit shows at each look; the last one stays."""
    yield from looks
    while True:
        yield looks[-1]


def wait(
    names: list[str], looks: Iterator[Sequence[CheckState]], clock: Clock, timeout: float = 600.0
) -> Any:
    return wait_for_checks(
        names, lambda: next(looks), timeout=timeout, interval=10.0, sleep=clock.sleep, clock=clock
    )


def test_waits_with_backoff_until_every_check_completed() -> None:
    clock = Clock()
    running = CheckState("test", None, "https://x/1", "in_progress")
    looks = scripted(
        [],
        [running],
        [running],
        [running],
        [CheckState("test", "success", "https://x/1"), CheckState("lint", "neutral", None)],
    )

    [test, lint] = wait(["test", "lint"], looks, clock)

    assert clock.pauses == [10.0, 20.0, 40.0, 80.0]
    assert (test.status, test.summary, test.url, test.stage) == ("pass", "success", "https://x/1", "checks")
    assert (lint.status, lint.summary) == ("pass", "neutral")


def test_pauses_stop_at_two_minutes_and_at_the_deadline() -> None:
    clock = Clock()
    looks = scripted([CheckState("test", None, None, "queued")])

    [test] = wait(["test"], looks, clock, timeout=400.0)

    assert clock.pauses == [10.0, 20.0, 40.0, 80.0, 120.0, 120.0, 10.0]
    assert (test.status, test.summary) == ("timeout", "still queued after 7 min")


def test_a_failure_stops_the_wait_and_fails() -> None:
    clock = Clock()
    queued = CheckState("e2e", None, None, "queued")
    looks = scripted([CheckState("test", "cancelled", "https://x/2"), queued])

    [test, e2e, lint] = wait(["test", "e2e", "lint"], looks, clock)

    assert clock.pauses == []
    assert (test.status, test.summary) == ("fail", "cancelled")
    assert (e2e.status, e2e.summary) == ("skip", "not waited for: test failed (queued)")
    assert (lint.status, lint.summary) == ("skip", "not waited for: test failed")


@pytest.mark.parametrize("conclusion", ["failure", "timed_out", "action_required", "stale", "error"])
def test_every_other_conclusion_fails(conclusion: str) -> None:
    [result] = wait(["ci"], scripted([CheckState("ci", conclusion, None)]), Clock())
    assert (result.status, result.ok) == ("fail", False)


def test_a_check_that_never_appears_is_not_found_not_a_pass() -> None:
    clock = Clock()
    [result] = wait(["tset"], scripted([CheckState("test", "success", None)]), clock, timeout=60.0)
    assert result.status == "fail" and not result.ok
    assert result.summary == "not found: no check run or commit status named 'tset' on the commit after 60 s"
    assert sum(clock.pauses) == 60.0


# -- the client: GET commits/{ref}/check-runs and commits/{ref}/status, paginated ------------------------


def check_run(id_: int, name: str, status: str, conclusion: str | None) -> dict[str, Any]:
    listing = example("get", "/repos/{owner}/{repo}/commits/{ref}/check-runs")
    run = copy.deepcopy(listing["check_runs"][0])
    run.update(
        id=id_,
        name=name,
        status=status,
        conclusion=conclusion,
        head_sha=SHA,
        html_url=f"https://github.com/Codertocat/Hello-World/runs/{id_}",
    )
    return run


@responses.activate
def test_client_reads_every_page_of_check_runs_and_the_combined_status() -> None:
    others = [check_run(1000 + i, f"matrix ({i})", "completed", "success") for i in range(99)]
    page1 = [check_run(5, "test", "completed", "failure"), *others]
    page2 = [check_run(9, "test", "completed", "success"), check_run(10, "e2e", "in_progress", None)]
    listing = example("get", "/repos/{owner}/{repo}/commits/{ref}/check-runs")
    runs = f"{WIRE}/commits/{SHA}/check-runs"
    responses.get(f"{runs}?page=1&per_page=100", json=dict(listing, total_count=102, check_runs=page1))
    responses.get(f"{runs}?page=2&per_page=100", json=dict(listing, total_count=102, check_runs=page2))
    combined = example("get", "/repos/{owner}/{repo}/commits/{ref}/status")
    combined["statuses"][1].update(state="pending", context="ci/lint")
    combined["statuses"].append(dict(combined["statuses"][0], context="test", state="failure"))
    combined["total_count"] = 3
    responses.get(f"{WIRE}/commits/{SHA}/status?page=1&per_page=100", json=combined)

    found = {c.name: c for c in client().commit_checks(SHA)}

    assert [(m, p) for m, p, _ in made(responses.mock)] == [
        ("GET", f"/commits/{SHA}/check-runs?page=1&per_page=100"),
        ("GET", f"/commits/{SHA}/check-runs?page=2&per_page=100"),
        ("GET", f"/commits/{SHA}/status?page=1&per_page=100"),
    ]
    assert len(found) == 99 + 2 + 2
    # the re-run (higher id) wins over the first attempt; a check run wins over a status of the same name
    assert found["test"] == CheckState(
        "test", "success", "https://github.com/Codertocat/Hello-World/runs/9", "completed"
    )
    assert found["e2e"] == CheckState(
        "e2e", None, "https://github.com/Codertocat/Hello-World/runs/10", "in_progress"
    )
    assert found["continuous-integration/jenkins"] == CheckState(
        "continuous-integration/jenkins", "success", "https://ci.example.com/1000/output", "success"
    )
    assert found["ci/lint"] == CheckState("ci/lint", None, "https://ci.example.com/2000/output", "pending")


@responses.activate
def test_client_error_is_one_line_naming_the_call() -> None:
    from squals_action.github.interface import GitHubError

    responses.get(
        f"{WIRE}/commits/{SHA}/check-runs?page=1&per_page=100",
        status=404,
        json={"message": "No commit found for SHA: " + SHA},
    )
    with pytest.raises(GitHubError) as caught:
        client().commit_checks(SHA)
    assert str(caught.value) == (
        f"GitHub API: check runs of {SHA[:12]}: HTTP 404: No commit found for SHA: {SHA}"
    )


# -- where they show ---------------------------------------------------------------------------------------


def test_the_comment_shows_each_check_with_its_conclusion_and_link() -> None:
    report = Report(
        intent="preview",
        status="failure",
        headline="gate test failed",
        gates=(
            Step("test", "failure", 12.0, "failure", kind="checks", url=f"{BASE}/runs/9"),
            Step(
                "lint",
                "failure",
                600.0,
                "not found: no check run or commit status named 'lint'",
                kind="checks",
            ),
        ),
    )

    body = compose_comment(report, RunInfo(run_url=None, sha=SHA))

    assert f"| Gate checks · test | ❌ failed [failure]({BASE}/runs/9) | 12.0 s |" in body
    assert "| Gate checks · lint | ❌ failed | 10m 00s |" in body
    assert "not found: no check run or commit status named 'lint'" in body  # its details


def test_the_cli_says_not_checked(tmp_path: Path) -> None:
    (tmp_path / "squals.yml").write_text(
        "version: 1\nname: app\napp: {start: ./run}\ngates:\n  checks: [test, lint]\n"
    )

    done = run_squals("gates", "--format", "json", str(tmp_path / "squals.yml"), cwd=tmp_path)

    assert done.returncode == 0, done.stderr
    assert '"status": "skip"' in done.stdout
    assert done.stdout.count(NEEDS_GITHUB) == 2
    text = run_squals("gates", str(tmp_path / "squals.yml"), cwd=tmp_path)
    assert text.stdout.splitlines()[-1] == "gates: pass (2 not checked: needs GitHub)"


def test_the_check_the_squals_file_may_not_wait_for_is_the_actions_own() -> None:
    from squals_action.github.runner import CHECK_NAME
    from squals_action.manifest.checks import OWN_CHECK

    assert OWN_CHECK == CHECK_NAME
