"""Wall time of `squals-action` on a no-op event (an unrelated label) against `python -c pass`, same run.

The no-op path must stay cheap because every label, edit and assignment on every PR starts the action:
goal < 0.5 s. Usage: ``python bench/noop.py [--runs N]``. Prints medians and the difference and ratio.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EVENT = ROOT / "tests" / "fixtures" / "github" / "events" / "pull_request.labeled-other.json"
GOAL = 0.5


def timed(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(
        argv, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60
    )
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    action = str(Path(sys.executable).parent / "squals-action")
    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "INPUT_"))}
        env.update(
            {
                "GITHUB_EVENT_NAME": "pull_request",
                "GITHUB_EVENT_PATH": str(EVENT),
                "GITHUB_OUTPUT": str(Path(tmp) / "output"),
                "INPUT_GITHUB-TOKEN": "ghs_bench",
            }
        )
        timed([action], env)  # warm the file cache and bytecode once
        timed([sys.executable, "-c", "pass"], env)
        base, noop = [], []
        for _ in range(args.runs):  # interleaved so both see the same machine load
            base.append(timed([sys.executable, "-c", "pass"], env))
            noop.append(timed([action], env))
    b, n = statistics.median(base), statistics.median(noop)
    print(f"python -c pass        median {b * 1000:7.1f} ms  (min {min(base) * 1000:.1f}, {args.runs} runs)")
    print(f"squals-action no-op   median {n * 1000:7.1f} ms  (min {min(noop) * 1000:.1f}, {args.runs} runs)")
    verdict = "met" if n < GOAL else "NOT met"
    print(f"difference {(n - b) * 1000:.1f} ms; ratio {n / b:.2f}x; goal < {GOAL} s: {verdict}")
    return 0 if n < GOAL else 1


if __name__ == "__main__":
    sys.exit(main())
