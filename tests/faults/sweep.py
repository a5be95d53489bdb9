"""The fault sweep's machinery: a project set up in process, one ``squals`` command run as a real process
that SIGKILLs itself at a named step (:mod:`squals_action.faults`), the next command, and what the user saw
and the state held, as one row of docs/reliability.md.

A :class:`Scenario` is one command of the sweep: how its project is set up (real git repository with a bare
origin, the real local provider and Dealer), its argv, and the steps a clean run of it reaches (traced, so
a step added to the code is swept without touching the test).
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import psutil

from squals_action.dealer import dealer_status
from squals_action.experiments.engine import from_lifecycle
from squals_action.faults import FAULT_AT_ENV, FAULT_TRACE_ENV
from squals_action.lifecycle.engine import Lifecycle
from squals_action.lifecycle.traffic import DealerTraffic
from squals_action.manifest import load
from squals_action.state import open_store
from tests.support.experiments import make_shop, stop_everything, visit
from tests.support.lifecycle import Project, get, git, lifecycle, make_project

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "reliability.md"
SQUALS = [sys.executable, "-m", "squals_action.cli"]

#: Every stage the sweep can kill in: each hook stage and the exit tests hold one command.
SQUALS_FILE = """\
version: 1
name: shop
app: {{start: '{python} app.py', health: /healthz, health_timeout: 30s}}
hooks:
  before_preprod: [{{run: 'true'}}]
  after_preprod: [{{run: 'true'}}]
  promote: [{{run: 'true'}}]
  after_postprod: [{{run: 'true'}}]
exit_tests: [{{run: 'true'}}]
rollout: {{blue_share: 50%, bake: 0.4s, check_interval: 0.2s, on_no_data: promote}}
"""


@dataclass(frozen=True)
class Scenario:
    """One command of the sweep: its project and the fleet it runs against, set up in process."""

    argv: tuple[str, ...]
    make: Callable[[Path], Path]
    setup: Callable[[Path], None]
    #: What the command achieved once the next command proceeded: these environments and their status.
    goal: Mapping[str, str]

    @property
    def line(self) -> str:
        return f"squals {shlex.join(self.argv)}"


def _shop(root: Path) -> Path:
    """A project whose squals file has one command in every hook stage and one exit test."""
    project = make_project(root)
    (project.path / "squals.yml").write_text(SQUALS_FILE.format(python=sys.executable))
    git(project.path, "add", "squals.yml")
    git(project.path, "commit", "-q", "-m", "squals file")
    return project.path


def _experiment_shop(root: Path) -> Path:
    """The experiments' shop (green converts more), whose promotions do not wait for traffic to bake."""
    path = make_shop(root).path
    for name in ("squals.yml", "variants/green.yml"):
        file = path / name
        file.write_text(
            file.read_text().replace("check_interval: 0.2s}", "check_interval: 0.2s, on_no_data: promote}")
        )
    git(path, "commit", "-q", "-am", "promote without waiting for traffic")
    return path


def _lifecycle(path: Path) -> Lifecycle:
    return lifecycle(Project(path), load(path / "squals.yml"))


def _prod_1(path: Path) -> None:
    lc = _lifecycle(path)
    assert lc.deploy(1).ok and lc.promote(1).ok


def _prod_1_ready_2(path: Path) -> None:
    _prod_1(path)
    assert _lifecycle(path).deploy(2).ok


def _prod_2_postprod_1(path: Path) -> None:
    _prod_1_ready_2(path)
    assert _lifecycle(path).promote(2).ok


def _experiment_decided(path: Path) -> None:
    """pr-1 is prod; an experiment (for PR 7) has seen enough visitors for its next tick to promote green."""
    _prod_1(path)
    started = from_lifecycle(_lifecycle(path)).start(pr=7)
    assert started.started and started.url
    visit(started.url, 300)


