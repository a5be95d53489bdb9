"""Benchmark: `squals validate` against `check-jsonschema` on the same large squals file, in one run.

Generates a valid squals file with 5,000 entries spread over test gates, hooks, exit tests and shared
resources, then times both tools as subprocesses (start-up included, as a user runs them) several times
and prints the best wall time of each and their ratio. squals does more (duplicate keys, semantic checks,
path checks, the model); the goal is a ratio <= 0.5.

    python bench/validate.py [--entries 5000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SCHEMA = REPO / "schemas" / "squals.schema.json"


def generate(entries: int) -> str:
    """A valid squals file with ``entries`` commands and resources."""
    quarter = entries // 4
    lines = [
        "version: 1",
        "name: bench",
        "app:",
        "  start: python app.py",
        "  env: {LOG_LEVEL: info}",
        "gates:",
        "  test:",
    ]
    for i in range(quarter):
        lines.append(
            f"    - {{name: test-{i}, run: pytest tests/t{i}.py -q, kind: unit, timeout: 5m, "
            f'paths: ["src/m{i}/**"], env: {{SHARD: "{i}"}}}}'
        )
    lines.append("hooks:")
    stages = ("before_preprod", "after_preprod", "promote", "after_postprod")
    per_stage = quarter // len(stages)
    for stage in stages:
        lines.append(f"  {stage}:")
        for i in range(per_stage):
            lines.append(f"    - {{name: {stage}-h{i}, run: ./scripts/{stage}.sh {i}, timeout: 90s}}")
    lines.append("exit_tests:")
    for i in range(entries - 2 * quarter - per_stage * len(stages)):
        lines.append(f"  - {{name: e2e-{i}, run: pytest tests/e2e/test_{i}.py, timeout: 10m}}")
    lines.append("shared:")
    for i in range(quarter):
        lines.append(f"  res-{i}: {{type: redis, options: {{size: small, shard: {i}}}}}")
    lines.append("rollout: {blue_share: 10%, bake: 15m, kpis: [{metric: error_rate, max: 1%}]}")
    return "\n".join(lines) + "\n"


def best_time(argv: list[str], repeat: int, expect: int) -> tuple[float, float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        done = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
        times.append(time.perf_counter() - start)
        if done.returncode != expect:
            sys.exit(f"{argv[0]} exited {done.returncode}: {done.stdout[-2000:]}{done.stderr[-2000:]}")
    return min(times), statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--invalid", action="store_true", help="put one bad duration in the last entry (the slow, exact path)"
    )
    args = parser.parse_args()
    bindir = Path(sys.executable).parent
    squals = shutil.which("squals", path=str(bindir)) or shutil.which("squals")
    checker = shutil.which("check-jsonschema", path=str(bindir)) or shutil.which("check-jsonschema")
    if not squals or not checker:
        sys.exit("needs `squals` and `check-jsonschema` on PATH (pip install -e '.[test]')")
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp)
        (repo / ".git").mkdir()  # the repository root that references must stay inside
        target = repo / "squals.yml"
        text = generate(args.entries)
        if args.invalid:
            text = text.replace("timeout: 10m}\nshared:", "timeout: 10 minutes}\nshared:")
        target.write_text(text, encoding="utf-8")
        size = target.stat().st_size
        expect = 1 if args.invalid else 0
        ours_best, ours_median = best_time([squals, "validate", str(target)], args.repeat, expect)
        theirs_best, theirs_median = best_time(
            [checker, "--schemafile", str(SCHEMA), str(target)], args.repeat, expect
        )
    state = "one error" if args.invalid else "valid"
    print(f"file: {args.entries} entries, {size} bytes, {state}; best of {args.repeat} runs each")
    print(f"squals validate:  best {ours_best:.3f}s  median {ours_median:.3f}s")
    print(f"check-jsonschema: best {theirs_best:.3f}s  median {theirs_median:.3f}s")
    best, median = ours_best / theirs_best, ours_median / theirs_median
    print(f"ratio squals/check-jsonschema: best {best:.2f}  median {median:.2f}  (goal <= 0.5)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
