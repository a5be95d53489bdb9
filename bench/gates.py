"""Benchmarks of the gates, run by hand: ``.venv/bin/python bench/gates.py``.

1. Parallel efficiency of the runner: 16 gates that each sleep, at concurrency 16 and at the number of cores.
   efficiency = sum of gate durations / (wall time x concurrency); 1.0 means no overhead at all. The serial
   run (concurrency 1) of the same gates is the baseline measured in the same run.
2. Parse time of a generated 5,000-package ``package-lock.json`` (v3, nested ``node_modules`` paths and
   workspaces), against ``json.loads`` of the same text as the baseline.
"""

from __future__ import annotations

import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

from squals_action.gates.command import CommandGate
from squals_action.gates.interface import GateContext
from squals_action.gates.runner import run_gates
from squals_action.gates.security.lockfiles import npm
from squals_action.manifest.model import Command

SLEEP = 0.5
GATES = 16
PACKAGES = 5000


def efficiency(ctx: GateContext, concurrency: int) -> tuple[float, float, float]:
    gates = [
        CommandGate(Command(name=f"g{i}", run=f"sleep {SLEEP}", timeout=60), "test") for i in range(GATES)
    ]
    start = time.monotonic()
    results = run_gates(ctx, test_gates=gates, concurrency=concurrency)
    wall = time.monotonic() - start
    assert all(r.status == "pass" for r in results), [r.summary for r in results]
    busy = sum(r.duration for r in results)
    return wall, busy, busy / (wall * concurrency)


def generate_lock(count: int, seed: int = 7) -> str:
    """A v3 lockfile: a root with two workspaces, hoisted packages, nested conflicts, scoped names."""
    rng = random.Random(seed)
    packages: dict[str, object] = {
        "": {"name": "bench", "version": "1.0.0", "workspaces": ["packages/*"]},
        "packages/a": {"name": "@bench/a", "version": "0.1.0"},
        "packages/b": {"name": "@bench/b", "version": "0.1.0"},
        "node_modules/@bench/a": {"resolved": "packages/a", "link": True},
        "node_modules/@bench/b": {"resolved": "packages/b", "link": True},
    }
    made = 0
    hoisted: list[str] = []
    while made < count:
        name = f"@scope{made % 40}/pkg{made}" if made % 7 == 0 else f"pkg-{made}"
        version = f"{rng.randint(0, 9)}.{rng.randint(0, 30)}.{rng.randint(0, 50)}"
        roll = made % 10
        if roll < 6 or not hoisted:
            path = f"node_modules/{name}"
            hoisted.append(path)
        elif roll < 9:
            path = f"{rng.choice(hoisted)}/node_modules/{name}"
        else:
            path = f"packages/{'ab'[made % 2]}/node_modules/{name}"
        packages[path] = {
            "version": version,
            "resolved": f"https://registry.npmjs.org/{name}/-/{name.split('/')[-1]}-{version}.tgz",
            "integrity": "sha512-" + "A" * 86 + "==",
            "dev": made % 5 == 0,
            "license": "MIT",
            "dependencies": {f"pkg-{rng.randint(0, count)}": "^1.0.0"},
            "engines": {"node": ">=14"},
        }
        made += 1
    return json.dumps(
        {"name": "bench", "version": "1.0.0", "lockfileVersion": 3, "requires": True, "packages": packages},
        indent=2,
    )


def best_of(runs: int, fn: object) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> int:
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        ctx = GateContext(repo=Path(tmp), log_dir=Path(tmp) / "logs")
        serial_wall, _, serial_eff = efficiency(ctx, 1)
        print(f"runner: {GATES} gates x sleep {SLEEP}s, {cores} cores")
        print(f"  concurrency  1: wall {serial_wall:6.2f}s  efficiency {serial_eff:.3f}  (baseline)")
        for concurrency in sorted({cores, GATES}):
            wall, _, eff = efficiency(ctx, concurrency)
            print(
                f"  concurrency {concurrency:2d}: wall {wall:6.2f}s  efficiency {eff:.3f}  "
                f"speed-up vs serial {serial_wall / wall:5.2f}x (ideal {min(concurrency, GATES)}x)"
            )
    text = generate_lock(PACKAGES)
    parsed = npm.parse(text, "package-lock.json")
    assert len(parsed.dependencies) == PACKAGES, len(parsed.dependencies)
    parse_time = best_of(5, lambda: npm.parse(text, "package-lock.json"))
    json_time = best_of(5, lambda: json.loads(text))
    print(
        f"package-lock.json: {PACKAGES} packages, {len(text) / 1e6:.1f} MB, {text.count(chr(10)) + 1} lines"
    )
    print(
        f"  parse with lines {parse_time * 1000:7.1f} ms   json.loads alone {json_time * 1000:7.1f} ms   "
        f"ratio {parse_time / json_time:.2f}x"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
