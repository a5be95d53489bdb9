"""Change-risk scoring on real git repositories with crafted diffs."""

from __future__ import annotations

import io
import json
from pathlib import Path

from squals_action.gates.runner import make_context, run_pipeline
from squals_action.gates.security.risk import RiskGate, assess, scan_secrets
from squals_action.manifest.model import Gates, RiskPolicy, SecurityGate
from squals_action.report import gates as report
from tests.support.gates import Repo

# Made-up credentials in the shapes the detector knows; none of them is real.
AWS_KEY = "AKIAZ7Q3W9XKR2M4TBYD"
GH_TOKEN = "ghp_" + "x7Yq2LmN9pR4sT6vW8zA1bC3dE5fG0hJ2kLm"
PASSWORD = "s3cr3t-Pa55w0rd-xyz"


def _factors(report_: object) -> dict[str, float]:
    return {f.name: f.points for f in report_.factors}  # type: ignore[attr-defined]


def test_small_change_scores_low(make_repo) -> None:  # type: ignore[no-untyped-def]
    repo: Repo = make_repo({"src/app.py": "def f():\n    return 1\n"})
    repo.commit({"src/app.py": "def f():\n    return 2\n"})
    result = assess(repo.root, "origin/main", "HEAD", RiskPolicy())
    assert result.score <= 2
    factors = _factors(result)
    assert factors["secrets"] == factors["tests"] == factors["binaries"] == 0


