"""The gate runner with real subprocesses and real git repositories."""

from __future__ import annotations

import itertools
import threading
from pathlib import Path

import pytest

from squals_action.gates.command import CommandGate
from squals_action.gates.interface import Gate, GateContext, GateError, GateResult
from squals_action.gates.runner import all_ok, make_context, run_gates, run_pipeline
from squals_action.manifest.model import Command, Gates
from squals_action.manifest.model import TestGate as TGate
from squals_action.process import group_members
from tests.support.gates import Repo


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat[stat.rfind(")") + 2 :].split()[0] not in ("Z", "X")


def test_eight_one_second_gates_overlap_with_concurrency_eight(ctx: GateContext) -> None:
    gates = [CommandGate(Command(name=f"t{i}", run="sleep 1", timeout=30), "test") for i in range(8)]
    results = run_gates(ctx, test_gates=gates, concurrency=8)
    assert [r.status for r in results] == ["pass"] * 8
    # Every gate started before any gate ended: all eight ran at the same time.
    assert max(r.started_at for r in results) < min(r.ended_at for r in results)


def test_concurrency_one_serialises(ctx: GateContext) -> None:
    gates = [CommandGate(Command(name=f"t{i}", run="sleep 0.2", timeout=30), "test") for i in range(3)]
    results = sorted(run_gates(ctx, test_gates=gates, concurrency=1), key=lambda r: r.started_at)
    for earlier, later in itertools.pairwise(results):
        assert earlier.ended_at <= later.started_at + 0.01


def test_timeout_kills_gate_and_grandchildren(ctx: GateContext, tmp_path: Path) -> None:
    pidfile = tmp_path / "gc.pid"
    gate = CommandGate(
        Command(name="hang", run=f"(sleep 120 & echo $! > {pidfile}; wait) & sleep 120", timeout=1.0),
        "test",
        grace=1.0,
    )
    other = CommandGate(Command(name="ok", run="echo fine", timeout=30), "test")
    results = run_gates(ctx, test_gates=[gate, other])
    by_name = {r.name: r for r in results}
    assert by_name["hang"].status == "timeout"
    assert "killed" in by_name["hang"].summary
    assert by_name["ok"].status == "pass"
    grandchild = int(pidfile.read_text())
    assert not _alive(grandchild)
    assert group_members(grandchild) == []


def test_failure_summary_env_and_log(ctx: GateContext) -> None:
    ctx = GateContext(repo=ctx.repo, log_dir=ctx.log_dir, env={"SQUALS_PR": "7"})
    gate = CommandGate(
        Command(
            name="unit tests/../x",
            run='echo "pr=$SQUALS_PR gate=$SQUALS_GATE stage=$SQUALS_STAGE own=$OWN"; echo boom >&2; exit 4',
            env={"OWN": "yes"},
        ),
        "test",
    )
    (result,) = run_gates(ctx, test_gates=[gate])
    assert result.status == "fail"
    assert result.summary == "exit code 4: boom"
    assert result.log_path is not None and result.log_path.parent == ctx.log_dir
    assert "pr=7 gate=unit tests/../x stage=test own=yes" in result.log_path.read_text()


