"""The variables docs/gates.md documents for the vulnerability sources reach them from every entry point:
``squals gates``, the lifecycle (``squals deploy`` runs the gates first) and the action (issue 14, finding 3).

Each run is a real subprocess against vulnerability databases served on 127.0.0.1 (OSV's API replayed from
its recorded exchanges, Safety's data API checking its key); every other HTTP request goes to a dead proxy,
so a variable that does not arrive shows as a gate error, never as a request leaving the machine.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from squals_action.gates.security.registry import SOURCE_VARIABLES
from tests.support.fake_github import FakeGitHub
from tests.support.gates import OsvReplay, SafetyApi, git
from tests.support.github import REPO, event

SQUALS = [sys.executable, "-m", "squals_action.cli"]
ACTION = str(Path(sys.executable).parent / "squals-action")
DOCS = Path(__file__).resolve().parents[2] / "docs" / "gates.md"
KEY = "safety-key-for-tests"

#: The packages of OSV's recorded query, in its order: requests 2.25.0 (OSV and Safety both know an
#: advisory of it), lodash, minimist and express.
REQUIREMENTS = "requests==2.25.0\n"
PACKAGE_LOCK = json.dumps(
    {
        "name": "web",
        "lockfileVersion": 3,
        "packages": {
            "": {"name": "web"},
            "node_modules/lodash": {"version": "4.17.15"},
            "node_modules/minimist": {"version": "0.0.8"},
            "node_modules/express": {"version": "4.21.2"},
        },
    },
    indent=2,
)


def squals_file(source: str) -> str:
    return (
        "version: 1\nname: shop\napp: {start: python3 app.py}\n"
        "gates:\n  security:\n    dependencies:\n"
        f"      files: [requirements.txt, package-lock.json]\n      sources: [{source}]\n"
        "      fail_on: medium\n"
    )


@dataclass(frozen=True)
class Database:
    """A source as the squals file names it, the environment that points it at 127.0.0.1, the advisory of
    requests 2.25.0 it must report, and a check that it was asked (with its key)."""

    source: str
    env: dict[str, str]
    advisory: str
    asked: Callable[[], bool]


@pytest.fixture(params=["SQUALS_OSV_URL", "SAFETY_API_KEY"])
def database(request: pytest.FixtureRequest) -> Iterator[Database]:
    if request.param == "SQUALS_OSV_URL":
        osv = OsvReplay()  # serving from construction
        try:
            yield Database(
                "osv",
                {"SQUALS_OSV_URL": osv.url},
                "GHSA-j8r2-6x86-q33q",
                lambda: ("POST", "/v1/querybatch") in osv.requests,
            )
        finally:
            osv.stop()
    else:
        with SafetyApi(KEY) as safety:
            env = {"SAFETY_API_KEY": KEY, "SQUALS_SAFETY_URL": f"{safety.url}/api/v1/safety"}
            yield Database(
                "safety",
                env,
                "pyup.io-58755",
                lambda: safety.requests == [("/api/v1/safety/insecure_full.json", KEY)],
            )


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    repo = tmp_path / "shop"
    repo.mkdir()
    (repo / "requirements.txt").write_text(REQUIREMENTS)
    (repo / "package-lock.json").write_text(PACKAGE_LOCK)
    git(tmp_path, "init", "-q", "-b", "master", str(repo))
    return repo


def commit(repo: Path, source: str) -> str:
    (repo / "squals.yml").write_text(squals_file(source))
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "shop")
    return git(repo, "rev-parse", "HEAD").strip()


def environment(extra: dict[str, str]) -> dict[str, str]:
    """The test's environment without anything of GitHub's or the sources', any other host behind a dead
    proxy, plus ``extra``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("GITHUB_", "INPUT_", "RUNNER_")) and k not in SOURCE_VARIABLES
    }
    dead = "http://127.0.0.1:9"
    env.update({"HTTPS_PROXY": dead, "HTTP_PROXY": dead, "NO_PROXY": "127.0.0.1,localhost"})
    return {**env, **extra}


def run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=180)


def test_squals_gates(shop: Path, database: Database) -> None:
    commit(shop, database.source)
    done = run([*SQUALS, "gates", "--format", "json"], shop, environment(database.env))
    assert done.returncode == 1, done.stderr
    [gate] = json.loads(done.stdout)["gates"]
    assert gate["status"] == "fail", gate["summary"]
    assert database.advisory in {f["details"].get("advisory") for f in gate["findings"]}
    assert database.asked()


def test_squals_deploy_runs_its_gates_with_them(shop: Path, database: Database) -> None:
    commit(shop, database.source)
    done = run([*SQUALS, "deploy", "--pr", "1", "--report", "none"], shop, environment(database.env))
    assert done.returncode == 1 and "gates failed" in done.stderr, done.stderr
    log = (shop / ".squals" / "logs" / "gates" / "security-dependencies.log").read_text()
    assert database.advisory in log and "source error" not in log, log
    assert database.asked()


def test_the_action_runs_its_gates_with_them(shop: Path, database: Database, tmp_path: Path) -> None:
    head = commit(shop, database.source)
    opened = event("pull_request.opened")
    opened["pull_request"]["head"]["sha"] = head
    (tmp_path / "event.json").write_text(json.dumps(opened))
    with FakeGitHub(REPO, permissions={"Codertocat": "maintain"}) as fake:
        env = environment(
            {
                **database.env,
                "GITHUB_ACTIONS": "true",
                "GITHUB_EVENT_NAME": "pull_request",
                "GITHUB_EVENT_PATH": str(tmp_path / "event.json"),
                "GITHUB_API_URL": fake.url,
                "GITHUB_SERVER_URL": "https://github.com",
                "GITHUB_REPOSITORY": REPO,
                "GITHUB_RUN_ID": "7",
                "GITHUB_WORKSPACE": str(shop),
                "GITHUB_OUTPUT": str(tmp_path / "output"),
                "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"),
                "RUNNER_TEMP": str(tmp_path / "runner-temp"),
                "INPUT_GITHUB-TOKEN": "ghs_test_token",
                "INPUT_SQUALS-FILES": "squals.yml",
                "SQUALS_ACTION_CONTAINER": "1",
                "SQUALS_GITHUB_WRITE_INTERVAL": "0",
                "SQUALS_GITHUB_REQUEST_INTERVAL": "0",
                "SQUALS_GITHUB_TIMEOUT": "10",
            }
        )
        done = run([ACTION], shop, env)
    assert "gate dependencies failed; not deployed" in done.stdout, done.stdout + done.stderr
    log = (tmp_path / "runner-temp" / "squals" / "logs" / "gates" / "security-dependencies.log").read_text()
    assert database.advisory in log and "source error" not in log, log
    assert database.asked()


def test_every_variable_the_sources_read_is_documented() -> None:
    """docs/gates.md names exactly the variables the sources read (so the tests above cover what it
    promises)."""
    text = DOCS.read_text()
    section = text.split("## Dependency vulnerabilities", 1)[1].split("\n## ", 1)[0]
    assert set(re.findall(r"`((?:SQUALS|SAFETY)_[A-Z_]+)`", section)) == set(SOURCE_VARIABLES)
