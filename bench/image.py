"""The action image's Python environment: its installed size, and the import time of each entry point.

The image is the wheel installed into a fresh environment (as the Dockerfile's second stage does); here the
wheel is built from this checkout and installed into a fresh venv, whose size is what the image adds on top
of its Python base (plus git). Import times are measured against ``python -c pass`` in the same venv,
interleaved so both see the same load. Usage: ``python bench/image.py [--runs N] [--top K]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: pip may fetch what a build or an install needs: allow it minutes, not forever.
PIP_TIMEOUT = 1200


def entry_points() -> dict[str, str]:
    """Console script name -> the module it imports, from pyproject.toml."""
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]
    return {name: target.split(":")[0] for name, target in scripts.items()}


def tree_size(path: Path) -> int:
    """Bytes of the files under ``path`` (symlinks not followed), like ``du --apparent-size``."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            full = Path(root, name)
            if not full.is_symlink():
                total += full.stat().st_size
    return total


def build_venv(tmp: Path) -> tuple[Path, Path]:
    """Build the wheel and install it into a fresh venv; the venv's python and its site-packages."""
    wheels = tmp / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(wheels), str(ROOT)],
        check=True,
        timeout=PIP_TIMEOUT,
    )
    [wheel] = wheels.glob("*.whl")
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--quiet",
            "--no-cache-dir",
            str(wheel),
        ],
        check=True,
        timeout=PIP_TIMEOUT,
    )
    [site] = (venv / "lib").glob("python3*/site-packages")
    return python, site


def timed(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--top", type=int, default=12, help="largest distributions to list")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        python, site = build_venv(Path(tmp))
        print(
            f"wheel built and installed into a fresh venv in {time.perf_counter() - started:.0f} s "
            f"({sys.version.split()[0]})"
        )
        entries = sorted(site.iterdir(), key=tree_size, reverse=True)
        total = tree_size(site)
        print(f"site-packages: {total / 2**20:.1f} MiB in {len(entries)} entries; largest:")
        for entry in entries[: args.top]:
            print(f"  {tree_size(entry) / 2**20:7.1f} MiB  {entry.name}")
        modules = entry_points()
        timed([str(python), "-c", "pass"])
        for module in modules.values():  # warm the file cache and write the bytecode once
            timed([str(python), "-c", f"import {module}"])
        base: list[float] = []
        imports: dict[str, list[float]] = {name: [] for name in modules}
        for _ in range(args.runs):
            base.append(timed([str(python), "-c", "pass"]))
            for name, module in modules.items():
                imports[name].append(timed([str(python), "-c", f"import {module}"]))
    b = statistics.median(base)
    print(f"python -c pass                 median {b * 1000:7.1f} ms ({args.runs} runs)")
    for name, module in modules.items():
        m = statistics.median(imports[name])
        over = (m - b) * 1000
        print(f"{name:<14} import {module:<22} median {m * 1000:7.1f} ms, {over:+.1f} ms over python")
    return 0


if __name__ == "__main__":
    sys.exit(main())