def test_gates_see_no_token_unless_the_file_passes_it_through(
    ctx: GateContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A gate runs the PR's code: the action's token is not in its environment; a name in the squals
    file's ``env_passthrough`` is (``make_context`` carries it)."""
    monkeypatch.setenv("GITHUB_TOKEN", "ghs_secret")
    monkeypatch.setenv("INPUT_GITHUB-TOKEN", "ghs_input")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-secret")
    monkeypatch.setenv("SAFETY_API_KEY", "safety-key")  # the dependency gate's, not the PR code's
    show = (
        'echo "gh=${GITHUB_TOKEN:-none} aws=${AWS_SECRET_ACCESS_KEY:-none} safety=${SAFETY_API_KEY:-none}"; '
        "env | grep -c INPUT_GITHUB; :"
    )
    gate = CommandGate(Command(name="show", run=show), "test")
    hidden_ctx = make_context(ctx.repo, ctx.log_dir / "a")
    (hidden,) = run_gates(hidden_ctx, test_gates=[gate])
    opened = make_context(ctx.repo, ctx.log_dir / "b", passthrough=("AWS_SECRET_ACCESS_KEY",))
    (passed,) = run_gates(opened, test_gates=[gate])
    assert hidden.log_path is not None and passed.log_path is not None
    assert hidden.log_path.read_text().split() == ["gh=none", "aws=none", "safety=none", "0"]
    assert passed.log_path.read_text().split() == ["gh=none", "aws=aws-secret", "safety=none", "0"]
    assert hidden_ctx.source_env == {"SAFETY_API_KEY": "safety-key"}  # the sources have it


def test_compile_failure_skips_tests_but_not_security(ctx: GateContext) -> None:
    seen: list[str] = []

    class Probe(Gate):
        name, stage = "probe", "security"

        def run(self, ctx: GateContext) -> GateResult:
            seen.append("security")
            return GateResult(self.name, "security", "pass", 0.0, "ok")

    compile_gate = CommandGate(Command(name="build", run="exit 2"), "compile")
    test_gate = CommandGate(TGate(name="unit", run="echo never"), "test")
    results = run_gates(ctx, [compile_gate], [test_gate], [Probe()])
    statuses = {r.name: r.status for r in results}
    assert statuses == {"build": "fail", "unit": "skip", "probe": "pass"}
    assert "compile gate build" in next(r.summary for r in results if r.name == "unit")
    assert not all_ok(results)


def test_security_runs_in_parallel_with_compile(ctx: GateContext) -> None:
    release = threading.Event()

    class Waits(Gate):
        """Passes only if the compile gate ran while this gate was running."""

        name, stage = "waits", "security"

        def run(self, ctx: GateContext) -> GateResult:
            ok = release.wait(20)
            return GateResult(self.name, "security", "pass" if ok else "fail", 0.0, "")

    class Releases(Gate):
        name, stage = "build", "compile"

        def run(self, ctx: GateContext) -> GateResult:
            release.set()
            return GateResult(self.name, "compile", "pass", 0.0, "")

    results = run_gates(ctx, [Releases()], [], [Waits()], concurrency=2)
    assert {r.name: r.status for r in results} == {"build": "pass", "waits": "pass"}


def test_exceptions_become_error_results(ctx: GateContext) -> None:
    class Broken(Gate):
        name, stage = "broken", "test"

        def run(self, ctx: GateContext) -> GateResult:
            raise RuntimeError("bug")

    class Refuses(Gate):
        name, stage = "refuses", "test"

        def run(self, ctx: GateContext) -> GateResult:
            raise GateError("cannot read x.lock")

    results = run_gates(ctx, test_gates=[Broken(), Refuses()])
    assert [r.status for r in results] == ["error", "error"]
    assert results[0].summary == "internal error: RuntimeError: bug"
    assert results[1].summary == "cannot read x.lock"


def test_workdir_outside_repo_is_an_error(ctx: GateContext) -> None:
    gate = CommandGate(Command(name="escape", run="true", workdir="../.."), "test")
    (result,) = run_gates(ctx, test_gates=[gate])
    assert result.status == "error"
    assert "outside the repository" in result.summary


def test_path_filters_against_real_git_diff(make_repo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    repo: Repo = make_repo({"src/app.py": "x = 1\n", "docs/index.md": "# docs\n", "web/app.js": "1\n"})
    repo.commit({"src/app.py": "x = 2\n", "docs/guide.md": "more\n"})
    ctx = make_context(repo.root, tmp_path / "logs", base="origin/main")
    assert sorted(ctx.changed_files or ()) == ["docs/guide.md", "src/app.py"]
    assert ctx.env["SQUALS_BASE_REF"] == "origin/main"
    model = Gates(
        test=(
            TGate(name="py", run="echo py", paths=("src/**",)),
            TGate(name="js", run="echo js", paths=("web/**", "*.js")),
            TGate(name="md", run="echo md", paths=("*.md",)),
            TGate(name="all", run="pwd"),
        )
    )
    results = run_pipeline(model, ctx)
    statuses = {r.name: r.status for r in results}
    assert statuses == {"py": "pass", "js": "skip", "md": "pass", "all": "pass"}
    js = next(r for r in results if r.name == "js")
    assert js.summary == "skipped: no changed file matches web/**, *.js"
    # Without a base every filter matches: nothing is skipped by mistake.
    assert all(r.status == "pass" for r in run_pipeline(model, make_context(repo.root, tmp_path / "l2")))


def test_unknown_base_is_a_clear_error(make_repo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    repo: Repo = make_repo({"a.txt": "a\n"})
    try:
        make_context(repo.root, tmp_path / "logs", base="no-such-ref")
    except GateError as exc:
        assert "no-such-ref" in str(exc)
    else:
        raise AssertionError("expected GateError")


def test_security_gate_deadline(ctx: GateContext) -> None:
    from squals_action.gates.security.gates import DeadlineGate

    stop = threading.Event()

    class Slow(Gate):
        name, stage = "slow", "security"

        def run(self, ctx: GateContext) -> GateResult:
            stop.wait(10)
            return GateResult(self.name, "security", "pass", 0.0, "late")

    try:
        (result,) = run_gates(ctx, security_gates=[DeadlineGate(Slow(), 0.2)])
    finally:
        stop.set()
    assert result.status == "timeout" and result.summary == "did not finish within 0.2s"
