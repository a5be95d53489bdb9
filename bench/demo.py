"""Wall time of `squals demo`, by chapter, against the 60 s goal and a baseline measured in the same run.

Run by hand: ``.venv/bin/python bench/demo.py [--bake SECONDS]``. The baseline is one bare app start and stop
of the shop (``python app.py`` until it answers), so the ratio says how many "app starts" the story costs.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def baseline() -> float:
    port = free_port()
    start = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "app.py"],
        cwd=ROOT / "examples" / "shop",
        env={**os.environ, "PORT": str(port)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).read()
                break
            except OSError:
                time.sleep(0.02)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    return time.monotonic() - start


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bake", type=float, default=3.0)
    args = parser.parse_args()
    base = baseline()
    start = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "squals_action.cli", "demo", "--bake", str(args.bake)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    marks: list[tuple[float, str]] = []
    for line in proc.stdout:
        if line.startswith("━━"):
            marks.append((time.monotonic() - start, line.strip("━ \n")))
    code = proc.wait()
    wall = time.monotonic() - start
    for i, (at, title) in enumerate(marks):
        end = marks[i + 1][0] if i + 1 < len(marks) else wall
        print(f"  {end - at:6.1f} s  {title}")
    print(f"demo wall time: {wall:.1f} s (exit {code}), bake {args.bake:g} s")
    print(f"ratio to the 60 s goal: {wall / 60:.2f}")
    print(f"baseline (one bare start of the shop): {base:.2f} s; demo = {wall / base:.0f} x baseline")
    return code


if __name__ == "__main__":
    sys.exit(main())
