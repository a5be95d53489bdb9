"""The ``squals gates`` command on a real repository: JSON, GitHub Actions output and the stage filter."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from squals_action.cli import main
from tests.support.gates import LOCKFILES, VULNDB, Repo

SQUALS = """\
version: 1
name: shop
app: {start: python app.py}
gates:
  compile:
    - {name: build, run: "echo built > build.txt", timeout: 1m}
  test:
    - {name: unit, run: "test -f build.txt && echo unit ok", paths: ["src/**"]}
    - {name: docs, run: "echo docs", paths: ["docs/**"]}
  security:
    dependencies:
      files: [web/package-lock.json]
      sources: [offline]
      offline_db: advisories
      fail_on: critical
      ignore:
        - {id: GHSA-xvch-5gv4-984h, reason: only our own flags reach minimist, expires: 2099-01-01}
    risk: {max_score: 60}
"""


@pytest.fixture
def shop(make_repo) -> Repo:  # type: ignore[no-untyped-def]
    repo: Repo = make_repo({"squals.yml": SQUALS, "src/app.py": "x = 1\n", "app.py": "print(1)\n"})
    shutil.copytree(VULNDB / "offline", repo.root / "advisories")
    (repo.root / "web").mkdir()
    shutil.copy(LOCKFILES / "workspaces-package-lock.json", repo.root / "web" / "package-lock.json")
    repo.commit(
        {"src/app.py": "x = 2\n", "web/package-lock.json": (repo.root / "web/package-lock.json").read_text()}
    )
    return repo


def test_squals_gates_json(
    shop: Repo, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    code = main(["gates", "--base", "origin/main", "--format", "json", str(shop.root / "squals.yml")])
    data = json.loads(capsys.readouterr().out)
    statuses = {g["name"]: g["status"] for g in data["gates"]}
    assert statuses == {
        "build": "pass",
        "unit": "pass",
        "docs": "skip",
        "dependencies": "pass",
        "risk": "pass",
    }
    assert code == 0 and data["status"] == "pass"
    deps = next(g for g in data["gates"] if g["name"] == "dependencies")
    ignored = [f for f in deps["findings"] if f["kind"] == "ignored"]
    assert [f["details"]["advisory"] for f in ignored] == ["GHSA-xvch-5gv4-984h"]


def test_squals_gates_under_actions_and_stage_filter(
    shop: Repo, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    (shop.root / "squals.yml").write_text(SQUALS.replace("fail_on: critical", "fail_on: high"))
    code = main(["gates", "--stage", "security", "--base", "origin/main", str(shop.root / "squals.yml")])
    out = capsys.readouterr().out
    assert code == 1
    assert "::group::security: dependencies — fail" in out
    assert "::error title=squals dependencies%3A vulnerability,file=web/package-lock.json,line=4601::" in out
    assert "build" not in out.split("gates: fail")[0].split("::endgroup::")[-1]
    assert "| dependencies | security | ❌ fail |" in summary.read_text()


def test_squals_gates_missing_file_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["gates", str(tmp_path / "nope.yml")]) == 2
    assert "not found" in capsys.readouterr().err
