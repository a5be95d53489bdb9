"""Benchmark of the git state store: throughput of 1 and 8 concurrent writers, and one transaction's cost
against a plain ``git commit`` + ``git push`` of one file, all measured in the same run on the same machine.

Run: ``.venv/bin/python bench/state.py`` (one to three minutes, by the machine's load). Every writer is its
own process with its own shallow clone of a bare ``origin``; each transaction increments a counter document
and appends to another.
Goals: 8 writers keep >= 50 % of the single writer's throughput; overhead ratio <= 1.5.

``bench/state.py --history 10000 [--baseline DIR]`` measures instead how a transition's cost grows with the
history (see ``bench/state_history.py``): a transition after 10,000 within 1.5x of one after 100.
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
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from squals_action.state import Documents, Transition, open_store  # noqa: E402
from squals_action.state.trace import TRACE_ENV  # noqa: E402
from tests.support.state import WRITER, clone, git, make_origin, state_log  # noqa: E402


def run_writers(root: Path, writers: int, per_writer: int, trace: bool = False) -> tuple[float, list[int]]:
    """Transitions per second of ``writers`` concurrent processes (first start to last end), and attempts."""
    origin = make_origin(root)
    clones = [clone(origin, root / f"w{i}") for i in range(writers)]
    env = dict(os.environ)
    if trace:
        env[TRACE_ENV] = str(root / "trace.txt")
    procs = [
        subprocess.Popen(
            [sys.executable, str(WRITER), str(c), str(i), str(per_writer)],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for i, c in enumerate(clones)
    ]
    results = []
    for proc in procs:
        out, _ = proc.communicate(timeout=600)
        if proc.returncode != 0:
            raise SystemExit(f"writer failed with {proc.returncode}")
        results.append(json.loads(out))
    total = writers * per_writer
    assert len(state_log(origin)) == total, "lost or extra commits"
    counter = json.loads(git(origin, "show", "squals/state:counters/c.json"))
    assert counter["n"] == total, f"lost update: counter {counter['n']} != {total}"
    start = min(r["start"] for r in results)
    span = max(r["end"] for r in results) - start
    if trace:
        print_trace(root / "trace.txt", writers, start, span)
    return total / span, [a for r in results for a in r["attempts"]]


def print_trace(path: Path, writers: int, start: float, span: float) -> None:
    """Where the writers' time went: seconds per step, and how long no push was in flight (idle branch)."""
    totals: dict[str, list[float]] = {}
    pushes = []
    for line in path.read_text(encoding="ascii").splitlines():
        began, took, _pid, step = line.split()[:4]
        totals.setdefault(step, []).append(float(took))
        if step == "push":
            pushes.append((float(began), float(began) + float(took)))
    busy, reach = 0.0, start
    for begin, end in sorted(pushes):
        busy += max(0.0, end - max(begin, reach))
        reach = max(reach, end)
    steps = ", ".join(f"{s} {len(t)}x {1000 * statistics.mean(t):.0f} ms" for s, t in sorted(totals.items()))
    print(
        f"  trace, {writers} writer(s): {steps}; a push in flight {busy:.2f} s of {span:.2f} s, "
        f"no push in flight {100 * (1 - busy / span):.0f} %"
    )


