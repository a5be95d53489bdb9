"""Reports of gate results and the ``squals gates`` command on a real repository."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest
from gatesfix import LOCKFILES, VULNDB, Repo

from squals_action.cli import main
from squals_action.gates.interface import Finding, GateResult
from squals_action.report import gates as report


def _results(tmp_path: Path) -> list[GateResult]:
    log = tmp_path / "unit.log"
    log.write_text("collected 3 items\n::error::forged by a test\nFAILED test_cart.py::test_total <b>x</b>\n")
    return [
        GateResult("build", "compile", "pass", 1.5, "exit code 0"),
        GateResult("unit | @team", "test", "fail", 2.0, "exit code 1: FAILED <b>x</b>", log_path=log),
        GateResult(
            "dependencies",
            "security",
            "fail",
            0.3,
            "1 vulnerability",
            findings=(
                Finding(
                    "vulnerability",
                    "lodash 4.17.15: GHSA-p6mc-m468-83gw (CVE-2020-8203) high 7.4",
                    "high",
                    "web/package-lock.json",
                    4601,
                    True,
                ),
                Finding("unpinned", "flask is not pinned", None, "requirements.txt", 24),
            ),
        ),
    ]


def test_markdown_table_details_and_escaping(tmp_path: Path) -> None:
    text = report.to_markdown(_results(tmp_path))
    assert text.startswith("### ❌ Gates\n\n| gate | stage | status | duration | summary |")
    assert "| build | compile | ✅ pass | 1.5 s | exit code 0 |" in text
    assert "unit \\| &#64;team" in text  # no table break, no mention
    assert "<b>" not in text.split("```")[0]  # untrusted HTML escaped outside the code block
    assert "<details>\n<summary>❌ unit \\| &#64;team: fail</summary>" in text
    assert "FAILED test_cart.py::test_total <b>x</b>" in text  # log tail verbatim inside a fence
    assert "**blocking** <code>web/package-lock.json:4601</code> lodash 4.17.15" in text


def test_json_and_text(tmp_path: Path) -> None:
    results = _results(tmp_path)
    data = report.to_json(results)
    assert data["status"] == "fail"
    gates = data["gates"]
    assert isinstance(gates, list) and gates[2]["findings"][0]["line"] == 4601
    text = report.to_text(results)
    assert "dependencies: web/package-lock.json:4601: lodash 4.17.15" in text
    assert text.endswith("gates: fail")


def test_github_groups_annotations_and_stop_commands(tmp_path: Path) -> None:
    stream = io.StringIO()
    report.emit_github(_results(tmp_path), stream=stream)
    out = stream.getvalue()
    assert out.count("::group::") == 3 and out.count("::endgroup::") == 3
    # The log's forged command is printed only while workflow commands are stopped.
    before, after = out.split("::error::forged by a test", 1)
    token = before.rsplit("::stop-commands::", 1)[1].split("\n", 1)[0]
    assert f"::{token}::" in after
    assert (
        "::error title=squals dependencies%3A vulnerability,file=web/package-lock.json,line=4601::"
        "lodash 4.17.15: GHSA-p6mc-m468-83gw (CVE-2020-8203) high 7.4"
    ) in out
    assert "::warning title=squals dependencies%3A unpinned,file=requirements.txt,line=24::" in out
    assert "::error title=squals gate unit | @team fail::unit | @team: exit code 1" in out


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