SCENARIOS = {
    s.argv[0] if s.argv[0] != "experiment" else "experiment tick": s
    for s in (
        Scenario(("deploy", "--pr", "2", "--skip-gates"), _shop, _prod_1, {"pr-2": "ready"}),
        Scenario(("promote", "--pr", "2"), _shop, _prod_1_ready_2, {"pr-2": "prod", "pr-1": "postprod"}),
        # a second rollback swaps back: one of the two is prod, whichever the user's last command made it
        Scenario(("rollback",), _shop, _prod_2_postprod_1, {}),
        Scenario(("experiment", "tick"), _experiment_shop, _experiment_decided, {"pr-7": "prod"}),
    )
}


@dataclass
class Case:
    """A project of one scenario, set up and ready for its command."""

    scenario: Scenario
    path: Path

    def squals(self, *argv: str, fault: str | None = None, trace: Path | None = None) -> Run:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        env.pop(FAULT_AT_ENV, None)
        env.pop(FAULT_TRACE_ENV, None)
        if fault:
            env[FAULT_AT_ENV] = fault
        if trace:
            env[FAULT_TRACE_ENV] = str(trace)
        report = ("--report", "none") if argv[0] in ("deploy", "promote", "rollback") else ()
        done = subprocess.run(
            [*SQUALS, *argv, *report], cwd=self.path, env=env, capture_output=True, text=True, timeout=180
        )
        return Run(argv, done.returncode, done.stdout + done.stderr)

    def close(self) -> None:
        """Stop everything the case started (islands, Dealers)."""
        stop_everything(self.path)


@dataclass(frozen=True)
class Run:
    argv: tuple[str, ...]
    code: int
    output: str  # stdout and stderr

    @property
    def line(self) -> str:
        return f"squals {shlex.join(self.argv)}"


def start(scenario: Scenario, root: Path) -> Case:
    """A fresh project with ``scenario``'s fleet running."""
    case = Case(scenario, scenario.make(root))
    try:
        scenario.setup(case.path)
    except BaseException:
        case.close()
        raise
    return case


def steps(scenario: Scenario, root: Path) -> list[str]:
    """The kill points a clean run of ``scenario``'s command reaches, in order."""
    case = start(scenario, root)
    try:
        trace = root / "trace"
        run = case.squals(*scenario.argv, trace=trace)
        assert run.code == 0, run.output
        return trace.read_text().split()
    finally:
        case.close()


@dataclass(frozen=True)
class Row:
    """One line of the reliability table."""

    command: str
    step: str
    sees: str
    holds: str

    def markdown(self) -> str:
        return f"| `{self.command}` | `{self.step}` | {self.sees} | {self.holds} |"


def sweep_one(scenario: Scenario, step: str, root: Path) -> Row:
    """Kill the command at ``step``, check the state and prod, run the next command, check again."""
    case = start(scenario, root)
    try:
        killed = case.squals(*scenario.argv, fault=step)
        assert killed.code == -signal.SIGKILL, f"{step}: not killed there ({killed.code}): {killed.output}"
        holds = check(case, f"after a kill at {step}")
        sees = follow(case, step)
        check(case, f"after the next command at {step}", settled=True)
        return Row(scenario.line, step, sees, holds)
    finally:
        case.close()


def follow(case: Case, step: str) -> str:
    """Run the command again as a user would: when it stops, run the `squals ...` it names, then again."""
    said: list[str] = []
    for _ in range(3):
        run = case.squals(*case.scenario.argv)
        if run.code == 0:
            said.append(f"`{run.line}` proceeds")
            return "; then ".join(said)
        errors = [ln for ln in run.output.splitlines() if "error:" in ln]
        assert len(errors) <= 1, f"{step}: {run.line} printed its failure more than once: {run.output}"
        told = [ln for ln in run.output.splitlines() if "`squals " in ln]
        if not told and errors and _reached(case):  # the killed run got there: the refusal says so
            said.append(f"`{run.line}` stops: {_why(errors[0])}")
            return "; then ".join(said)
        assert told, f"{step}: {run.line} neither proceeded nor said what to run: {run.output}"
        named = re.findall(r"`(squals [^`]+)`", told[-1])  # the last one is what to run
        fix = case.squals(*shlex.split(named[-1])[1:])
        assert fix.code == 0, f"{step}: `{named[-1]}` as told failed: {fix.output}"
        said.append(f"`{run.line}` stops: {_why(told[-1])}, run `{named[-1]}`")
    raise AssertionError(f"{step}: still refused after running what it said three times: {said}")


