"""Unit tests of the shop: a real server on an ephemeral 127.0.0.1 port, stopped after each test."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import unittest
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import app


class ShopTest(unittest.TestCase):
    def setUp(self) -> None:
        self.server = app.make_server(0)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"

    def tearDown(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    def get(self, path: str, method: str = "GET") -> tuple[int, dict[str, str], str]:
        request = urllib.request.Request(
            self.base + path, method=method, data=b"x" if method == "POST" else None
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status, dict(response.headers.items()), response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers.items()), error.read().decode()

    def test_healthz(self) -> None:
        self.assertEqual(self.get("/healthz")[0], 200)

    def test_page(self) -> None:
        status, headers, body = self.get("/")
        self.assertEqual(status, 200)
        self.assertIn("Squals shop", body)
        self.assertNotIn("X-Squals-Event", headers)

    def test_checkout_reports_event(self) -> None:
        for method in ("GET", "POST"):
            status, headers, _ = self.get("/checkout", method)
            self.assertEqual(status, 200)
            self.assertEqual(headers.get("X-Squals-Event"), "checkout")

    def test_unknown_path(self) -> None:
        self.assertEqual(self.get("/nope")[0], 404)

    def test_exit_test_script_against_live_server(self) -> None:
        script = Path(__file__).resolve().parent.parent / "exit_test.py"
        done = subprocess.run(
            [sys.executable, str(script)],
            env={**os.environ, "SQUALS_URL": self.base},
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        self.assertEqual(done.returncode, 0, done.stdout + done.stderr)
        self.assertIn("PASS checkout reports the event", done.stdout)


if __name__ == "__main__":
    unittest.main()
