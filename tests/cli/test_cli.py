"""The `squals` command line: start-up stays light, exit codes, output formats, and no bare tracebacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from squals_action import __version__, cli
from squals_action.cli import manifest_commands

REPO = Path(__file__).resolve().parents[2]
SHOP = REPO / "examples" / "shop" / "squals.yml"
HEAVY = ("boto3", "botocore", "scipy", "numpy", "github", "git", "aiohttp", "safety", "cfnlint", "rich")


def run_squals(
    *args: str, cwd: Path = REPO, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k != "GITHUB_ACTIONS"}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "squals_action.cli", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_version_imports_nothing_heavy() -> None:
    probe = (
        "import sys\n"
        "from squals_action.cli import main\n"
        "try:\n"
        "    main(['--version'])\n"
        "except SystemExit as exc:\n"
        "    assert exc.code == 0, exc.code\n"
        f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "print('HEAVY=' + ','.join(heavy))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert f"squals {__version__}" in done.stdout
    assert "HEAVY=\n" in done.stdout, done.stdout


def test_validate_imports_nothing_heavy() -> None:
    probe = (
        "import sys\n"
        "from squals_action.cli import main\n"
        f"code = main(['validate', {str(SHOP)!r}])\n"
        f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "print('CODE=%d HEAVY=%s' % (code, ','.join(heavy)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False
    )
    assert "CODE=0 HEAVY=\n" in done.stdout, done.stdout + done.stderr


def test_console_script_version() -> None:
    script = Path(sys.executable).parent / "squals"
    if not script.exists():
        pytest.skip("console script not installed in this environment")
    done = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0
    assert done.stdout.strip() == f"squals {__version__}"


def test_validate_example_is_valid() -> None:
    done = run_squals("validate", "examples/shop/squals.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout == ""
    assert "1 squals file valid" in done.stderr


def _bad_repo(tmp_path: Path) -> Path:
    (tmp_path / ".git").mkdir()
    (tmp_path / "squals.yml").write_text(
        "version: 1\nname: shop\napp:\n  start: python app.py\n  helth: /h\n"
        "rollout: {bake: 'ten, minutes: x'}\n"
    )
    return tmp_path


def test_validate_text_format_and_exit_1(tmp_path: Path) -> None:
    repo = _bad_repo(tmp_path)
    done = run_squals("validate", cwd=repo)
    assert done.returncode == 1
    assert done.stdout.splitlines() == [
        "squals.yml:5:3: error: $.app.helth: unknown key 'helth'; did you mean 'health'?",
        "squals.yml:6:17: error: $.rollout.bake: expected a duration like 90s, 15m, 2h or 7d, "
        "got 'ten, minutes: x'",
    ]
    assert "Traceback" not in done.stderr


def test_validate_under_github_actions_adds_annotations(tmp_path: Path) -> None:
    repo = _bad_repo(tmp_path)
    done = run_squals("validate", "squals.yml", cwd=repo, env={"GITHUB_ACTIONS": "true"})
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert lines[0].startswith("squals.yml:5:3: error: ")
    assert (
        "::error title=squals file,file=squals.yml,line=6,col=17::$.rollout.bake: expected a duration like "
        "90s, 15m, 2h or 7d, got 'ten, minutes: x'" in lines
    )


def test_validate_github_format_escapes(tmp_path: Path) -> None:
    repo = _bad_repo(tmp_path)
    done = run_squals("validate", "--format", "github", cwd=repo)
    assert done.returncode == 1
    assert done.stdout.splitlines() == [
        "::error title=squals file,file=squals.yml,line=5,col=3::$.app.helth: unknown key 'helth'; "
        "did you mean 'health'?",
        "::error title=squals file,file=squals.yml,line=6,col=17::$.rollout.bake: expected a duration like "
        "90s, 15m, 2h or 7d, got 'ten, minutes: x'",
    ]


def test_validate_json_format(tmp_path: Path) -> None:
    repo = _bad_repo(tmp_path)
    done = run_squals("validate", "--format", "json", cwd=repo)
    assert done.returncode == 1
    document = json.loads(done.stdout)
    assert document["valid"] is False
    assert document["files"] == ["squals.yml"]
    assert document["problems"][0] == {
        "file": "squals.yml",
        "line": 5,
        "col": 3,
        "where": "$.app.helth",
        "message": "unknown key 'helth'; did you mean 'health'?",
        "severity": "error",
    }


def test_validate_usage_errors_exit_2(tmp_path: Path) -> None:
    assert run_squals("validate", "--format", "xml", cwd=tmp_path).returncode == 2
    missing = run_squals("validate", "nope.yml", cwd=tmp_path)
    assert missing.returncode == 2
    assert missing.stderr.strip() == "squals: error: squals validate: no such file: nope.yml"


def test_validate_a_directory_discovers_its_files() -> None:
    done = run_squals("validate", "examples/shop")
    assert done.returncode == 0, done.stdout + done.stderr
    empty = run_squals("validate", "docs")
    assert empty.returncode == 2
    assert "no squals.yml or squals/*.yml in docs" in empty.stderr


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (("validate",), "no squals file found"),
        (("validate", "nope.yml"), "no such file: nope.yml"),
        (("gates",), "squals.yml not found"),
        (("gates", "nope.yml"), "nope.yml not found"),
        (("deploy", "--pr", "1"), "no squals file in "),
        (("deploy", "--pr", "1", "--file", "nope.yml"), "no such squals file: nope.yml"),
        (("experiment", "start"), "no squals file in "),
    ],
)
def test_a_missing_squals_file_is_a_usage_error_named_in_one_line(
    tmp_path: Path, args: tuple[str, ...], named: str
) -> None:
    """README: 2 for a usage error, a missing file included, whether its path was given or not."""
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True, timeout=30)
    done = run_squals(*args, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("squals: error: ") and done.stderr.count("\n") == 1, done.stderr
    assert named in done.stderr


def test_schema_command_prints_the_schema() -> None:
    done = run_squals("schema")
    assert done.returncode == 0
    assert json.loads(done.stdout)["$id"].endswith("squals.schema.json")


def test_unexpected_exception_is_one_line_with_traceback_file(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def explode(args: object) -> int:
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(manifest_commands, "run_validate", explode)
    code = cli.main(["validate"])
    err = capsys.readouterr().err
    assert code == 70
    lines = err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(
        "squals: internal error: RuntimeError: boom second line (traceback written to "
    )
    log = Path(lines[0].rsplit("traceback written to ", 1)[1].rstrip(")"))
    try:
        assert "Traceback (most recent call last)" in log.read_text()
    finally:
        log.unlink()
