"""Benchmark: `squals validate` against `check-jsonschema` on the same large squals file, in one run.

    python bench/validate.py [--entries 5000] [--repeat 5] [--invalid] [--baseline DIR]

Generates a valid squals file with 5,000 entries spread over test gates, hooks, exit tests and shared
resources, then times each tool as a subprocess (start-up included, as a user runs them) in alternating
rounds, so the noise of a shared machine hits them alike, and prints the best and median wall time of each,
their CPU time (user + system, which moves less with the machine's load) and the ratios. squals does more
(duplicate keys, semantic checks, path checks, the model); the goal is a ratio <= 0.1.

``squals`` is this checkout's code (``PYTHONPATH`` set to it, whatever the installed package points at);
with ``--baseline DIR`` the squals of another checkout (``git archive <commit> | tar -x -C DIR``) runs in the
same rounds as ``squals-baseline``, so a change is measured before and after under the same load. Checkouts
get their bytecode cached in the run's temporary directory (``PYTHONPYCACHEPREFIX``, even when
``PYTHONDONTWRITEBYTECODE`` is set), as an installed package has it (pip compiles at install, as it did for
check-jsonschema); an untimed first round of every tool fills that cache and the file cache.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SCHEMA = REPO / "schemas" / "squals.schema.json"
GOAL = 0.1
#: The hook stages of the generated file; each starts ``./scripts/<stage>.sh``.
STAGES = ("before_preprod", "after_preprod", "promote", "after_postprod")


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
    per_stage = quarter // len(STAGES)
    for stage in STAGES:
        lines.append(f"  {stage}:")
        for i in range(per_stage):
            lines.append(f"    - {{name: {stage}-h{i}, run: ./scripts/{stage}.sh {i}, timeout: 90s}}")
    lines.append("exit_tests:")
    for i in range(entries - 2 * quarter - per_stage * len(STAGES)):
        lines.append(f"  - {{name: e2e-{i}, run: pytest tests/e2e/test_{i}.py, timeout: 10m}}")
    lines.append("shared:")
    for i in range(quarter):
        lines.append(f"  res-{i}: {{type: redis, options: {{size: small, shard: {i}}}}}")
    lines.append("rollout: {blue_share: 10%, bake: 15m, kpis: [{metric: error_rate, max: 1%}]}")
    return "\n".join(lines) + "\n"


@dataclass
class Target:
    """One command measured in every round: wall and CPU seconds of each run."""

    name: str
    argv: list[str]
    env: dict[str, str]
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)

    def run(self, expect: int, *, timed: bool = True) -> None:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        done = subprocess.run(
            self.argv, env=self.env, capture_output=True, text=True, timeout=600, check=False
        )
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if timed:
            self.wall.append(time.perf_counter() - start)
            self.cpu.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
        if done.returncode != expect:
            sys.exit(f"{self.name} exited {done.returncode}: {done.stdout[-2000:]}{done.stderr[-2000:]}")

    def line(self) -> str:
        return (
            f"{self.name:<17}: wall best {min(self.wall):.3f}s  median {statistics.median(self.wall):.3f}s"
            f"  |  CPU best {min(self.cpu):.3f}s  median {statistics.median(self.cpu):.3f}s"
        )


def ratio_line(ours: Target, theirs: Target, goal: float | None = None) -> str:
    text = (
        f"ratio {ours.name}/{theirs.name}: wall best {min(ours.wall) / min(theirs.wall):.3f}  "
        f"median {statistics.median(ours.wall) / statistics.median(theirs.wall):.3f}  |  "
        f"CPU best {min(ours.cpu) / min(theirs.cpu):.3f}  "
        f"median {statistics.median(ours.cpu) / statistics.median(theirs.cpu):.3f}"
    )
    if goal is not None:
        met = min(ours.wall) / min(theirs.wall) <= goal
        text += f"  (goal <= {goal}{'' if met else ': MISSED'})"
    return text


def squals_target(name: str, script: str, checkout: Path, pycache: Path) -> Target:
    """The ``squals`` console script importing ``squals_action`` from ``checkout``, bytecode cached."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.update(PYTHONPATH=str(checkout), PYTHONPYCACHEPREFIX=str(pycache))
    return Target(name, [script, "validate"], env)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=5, help="rounds; each runs every tool once")
    parser.add_argument(
        "--invalid", action="store_true", help="put one bad duration in the last entry (the slow, exact path)"
    )
    parser.add_argument(
        "--baseline", type=Path, help="another checkout whose squals is measured too, as squals-baseline"
    )
    args = parser.parse_args()
    bindir = Path(sys.executable).parent
    squals = shutil.which("squals", path=str(bindir)) or shutil.which("squals")
    checker = shutil.which("check-jsonschema", path=str(bindir)) or shutil.which("check-jsonschema")
    if not squals or not checker:
        sys.exit("needs `squals` and `check-jsonschema` on PATH (pip install -e '.[test]')")
    if args.baseline is not None and not (args.baseline / "squals_action" / "__init__.py").is_file():
        sys.exit(f"--baseline {args.baseline}: expected a checkout holding squals_action/__init__.py")
    with tempfile.TemporaryDirectory() as tmp:
        pycache = Path(tmp) / "pycache"
        targets = [squals_target("squals", squals, REPO, pycache)]
        if args.baseline is not None:
            targets.append(squals_target("squals-baseline", squals, args.baseline.resolve(), pycache))
        targets.append(Target("check-jsonschema", [checker, "--schemafile", str(SCHEMA)], dict(os.environ)))
        repo = Path(tmp) / "repo"
        (repo / ".git").mkdir(parents=True)  # the repository root that references must stay inside
        target = repo / "squals.yml"
        text = generate(args.entries)
        if args.invalid:
            text = text.replace("timeout: 10m}\nshared:", "timeout: 10 minutes}\nshared:")
        target.write_text(text, encoding="utf-8")
        (repo / "scripts").mkdir()
        for stage in STAGES:  # the hooks' scripts: squals validate reports missing ones
            (repo / "scripts" / f"{stage}.sh").write_text("#!/bin/sh\n")
        size = target.stat().st_size
        expect = 1 if args.invalid else 0
        for tool in targets:
            tool.argv.append(str(target))
            tool.run(expect, timed=False)
        for _ in range(args.repeat):
            for tool in targets:
                tool.run(expect)
    state = "one error" if args.invalid else "valid"
    print(
        f"file: {args.entries} entries, {size} bytes, {state}; {args.repeat} alternating rounds; "
        f"load average {os.getloadavg()[0]:.1f}, {len(os.sched_getaffinity(0))} cpus"
    )
    for tool in targets:
        print(tool.line())
    reference = targets[-1]
    for tool in targets[:-1]:
        print(ratio_line(tool, reference, GOAL))
    if args.baseline is not None:
        print(ratio_line(targets[0], targets[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
