"""Running ``squals`` as people see it: on a real pseudo-terminal, or with pipes, with no colour settings
inherited from the environment the tests run in."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

SQUALS = [sys.executable, "-m", "squals_action.cli"]
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR", "GITHUB_ACTIONS")}
    return {**env, "TERM": "xterm-256color"}


def on_terminal(cwd: Path, *args: str, timeout: float = 120.0) -> tuple[int, str]:
    """Run squals with stdout and stderr on one pseudo-terminal of 80 columns: its exit code, all it wrote."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 80, 0, 0))
    proc = subprocess.Popen(
        [*SQUALS, *args], cwd=cwd, stdin=subprocess.DEVNULL, stdout=follower, stderr=follower, env=_env()
    )
    os.close(follower)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.5)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                data = os.read(leader, 65536)
            except OSError:  # EIO: the terminal's other end is closed
                break
            if not data:
                break
            chunks.append(data)
        code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        os.close(leader)
    return code, b"".join(chunks).decode("utf-8", "replace").replace("\r\n", "\n")


def in_pipes(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SQUALS, *args], cwd=cwd, capture_output=True, text=True, timeout=120, env=_env(), check=False
    )