def _reached(case: Case) -> bool:
    """Whether the state holds what the scenario's command is for."""
    with open_store(case.path) as store:
        envs = store.read().environments()
    goal = case.scenario.goal
    return bool(goal) and all(name in envs and envs[name].status == want for name, want in goal.items())


def _why(line: str) -> str:
    """Why a command stopped, without what differs between runs (pids, times, commits)."""
    if "no longer running" in line:
        return "stale lock of the killed run"
    said = line.split("error:", 1)[-1].strip().rstrip(".")
    said = re.sub(r"\b[0-9a-f]{12}\b", "<commit>", re.sub(r"\(pid [^)]*\)", "(pid …)", said))
    return f"“{said}”"


def check(case: Case, when: str, *, settled: bool = False) -> str:
    """The invariants of every fault: documents parse, one prod, prod serves through the Dealer, no
    environment has two processes; settled (after the next command): no lock left. Returns what the state
    holds, for the table."""
    with open_store(case.path) as store:
        snapshot = store.read()  # raises on a document that does not parse
        envs = snapshot.environments()
        locks = sorted(snapshot.locks())
    prods = [e.name for e in envs.values() if e.status == "prod"]
    assert len(prods) == 1, f"{when}: prod is {prods}"
    status = case.squals("status")
    assert status.code == 0, f"{when}: squals status failed: {status.output}"
    dealer = dealer_status(case.path / ".squals" / "dealer")
    assert dealer.state == "running" and dealer.url, f"{when}: the Dealer is {dealer.state}"
    answered = get(dealer.url)
    assert answered[0] == 200, f"{when}: prod answered {answered} through the Dealer"
    for name in envs:
        apps = _apps_of(case.path, name)
        assert len(apps) <= 1, f"{when}: {name} runs twice: {apps}"
    live = sorted((e for e in envs.values() if e.status != "retired"), key=lambda e: e.name)
    recorded = {e.name: round(e.traffic_share, 1) for e in live if e.traffic_share > 0}
    routed = _shares(DealerTraffic(case.path / ".squals" / "dealer").routing())
    if settled:
        assert not locks, f"{when}: locks left: {locks}"
        reached = {name: envs[name].status if name in envs else "absent" for name in case.scenario.goal}
        assert reached == case.scenario.goal, f"{when}: the command did not get there: {reached}"
        active = [e.id for e in snapshot.experiments().values() if e.status not in ("decided", "stopped")]
        assert not active, f"{when}: experiments left unfinished: {active}"
        assert routed == recorded, f"{when}: the Dealer routes {routed}, the state records {recorded}"
    fleet = ", ".join(
        f"{e.name} {e.status}" + (f" {e.traffic_share:g} %" if e.status in ("prod", "blue") else "")
        for e in live
    )
    fleet += f"; lock {', '.join(locks)} (stale)" if locks else "; no lock"
    if routed != recorded:
        fleet += "; the Dealer routes " + ", ".join(f"{k} {v:g} %" for k, v in routed.items())
    return fleet


def _shares(routing: Mapping[str, float]) -> dict[str, float]:
    return {name: round(share, 1) for name, share in sorted(routing.items()) if share > 0}


def _apps_of(project: Path, env: str) -> list[int]:
    """Live processes of ``project`` whose environment says they belong to ``env``."""
    found = []
    for proc in psutil.process_iter():
        try:
            if (
                proc.environ().get("SQUALS_ENV") == env
                and proc.status() != psutil.STATUS_ZOMBIE
                and Path(proc.cwd()).is_relative_to(project)
            ):
                found.append(proc.pid)
        except psutil.Error:
            continue
    return found


def table(rows: list[Row]) -> str:
    head = "| command | killed at | what the user sees next | what the state holds after the kill |\n"
    return head + "|---|---|---|---|\n" + "\n".join(r.markdown() for r in rows) + "\n"


def documented() -> dict[tuple[str, str], str]:
    """The rows docs/reliability.md holds, by (command, step)."""
    rows = {}
    for line in DOC.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0].startswith("`squals"):
            rows[(cells[0].strip("`"), cells[1].strip("`"))] = line
    return rows
