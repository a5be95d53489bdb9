"""`squals demo` tells the whole story and leaves no process, port or directory behind."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

SQUALS = [sys.executable, "-m", "squals_action.cli"]


def _processes_touching(root: str) -> list[str]:
    """Processes whose command line or working directory mentions ``root``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if root in cmdline or cwd.startswith(root):
            found.append(f"{entry.name}: {cmdline[:120]} (cwd {cwd})")
    return found


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.slow
def test_demo_tells_the_story_and_cleans_up(tmp_path: Path) -> None:
    proc = subprocess.run(
        [*SQUALS, "demo", "--bake", "2"],
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "TMPDIR": str(tmp_path)},
    )
    out = proc.stdout
    assert proc.returncode == 0, out[-3000:] + proc.stderr[-2000:]
    for chapter in (
        "main becomes the first prod",
        "PR #2 opens",
        "blue/green under synthetic traffic",
        "squals status",
        "label `rollback`",
        "promoted again",
        "squals down",
    ):
        assert chapter in out
    assert "### ✅ Deploy of <code>pr-2</code>" in out
    assert "### ✅ Promotion of <code>pr-2</code>" in out and "| ✅ | <code>error_rate</code> |" in out
    assert "### ✅ Rollback of <code>pr-1</code>" in out
    assert re.search(r"synthetic traffic: [1-9]\d* requests \(\d+ checkouts\), 0 failed", out)
    wall = re.search(r"demo finished in ([\d.]+) s", out)
    assert wall, out[-500:]
    print(f"demo wall time: {wall.group(1)} s")

    root = re.search(r"temporary repository at (\S+)", out)
    assert root
    assert not Path(root.group(1)).exists()
    assert _processes_touching(root.group(1)) == []
    ports = {int(p) for p in re.findall(r"http://127\.0\.0\.1:(\d+)", out)}
    assert len(ports) >= 3  # the Dealer and two islands
    assert [p for p in ports if _port_open(p)] == []
