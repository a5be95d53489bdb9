"""``squals demo``: the whole story on ``examples/shop``, in a temporary repository, in well under a minute.

1. main is deployed as the first prod (PR #1);
2. PR #2 changes the shop: its island ``pr-2`` is provisioned and the exit tests run against it;
3. PR #2 is promoted blue/green while synthetic visitors shop through the Dealer (loopback only, bounded);
4. status: who serves what, with the Dealer's tallies;
5. rollback: one traffic switch back to pr-1;
6. promote again: pr-2 rolls forward.

After each step it prints the markdown the PR comment would carry. Whatever happens, everything it started
(apps, the Dealer, worktrees, the load) is stopped and the temporary repository removed (unless ``keep``).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from squals_action.errors import EXIT_FAILURE, EXIT_OK, SqualsError, UsageError
from squals_action.lifecycle import machine
from squals_action.lifecycle.engine import Lifecycle, Outcome
from squals_action.lifecycle.loadgen import SyntheticLoad
from squals_action.lifecycle.project import ProjectOptions, open_project
from squals_action.own_files import OWN_DIR
from squals_action.report.lifecycle import markdown, progress_for

#: Git identity of the demo's own commits (the user's git config is not needed, nor touched).
_IDENTITY = {
    "GIT_AUTHOR_NAME": "squals-demo",
    "GIT_AUTHOR_EMAIL": "demo@squals.invalid",
    "GIT_COMMITTER_NAME": "squals-demo",
    "GIT_COMMITTER_EMAIL": "demo@squals.invalid",
}


def find_example(example: Path | None) -> Path:
    """The folder given, else ``examples/shop`` from the wheel, this checkout or the current directory."""
    if example is not None:
        candidates = [example]
    else:
        package = Path(__file__).resolve().parent
        candidates = [
            package / "examples" / "shop",
            package.parent / "examples" / "shop",
            Path.cwd() / "examples" / "shop",
        ]
    for candidate in candidates:
        if (candidate / "squals.yml").is_file():
            return candidate.resolve()
    raise UsageError(
        "squals demo: examples/shop not found (run it from the Squals checkout, or pass --example DIR)"
    )


def _git(cwd: Path, *args: str) -> str:
    env = {**os.environ, **_IDENTITY}
    out = subprocess.run(
        ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    if out.returncode != 0:
        raise SqualsError(f"git {' '.join(args)} failed in {cwd}: {out.stderr.strip()[:300]}")
    return out.stdout.strip()


def demo_squals_file(text: str, bake: float) -> str:
    """The shop's squals file with a short bake, frequent checks, a 25 % blue share, p95 bound 2 s."""
    interval = max(0.2, min(1.0, bake / 4))
    text = re.sub(r"(?m)^(\s*bake:\s*)\S+", rf"\g<1>{bake:g}s", text)
    text = re.sub(r"(?m)^(\s*check_interval:\s*)\S+", rf"\g<1>{interval:g}s", text)
    # A shared laptop or CI runner is no production server: a roomier latency bound keeps the story stable.
    text = re.sub(r"(metric:\s*p95_latency_ms,\s*max:\s*)\d+", r"\g<1>2000", text)
    return re.sub(r"(?m)^(\s*blue_share:\s*)\S+", r"\g<1>25%", text)


def prepare(source: Path, root: Path, bake: float) -> tuple[Path, dict[str, str]]:
    """A git repository with the shop on main (commit of PR #1) and a change on a branch (PR #2)."""
    repo = root / "shop"
    shutil.copytree(source, repo, ignore=shutil.ignore_patterns("__pycache__", OWN_DIR, "*.pyc"))
    squals = repo / "squals.yml"
    squals.write_text(demo_squals_file(squals.read_text(encoding="utf-8"), bake), encoding="utf-8")
    (repo / ".gitignore").write_text(".squals/\n__pycache__/\n")
    _git(root, "init", "-q", "--bare", "origin.git")
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "remote", "add", "origin", str(root / "origin.git"))
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "The shop")
    _git(repo, "push", "-q", "origin", "main")
    commits = {"pr-1": _git(repo, "rev-parse", "HEAD")}
    _git(repo, "checkout", "-q", "-b", "bigger-button")
    app = repo / "app.py"
    app.write_text(
        app.read_text(encoding="utf-8").replace("One very good product.", "Two very good products.")
    )
    _git(repo, "commit", "-q", "-am", "Sell two products")
    commits["pr-2"] = _git(repo, "rev-parse", "HEAD")
    return repo, commits