def test_secret_fails_and_its_value_never_appears(make_repo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    repo: Repo = make_repo({"config/settings.py": "DEBUG = False\n"})
    repo.commit(
        {
            "config/settings.py": (
                "DEBUG = False\n"
                f'AWS_ACCESS_KEY_ID = "{AWS_KEY}"\n'
                "REGION = 'eu-west-1'\n"
                f"github_token: {GH_TOKEN}\n"
                f'password = "{PASSWORD}"\n'
                'api_key = "${API_KEY}"\n'
            )
        }
    )
    model = Gates(security=SecurityGate(risk=RiskPolicy(max_score=60)))
    ctx = make_context(repo.root, tmp_path / "logs", base="origin/main")
    (result,) = run_pipeline(model, ctx)
    assert result.status == "fail"
    secrets = [f for f in result.findings if f.kind == "secret"]
    assert [(f.file, f.line, f.details["kind"]) for f in secrets] == [
        ("config/settings.py", 2, "AWS access key id"),
        ("config/settings.py", 4, "GitHub token"),
        ("config/settings.py", 5, "hard-coded password or token"),
    ]
    assert result.summary.startswith("risk 81/100 (max 60): secrets 80, size 1")  # 65 + 2 * 10, capped

    stream = io.StringIO()
    report.emit_github([result], stream=stream)
    outputs = [
        json.dumps(report.to_json([result])),
        report.to_markdown([result]),
        report.to_text([result]),
        stream.getvalue(),
        *(p.read_text() for p in (tmp_path / "logs").iterdir()),
    ]
    for text in outputs:
        for value in (AWS_KEY, GH_TOKEN, PASSWORD, GH_TOKEN[4:20]):
            assert value not in text
    assert "::error title=squals risk%3A secret,file=config/settings.py,line=2::" in stream.getvalue()


def test_tests_deleted_weakened_and_skipped(make_repo) -> None:  # type: ignore[no-untyped-def]
    repo: Repo = make_repo(
        {
            "tests/test_a.py": (
                "def test_a():\n    assert f(1) == 1\n    assert f(2) == 2\n    assert f(3) == 3\n"
            ),
            "tests/test_b.py": "def test_b():\n    assert True\n",
            "web/cart.test.js": "it('adds', () => {\n  expect(add(1)).toBe(1);\n});\n",
        }
    )
    repo.commit(
        {
            "tests/test_a.py": (
                "import pytest\n\n@pytest.mark.skip(reason='flaky')\ndef test_a():\n    assert f(1) == 1\n"
            ),
            "tests/test_b.py": None,
            "web/cart.test.js": "it.skip('adds', () => {\n});\n",
        }
    )
    result = assess(repo.root, "origin/main", "HEAD", RiskPolicy())
    tests = next(f for f in result.factors if f.name == "tests")
    assert tests.reason == "1 test files deleted, 3 assertions removed, 2 skips added"
    assert tests.points == 20.0  # capped: 8 + 6 + 10
    kinds = sorted((f.kind, f.file, f.line) for f in result.findings if f.kind.startswith("test"))
    assert kinds == [
        ("test-deleted", "tests/test_b.py", None),
        ("test-skipped", "tests/test_a.py", 3),
        ("test-skipped", "web/cart.test.js", 1),
    ]


def test_sensitive_paths_dependencies_binaries_and_size(make_repo) -> None:  # type: ignore[no-untyped-def]
    repo: Repo = make_repo(
        {
            "requirements.txt": "requests==2.25.0\nidna==3.4\n",
            "src/app.py": "x = 1\n",
            "Dockerfile": "FROM python:3.11\n",
        }
    )
    big = "".join(f"line {i}\n" for i in range(1500))
    repo.commit(
        {
            "requirements.txt": "requests==2.31.0\nidna==3.4\nflask==3.0.0\n",
            ".github/workflows/ci.yml": "on: push\n",
            "Dockerfile": "FROM python:3.12\n",
            "src/auth/login.py": "def login():\n    pass\n",
            "db/migrations/0002_users.sql": "ALTER TABLE users ADD COLUMN x int;\n",
            "deploy/site.tf": 'resource "x" "y" {}\n',
            "assets/logo.png": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4,
            "src/generated.py": big,
        }
    )
    result = assess(repo.root, "origin/main", "HEAD", RiskPolicy(sensitive_paths=("src/generated.py",)))
    factors = {f.name: f for f in result.factors}
    assert factors["dependencies"].points == 4.0  # one new (3) and one upgraded (1)
    assert "flask 3.0.0" in factors["dependencies"].reason
    assert "requests 2.25.0 -> 2.31.0" in factors["dependencies"].reason
    sensitive = {f.file: f.details["kind"] for f in result.findings if f.kind == "sensitive-path"}
    assert sensitive == {
        "requirements.txt": "dependency manifest",
        ".github/workflows/ci.yml": "CI workflow",
        "Dockerfile": "Dockerfile",
        "src/auth/login.py": "auth",
        "db/migrations/0002_users.sql": "database migration",
        "deploy/site.tf": "infrastructure",
        "src/generated.py": "sensitive (policy)",
    }
    assert factors["sensitive paths"].points == 20.0  # 7 files, capped
    assert factors["binaries"].points == 5.0
    assert [f.file for f in result.findings if f.kind == "binary"] == ["assets/logo.png"]
    assert factors["size"].reason == "1510 changed lines in 8 files"
    assert factors["size"].points == 20.0 + 4.0
    assert result.score == round(sum(f.points for f in result.factors))
    gate = RiskGate(RiskPolicy(max_score=40))
    from squals_action.gates.interface import GateContext

    outcome = gate.run(GateContext(repo=repo.root, log_dir=repo.root / ".logs", base="origin/main"))
    assert outcome.status == "fail" and outcome.summary.startswith(f"risk {result.score}/100 (max 40): ")
    assert any(f.kind == "risk-factor" and f.blocking for f in outcome.findings)


def test_no_base_skips() -> None:
    from squals_action.gates.interface import GateContext

    result = RiskGate(RiskPolicy()).run(GateContext(repo=Path("."), log_dir=Path(".")))
    assert result.status == "skip"


def test_secret_patterns_do_not_echo_values() -> None:
    assert scan_secrets("-----BEGIN OPENSSH PRIVATE KEY-----") == "private key"
    assert scan_secrets("token = 'xoxb-1234567890-abcdefghij'") == "Slack token"
    assert scan_secrets('password = "changeme-please"') is None  # a placeholder
    assert scan_secrets("just text AKIA") is None
