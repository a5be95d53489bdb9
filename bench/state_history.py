"""How a state transition's cost grows with the history: one writer records N lifecycle-like transitions.

Run through ``bench/state.py --history 10000 [--mode local|remote|both] [--baseline DIR]``. Each measurement
is a worker process (this file with ``--worker``) that imports only the ``squals_action`` of the checkout it
is given, so ``--baseline`` (another checkout: ``git archive <commit> | tar -x -C DIR``) measures the older
code in the same run, alternating with this one.

The workload: 10 environment slots, each a preview environment that is created, updated and retired, then
replaced by the next (500 environments over 10,000 transitions); every transaction reads the whole fleet (as
the lifecycle does) and writes one environment. ``local`` is one repository with its own state branch (a
laptop); ``remote`` is a long-lived clone pushing to a bare ``origin`` (a self-hosted runner). One
repository is brought to 100 transitions, another to N; then 60 more transitions on each, alternately, are
timed (the median, and the mean), so both points are measured in the same minutes under the same load.
Goal: after N within 1.5x of after 100.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SLOTS = 10
ENVIRONMENTS = 500
EARLY = 100


def _git(cwd: Path, *args: str) -> str:
    result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=True)
    return result.stdout


def _repository(root: Path, mode: str) -> tuple[Path, str | None]:
    """The repository the writer uses and its remote (``None``: local state)."""
    work = root / "work"
    _git(root, "init", "-q", "-b", "main", str(work))
    (work / "README.md").write_text("# project\n")
    _git(work, "add", "README.md")
    _git(work, "-c", "user.name=bench", "-c", "user.email=b@squals.invalid", "commit", "-q", "-m", "first")
    if mode == "local":
        return work, None
    origin = root / "origin.git"
    _git(root, "init", "-q", "--bare", "-b", "main", str(origin))
    _git(origin, "config", "receive.autogc", "false")  # as on GitHub: no gc after every push
    _git(work, "remote", "add", "origin", str(origin))
    _git(work, "push", "-q", "origin", "main")
    return work, "origin"


def worker(checkout: Path, mode: str, total: int, sample: int, root: Path) -> dict[str, object]:
    """Two repositories, one brought to ``EARLY`` transitions and one to ``total``; then ``sample`` more on
    each, alternately, timed: both points measured in the same minutes, so the load of a shared machine
    hits them alike."""
    sys.path.insert(0, str(checkout))
    from squals_action.state import Documents, EnvironmentState, StateStore, Transition, open_store, utc_now

    life = max(3, total * SLOTS // ENVIRONMENTS)  # transitions of one environment, creation to retirement

    def transition(store: StateStore, i: int) -> float:
        """Transition ``i`` of the workload on ``store``; its seconds."""
        slot, step = i % SLOTS, (i // SLOTS) % life
        name = f"pr-{(i // SLOTS) // life * SLOTS + slot + 1}"
        status = "preparing" if step == 0 else "retired" if step == life - 1 else "ready"

        def fn(docs: Documents) -> Documents:
            docs.environments()  # the whole fleet, as the lifecycle reads it
            retired = status == "retired"
            docs.put_environment(
                EnvironmentState(
                    name,
                    status,
                    version=f"1.0.{i}",
                    commit=f"{i:040x}",
                    provider="local",
                    handle={} if retired else {"pid": 1000 + i, "port": 20000 + i % 1000},
                    url=None if retired else f"http://127.0.0.1:{20000 + i % 1000}",
                    pr=int(name[3:]),
                    updated_at=utc_now(),
                )
            )
            return docs

        meta = Transition("deploy", f"{status} {name}", environment=name, pr=int(name[3:]), run_id=str(i))
        began = time.perf_counter()
        store.transact(fn, meta)
        return time.perf_counter() - began

    (root / "early").mkdir()
    (root / "late").mkdir()
    small, remote = _repository(root / "early", mode)
    big, _ = _repository(root / "late", mode)
    early: list[float] = []
    late: list[float] = []
    with open_store(small, remote=remote) as young, open_store(big, remote=remote) as old:
        for i in range(EARLY):
            transition(young, i)
        for i in range(total):
            transition(old, i)
        for k in range(sample):
            early.append(transition(young, EARLY + k))
            late.append(transition(old, total + k))
        ref = old.tracking_ref if remote else "squals/state"  # type: ignore[attr-defined]
    objects = dict(line.split(": ", 1) for line in _git(big, "count-objects", "-v").splitlines())
    tree = _git(big, "ls-tree", "-r", "--name-only", ref)
    live = len([p for p in tree.splitlines() if p.startswith("environments/")])
    return {
        "early": early,
        "late": late,
        "packs": int(objects["packs"]),
        "loose": int(objects["count"]),
        "live_environments": live,
    }


def _measure(checkouts: dict[str, Path], mode: str, total: int, sample: int) -> Iterator[tuple[str, Any]]:
    """Each checkout's worker, all at once (the load of a shared machine hits them alike); each result as
    soon as its worker ends (a worker that failed: its error as a string)."""
    with tempfile.TemporaryDirectory(prefix="squals-bench-history-") as tmp:
        procs = {}
        for label, checkout in checkouts.items():
            (Path(tmp) / label).mkdir()
            procs[label] = subprocess.Popen(
                [
                    sys.executable,
                    __file__,
                    "--worker",
                    str(checkout),
                    mode,
                    str(total),
                    str(sample),
                    str(Path(tmp) / label),
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env={**os.environ, "PYTHONPATH": str(checkout)},
            )
        deadline = time.monotonic() + 7200
        while procs:
            ended = [label for label, proc in procs.items() if proc.poll() is not None]
            if not ended and time.monotonic() > deadline:
                for proc in procs.values():
                    proc.kill()
                ended = list(procs)
            for label in ended:
                out, err = procs.pop(label).communicate(timeout=60)
                yield label, json.loads(out) if out.strip() else f"failed: {err.strip()[-2000:]}"
            time.sleep(1)


def _line(label: str, found: dict[str, object]) -> float:
    early, late = found["early"], found["late"]
    assert isinstance(early, list) and isinstance(late, list)
    med, mean = statistics.median, statistics.mean
    ratio: float = med(late) / med(early)
    print(
        f"  {label:<9} after {EARLY}: median {1000 * med(early):6.1f} ms (mean {1000 * mean(early):6.1f}); "
        f"after N: median {1000 * med(late):6.1f} ms (mean {1000 * mean(late):6.1f}); ratio {ratio:4.2f} "
        f"(mean {mean(late) / mean(early):4.2f}); packs {found['packs']}, loose objects {found['loose']}, "
        f"live environment documents {found['live_environments']}",
        flush=True,
    )
    return ratio


def run_history(total: int, mode: str, baseline: Path | None, sample: int = 60) -> None:
    """Print, per mode, the cost after 100 and after ``total`` of this code (and the baseline's)."""
    checkouts = {"this": ROOT} | ({"baseline": baseline.resolve()} if baseline is not None else {})
    print(
        f"history {total} transitions, {ENVIRONMENTS} environments created and retired ({SLOTS} alive), "
        f"{sample} transitions measured at each point; load average {os.getloadavg()[0]:.1f} on "
        f"{os.cpu_count()} CPUs"
    )
    for one_mode in ("local", "remote") if mode == "both" else (mode,):
        print(f"{one_mode}:")
        ratios = {}
        for label, result in _measure(checkouts, one_mode, total, sample):
            if isinstance(result, str):
                print(f"  {label:<9} {result}")
            else:
                ratios[label] = _line(label, result)
        if "this" in ratios:
            verdict = "met" if ratios["this"] <= 1.5 else "NOT met"
            print(f"  goal after N within 1.5x of after {EARLY}: {verdict}", flush=True)
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--worker", nargs=5, metavar=("CHECKOUT", "MODE", "TOTAL", "SAMPLE", "DIR"))
    args = parser.parse_args()
    checkout, mode, total, sample, root = args.worker
    print(json.dumps(worker(Path(checkout), mode, int(total), int(sample), Path(root))))


if __name__ == "__main__":
    main()