class Story:
    """Prints the chapters and the PR comments to ``out``."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self.chapter = 0

    def title(self, text: str) -> None:
        self.chapter += 1
        print(f"\n━━ {self.chapter}. {text}", file=self.out, flush=True)

    def say(self, text: str) -> None:
        print(f"   {text}", file=self.out, flush=True)

    def comment(self, outcome: Outcome) -> None:
        print("   ┌─ the PR comment says:", file=self.out)
        for line in markdown(outcome, heading_level=3).splitlines():
            print(f"   │ {line}", file=self.out)
        print("   └─", file=self.out, flush=True)


def status_lines(lifecycle: Lifecycle) -> Iterator[str]:
    """Who serves what, and what the Dealer counted per environment."""
    fleet = lifecycle.fleet()
    tallies = lifecycle.traffic.tallies()
    row = "{:<12} {:<10} {:>8}  {:>8} {:>6} {:>7}  {}"
    yield row.format("environment", "status", "traffic", "requests", "errors", "p95 ms", "url")
    for env in sorted(fleet.values(), key=lambda e: e.name):
        if env.status is machine.Status.RETIRED:
            continue
        t = tallies.get(env.name)
        reqs, errs = (t.activations, t.errors) if t else (0, 0)
        p95 = f"{t.latency_p95_ms:.1f}" if t and t.latency_p95_ms is not None else "-"
        share = f"{env.share:g} %" if env.status in machine.ROUTED else ""
        yield row.format(env.name, env.status.value, share, reqs, errs, p95, env.url or "")
    yield f"public URL (the Dealer): {lifecycle.traffic.url() or '-'}"


def run_demo(
    example: Path | None = None, bake: float = 3.0, keep: bool = False, out: IO[str] | None = None
) -> int:
    """Tell the story; returns the exit code (0 when every step did what the story says)."""
    stream = out or sys.stdout
    started = time.monotonic()
    source = find_example(example)
    root = Path(tempfile.mkdtemp(prefix="squals-demo-"))
    story = Story(stream)
    lifecycle: Lifecycle | None = None
    load: SyntheticLoad | None = None
    ok = True
    saved_env = {k: os.environ.get(k) for k in (*_IDENTITY, "PATH")}
    # The shop starts with `python ...`: make that the interpreter running the demo.
    os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
    os.environ.update(_IDENTITY)
    try:
        print(f"squals demo: the shop in a temporary repository at {root}", file=stream)
        repo, commits = prepare(source, root, bake)
        lifecycle = open_project(ProjectOptions(repo=repo), progress_for(stream))
        rollout = lifecycle.manifest.rollout
        story.say(
            f"rollout: blue share {rollout.blue_share:g} %, bake {rollout.bake:g} s, "
            f"KPIs {', '.join(k.metric for k in rollout.kpis) or 'none'}"
        )

        def step(outcome: Outcome, expect: bool = True) -> Outcome:
            nonlocal ok
            story.comment(outcome)
            if outcome.ok != expect:
                ok = False
                raise _StoryBroken(outcome.message)
            return outcome

        story.title("main becomes the first prod (PR #1)")
        step(lifecycle.deploy(1, commits["pr-1"]))
        first = step(lifecycle.promote(1))
        story.say(f"the shop is live at {first.public_url}")

        story.title("PR #2 opens: gates, hooks, its island pr-2, exit tests")
        step(lifecycle.deploy(2, commits["pr-2"]))

        story.title("label `promote` on PR #2: blue/green under synthetic traffic")
        load = SyntheticLoad(first.public_url or "").start()
        time.sleep(0.5)
        step(lifecycle.promote(2))

        story.title("squals status")
        for line in status_lines(lifecycle):
            story.say(line)

        story.title("label `rollback`: prod and postprod swap, one traffic switch")
        step(lifecycle.rollback())

        story.title("PR #2 is promoted again (roll forward)")
        step(lifecycle.promote(2))
        time.sleep(0.3)
        summary = load.stop()
        load = None
        story.say(
            f"synthetic traffic: {summary.requests} requests ({summary.checkouts} checkouts), "
            f"{summary.failed} failed" + (f": {', '.join(summary.first_failures)}" if summary.failed else "")
        )
        if summary.failed:
            ok = False
    except _StoryBroken as exc:
        story.say(f"the story stopped here: {exc}")
    except SqualsError as exc:
        ok = False
        story.say(f"the story stopped here: {exc.one_line()}")
    finally:
        story.title("squals down: stop everything the demo started")
        _cleanup(lifecycle, load, root, keep, story.say)
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    wall = time.monotonic() - started
    story.say(f"demo {'finished' if ok else 'FAILED'} in {wall:.1f} s")
    return EXIT_OK if ok else EXIT_FAILURE


class _StoryBroken(Exception):
    """A step did not end as the story says it should."""


def _cleanup(
    lifecycle: Lifecycle | None,
    load: SyntheticLoad | None,
    root: Path,
    keep: bool,
    say: Callable[[str], None],
) -> None:
    if load is not None:
        load.stop()
    if lifecycle is not None:
        try:
            say(lifecycle.down().message)
        except SqualsError as exc:  # the state may be unreachable: still stop the processes
            say(f"recording down failed ({exc.one_line()}); stopping processes directly")
            with contextlib.suppress(SqualsError):
                lifecycle.provider.down()
            lifecycle.traffic.stop()
    if keep:
        say(f"kept the repository at {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)
        say(f"removed {root}")
