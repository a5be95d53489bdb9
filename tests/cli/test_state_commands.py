"""``squals status``, ``squals history [ENV]``, ``squals unlock ENV`` on a real state branch: text, JSON."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from squals_action.cli import main
from squals_action.state import EnvironmentState, ExperimentState, Transition, open_store
from tests.support.state import copy_clone
from tests.support.terminal import ANSI, on_terminal

T0 = datetime(2026, 5, 1, 12, 0, 0, tzinfo=UTC)


def populate(work: Path, remote: str | None = "origin") -> Path:
    """State with prod, a PR island, a lock on prod, a running, a decided and a layered experiment whose
    promotion failed."""
    with open_store(work, remote=remote) as store:
        store.put_environment(
            EnvironmentState(
                "prod",
                "live",
                version="1.4.0",
                url="http://127.0.0.1:8001",
                traffic_share=90.0,
                updated_at=T0,
            ),
            Transition(
                "promote", "promote pr-7 to prod", environment="prod", pr=7, run_id="70", actor="alice"
            ),
        )
        store.put_environment(
            EnvironmentState(
                "pr-9",
                "ready",
                version="1.5.0-rc",
                url="http://127.0.0.1:8002",
                traffic_share=10.0,
                pr=9,
                updated_at=T0,
            ),
            Transition(
                "deploy",
                "deploy pr-9 <b>[bold]x[/bold]</b>",
                environment="pr-9",
                pr=9,
                run_id="90",
                actor="bob",
            ),
        )
        store.acquire_lock("prod", pr=9, run_id="91", actor="bob", ttl=None, now=T0)
        store.put_experiment(
            ExperimentState(
                "checkout-color",
                "sha256:abc",
                ("control", "green"),
                split={"control": 50, "green": 50},
                observations={"control": {"visitors": 10.0}},
                started_at=T0,
                extra={"url": "http://127.0.0.1:8009"},
            ),
            Transition("experiment-start", "start checkout-color", run_id="95"),
        )
        store.put_experiment(
            ExperimentState(
                "old",
                "sha256:def",
                ("a", "b"),
                status="decided",
                decision={"outcome": "promote", "winner": "b"},
            ),
            Transition("experiment-decide", "old decided", run_id="96"),
        )
        slot = {"experiment": "ui-copy", "layer": "ui", "range": [0.0, 0.4], "weights": {"a": 1, "b": 1}}
        store.put_experiment(
            ExperimentState(
                "ui-copy",
                "sha256:fed",
                ("a", "b"),
                status="promotion-failed",
                decision={"outcome": "promotion-failed", "winner": "b"},
                extra={"traffic": {"kind": "layers", "dealer_dir": "/d", "slot": slot}},
            ),
            Transition("experiment-promotion-failed", "ui-copy's promotion failed", run_id="97"),
        )
    return work


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory, template: tuple[Path, Path]) -> Path:
    """Shared by the read-only tests of this module."""
    root = tmp_path_factory.mktemp("state-cli")
    origin = Path(shutil.copytree(template[0], root / "origin.git", symlinks=True))
    return populate(copy_clone(template[1], origin, root / "cli"))


@pytest.fixture
def own_repo(make_clone: Callable[..., Path]) -> Path:
    """For a test that changes the state."""
    return populate(make_clone("cli"))


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_status_json(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["status", "--repo", str(repo), "--format", "json"], capsys)
    assert code == 0
    report = json.loads(out)
    assert [e["name"] for e in report["environments"]] == ["pr-9", "prod"]
    prod = report["environments"][1]
    assert (
        prod["version"] == "1.4.0"
        and prod["traffic_share"] == 90.0
        and prod["url"] == "http://127.0.0.1:8001"
    )
    assert prod["lock"] == {
        "environment": "prod",
        "pr": 9,
        "acquired_at": "2026-05-01T12:00:00Z",
        "run_id": "91",
        "actor": "bob",
        "expired": False,
    }
    assert [x["id"] for x in report["experiments"]] == ["checkout-color", "ui-copy"]
    assert report["experiments"][1]["placement"] == "layer ui 0-40 %, app-side; alone on prod's Dealer"
    assert len(report["commit"]) == 40
    assert report["branch"] == "squals/state" and report["remote"] == "origin"


def test_status_text_is_a_table_of_environments_and_running_experiments(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(["status", "--repo", str(repo)], capsys)
    assert code == 0
    prod_row = next(line for line in out.splitlines() if " prod " in line)
    lock = "PR #9 (bob, run 91) since 2026-05-01T12:00:00Z"
    for cell in ("1.4.0", "live", "90 %", "http://127.0.0.1:8001", lock):
        assert cell in prod_row
    assert "checkout-color" in out and "control 50 %, green 50 %" in out
    assert "http://127.0.0.1:8009" in out  # a running experiment's own Dealer
    assert "old" not in out.split("Active experiments")[1]
    # an experiment whose promotion failed still runs: shown with its state and its place on prod's Dealer
    assert "ui-copy" in out and "promotion-failed" in out and "layer ui 0-40 %, app-side" in out
    code, out, _ = run(["status", "--repo", str(repo), "--all"], capsys)
    assert "promote b" in out


def test_status_on_a_narrow_terminal_keeps_every_cell_whole(repo: Path) -> None:
    """80 columns: the figures, lock, version and time go to a second table instead of being cut to "…"."""
    code, raw = on_terminal(repo, "status")
    text = ANSI.sub("", raw)
    assert code == 0 and ANSI.search(raw), text
    assert "…" not in text and max(len(line) for line in text.splitlines()) <= 80, text
    names = [line.split()[1] for line in text.splitlines() if line.startswith("│ p")]
    assert names == ["pr-9", "prod", "pr-9", "prod"], text  # both tables, one row per environment each
    assert "http://127.0.0.1:8001" in text and "no data" in text
    assert "PR #9 (bob, run 91) since" in text


def test_history_of_one_environment_and_json(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["history", "prod", "--repo", str(repo), "--format", "json"], capsys)
    assert code == 0
    entries = json.loads(out)
    assert [(e["event"], e["pr"], e["actor"]) for e in entries] == [
        ("lock", 9, "bob"),
        ("promote", 7, "alice"),
    ]
    code, out, _ = run(["history", "--repo", str(repo), "--limit", "4"], capsys)
    assert code == 0
    assert "experiment-promotion-failed" in out and "experiment-decide" in out and "experiment-start" in out
    assert "lock" in out and "deploy" not in out
    code, out, _ = run(["history", "pr-9", "--repo", str(repo)], capsys)
    assert "deploy pr-9 <b>[bold]x[/bold]</b>" in out  # untrusted text printed as is, never as markup


def test_unlock_breaks_the_lock_and_records_the_actor(
    own_repo: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITHUB_ACTOR", "carol")
    code, out, _ = run(["unlock", "prod", "--repo", str(own_repo)], capsys)
    assert code == 0
    assert out == "unlocked prod: the lock of PR #9 (since 2026-05-01T12:00:00Z) was broken by carol\n"
    code, out, _ = run(
        ["history", "prod", "--repo", str(own_repo), "--format", "json", "--limit", "1"], capsys
    )
    assert [(e["event"], e["actor"]) for e in json.loads(out)] == [("break-lock", "carol")]
    code, out, _ = run(
        ["unlock", "prod", "--repo", str(own_repo), "--actor", "dave", "--format", "json"], capsys
    )
    assert code == 0 and json.loads(out) == {"environment": "prod", "actor": "dave", "broken": None}


def test_errors_are_one_line_with_an_exit_code(
    repo: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _, err = run(["unlock", "../etc", "--repo", str(repo)], capsys)
    assert code == 1 and err.count("\n") == 1 and "invalid environment name '../etc'" in err
    code, _, err = run(["status", "--repo", str(repo), "--remote", "nowhere"], capsys)
    assert code == 1 and err.startswith("squals: error: the repository at ")
    assert "has no remote 'nowhere' (it has: origin)" in err and err.count("\n") == 1
    code, _, err = run(["history", "--repo", str(repo), "--limit", "0"], capsys)
    assert code == 2 and "expected a whole number >= 1" in err


def test_an_unreachable_origin_suggests_local_state(make_clone: Callable[..., Path]) -> None:
    """The state remote cannot be reached (nothing listens on its port): one line that names the way out."""
    work = make_clone("offline")
    with socket.socket() as sock:  # a port on 127.0.0.1 that nothing listens on once this closes
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    subprocess.run(
        ["git", "-C", str(work), "remote", "set-url", "origin", f"http://127.0.0.1:{port}/shop.git"],
        check=True,
        timeout=30,
    )
    squals = [sys.executable, "-m", "squals_action.cli"]
    offline = subprocess.run(
        [*squals, "status", "--repo", str(work)], capture_output=True, text=True, timeout=60, check=False
    )
    assert offline.returncode == 1 and offline.stderr.count("\n") == 1, offline.stderr
    assert offline.stderr.startswith("squals: error: cannot fetch state branch 'squals/state' from 'origin'")
    assert offline.stderr.rstrip().endswith(
        "if 'origin' cannot be reached from here, --local-state keeps the state in this repository instead"
    )
    local = subprocess.run(
        [*squals, "status", "--repo", str(work), "--local-state"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert local.returncode == 0 and "does not exist in this repository (local state)" in local.stdout


def test_status_before_any_state(make_clone: Callable[..., Path], capsys: pytest.CaptureFixture[str]) -> None:
    work = make_clone("empty")
    code, out, _ = run(["status", "--repo", str(work)], capsys)
    assert code == 0 and "No state yet: branch squals/state does not exist on origin." in out


def test_status_history_unlock_in_a_repository_without_a_remote(
    make_local: Callable[..., Path], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    laptop = make_local()
    code, out, _ = run(["status", "--repo", str(laptop)], capsys)
    assert code == 0 and "does not exist in this repository (local state)" in out
    populate(laptop, remote=None)
    code, out, _ = run(["status", "--repo", str(laptop), "--format", "json"], capsys)
    report = json.loads(out)
    assert code == 0 and report["remote"] is None and report["commit"] == _rev(laptop, "squals/state")
    assert [e["name"] for e in report["environments"]] == ["pr-9", "prod"]
    code, out, _ = run(["status", "--repo", str(laptop)], capsys)
    assert code == 0 and ", local)" in out and "PR #9 (bob, run 91) since 2026-05-01T12:00:00Z" in out
    monkeypatch.setenv("GITHUB_ACTOR", "carol")
    code, out, _ = run(["unlock", "prod", "--repo", str(laptop), "--remote", "upstream"], capsys)
    assert code == 0 and "was broken by carol" in out  # no remote at all: whatever --remote names
    code, out, _ = run(["history", "prod", "--repo", str(laptop), "--format", "json"], capsys)
    assert [(e["event"], e["actor"]) for e in json.loads(out)] == [
        ("break-lock", "carol"),
        ("lock", "bob"),
        ("promote", "alice"),
    ]
    code, out, _ = run(["history", "--repo", str(laptop)], capsys)
    assert code == 0 and "squals/state, local, newest first" in out and "break-lock" in out


def test_local_state_in_a_clone_that_has_an_origin(
    make_clone: Callable[..., Path], origin: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    work = populate(make_clone("both"), remote=None)  # state on the clone's own branch only
    code, out, _ = run(["status", "--repo", str(work), "--local-state", "--format", "json"], capsys)
    assert code == 0 and json.loads(out)["remote"] is None and len(json.loads(out)["environments"]) == 2
    code, out, _ = run(["status", "--repo", str(work), "--remote", "", "--format", "json"], capsys)
    assert code == 0 and json.loads(out)["commit"] == _rev(work, "squals/state")
    code, out, _ = run(["status", "--repo", str(work)], capsys)  # origin's state: none yet
    assert code == 0 and "does not exist on origin" in out
    assert (
        subprocess.run(
            ["git", "-C", str(origin), "rev-parse", "--verify", "--quiet", "squals/state"],
            capture_output=True,
            timeout=30,
            check=False,
        ).returncode
        != 0
    )


def _rev(repo: Path, ref: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), "rev-parse", ref], capture_output=True, text=True, timeout=30, check=True
    ).stdout.strip()


def test_the_state_commands_import_no_git_at_start_up() -> None:
    probe = (
        "import argparse, sys; from squals_action.cli import state_commands; "
        "state_commands.register(argparse.ArgumentParser().add_subparsers()); "
        "print(sorted(m for m in ('git', 'gitdb', 'rich', 'jsonschema') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "[]"