def overhead(root: Path, rounds: int) -> tuple[float, float, float, float]:
    """Median seconds of a warm transaction, a cold one (fresh store), ``git commit`` + ``push``; ratio."""
    origin = make_origin(root)
    work = clone(origin, root / "store")
    plain = clone(origin, root / "plain")

    def step(docs: Documents) -> Documents:
        doc = docs.get("counters/c.json", {"schema_version": 1, "n": 0})
        doc["n"] += 1
        docs["counters/c.json"] = doc
        return docs

    store = open_store(work)
    store.transact(step, Transition("count", "warm-up", run_id="warm"))
    warm, cold, baseline = [], [], []
    for i in range(rounds):  # alternate so that load changes hit both sides alike
        t0 = time.perf_counter()
        store.transact(step, Transition("count", f"warm {i}", run_id=f"warm-{i}"))
        warm.append(time.perf_counter() - t0)
        (plain / "counter.txt").write_text(f"{i}\n")
        t0 = time.perf_counter()
        git(plain, "add", "counter.txt")
        git(plain, "commit", "-q", "-m", f"count {i}")
        git(plain, "push", "-q", "origin", "HEAD:refs/heads/main")
        baseline.append(time.perf_counter() - t0)
    for i in range(max(3, rounds // 4)):  # a fresh store each time: fetch, read, write, push
        t0 = time.perf_counter()
        open_store(work).transact(step, Transition("count", f"cold {i}", run_id=f"cold-{i}"))
        cold.append(time.perf_counter() - t0)
    med = statistics.median
    return med(warm), med(cold), med(baseline), med(warm) / med(baseline)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-writer", type=int, default=25, help="transactions of each of the 8 writers")
    parser.add_argument("--single", type=int, default=100, help="transactions of the single writer")
    parser.add_argument("--rounds", type=int, default=2, help="alternating 1-writer / 8-writer rounds")
    parser.add_argument("--overhead-rounds", type=int, default=20, help="rounds of the overhead comparison")
    parser.add_argument(
        "--trace", action="store_true", help=f"log every fetch, build, push, sleep and look (${TRACE_ENV})"
    )
    parser.add_argument("--history", type=int, metavar="N", help="a transition's cost after 100 and after N")
    parser.add_argument("--baseline", type=Path, help="with --history: another checkout measured alike")
    parser.add_argument("--mode", choices=("local", "remote", "both"), default="both", help="with --history")
    args = parser.parse_args()
    if args.history is not None:
        from bench.state_history import run_history

        run_history(args.history, args.mode, args.baseline)
        return
    identity = {"GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@squals.invalid"}
    identity |= {"GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@squals.invalid"}
    for key, value in identity.items():
        os.environ.setdefault(key, value)
    ones, eights, ratios, attempts = [], [], [], []
    with tempfile.TemporaryDirectory(prefix="squals-bench-state-") as tmp:
        base = Path(tmp)
        for r in range(args.rounds):  # alternate, so that the load of a shared machine hits both alike
            for name in (f"one{r}", f"eight{r}", "overhead"):
                (base / name).mkdir(exist_ok=True)
            one, _ = run_writers(base / f"one{r}", 1, args.single, args.trace)
            eight, tries = run_writers(base / f"eight{r}", 8, args.per_writer, args.trace)
            ones.append(one)
            eights.append(eight)
            ratios.append(eight / one)
            attempts += tries
            print(
                f"round {r + 1}: 1 writer {one:6.1f}/s, 8 writers {eight:6.1f}/s, "
                f"kept {100 * eight / one:5.1f} %"
            )
        warm, cold, plain, ratio = overhead(base / "overhead", args.overhead_rounds)
    med = statistics.median
    print(f"1 writer:   {med(ones):6.1f} transitions/s (median of {args.rounds} rounds of {args.single})")
    print(
        f"8 writers:  {med(eights):6.1f} transitions/s (median of {args.rounds} rounds of "
        f"{8 * args.per_writer}, "
        f"exact counters and commit counts; pushes per transition mean {statistics.mean(attempts):.2f}, "
        f"max {max(attempts)})"
    )
    print(f"8 writers keep {100 * med(ratios):5.1f} % of single-writer throughput (goal >= 50 %)")
    print(
        f"one transaction {1000 * warm:6.1f} ms (cold, fresh store with fetch: {1000 * cold:6.1f} ms) vs "
        f"git commit + git push {1000 * plain:6.1f} ms: overhead ratio {ratio:4.2f} (goal <= 1.5)"
    )
    print(f"load average at the end: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
