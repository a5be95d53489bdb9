"""The example shop the other concerns deploy: its own unit tests pass, it listens on ``$PORT``, and its
exit test passes against it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

SHOP = Path(__file__).resolve().parents[2] / "examples" / "shop"


def test_shop_unit_tests_pass() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "unittest", "discover", "-s", "tests", "-t", "."],
        cwd=SHOP,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "OK" in done.stderr


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_shop_reads_port_and_passes_its_exit_test() -> None:
    port = _free_port()
    env = {**os.environ, "PORT": str(port)}
    app = subprocess.Popen(
        [sys.executable, "app.py"],
        cwd=SHOP,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(base + "/healthz", timeout=2) as response:
                    assert response.status == 200
                    break
            except OSError:
                if time.monotonic() > deadline or app.poll() is not None:
                    raise
                time.sleep(0.1)
        with urllib.request.urlopen(base + "/checkout", timeout=5) as response:
            assert response.headers["X-Squals-Event"] == "checkout"
        done = subprocess.run(
            [sys.executable, "exit_test.py"],
            cwd=SHOP,
            env={**env, "SQUALS_URL": base},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
    finally:
        app.terminate()
        try:
            app.wait(timeout=10)
        except subprocess.TimeoutExpired:
            app.kill()
            app.wait(timeout=10)
    assert app.returncode == 0
