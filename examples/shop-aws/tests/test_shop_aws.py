"""The shop on AWS: the app run as its container runs it (``python3 shop_aws.py``, a real server on an
ephemeral 127.0.0.1 port), its cookies, and the embedded-metric-format lines CloudWatch Logs turns into the
experiment's metrics."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import unittest
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(HERE))

import shop_aws  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class AppEnvTest(unittest.TestCase):
    def test_expands_without_replacing_what_the_template_set(self) -> None:
        environ = {
            "SQUALS_ENV": "exp-green",
            "SQUALS_APP_ENV": json.dumps({"SQUALS_ENV": "other", "SHOP_BUTTON_COLOR": "seagreen"}),
        }
        shop_aws.expand_app_env(environ)
        self.assertEqual(environ["SQUALS_ENV"], "exp-green")
        self.assertEqual(environ["SHOP_BUTTON_COLOR"], "seagreen")

    def test_refuses_what_is_not_an_object_of_strings(self) -> None:
        for raw in ("{not json", "[1]", '{"A": 1}'):
            with self.assertRaisesRegex(shop_aws.AppEnvError, "expected a JSON object of strings"):
                shop_aws.expand_app_env({"SQUALS_APP_ENV": raw})

    def test_no_metric_outside_an_experiment(self) -> None:
        self.assertIsNone(shop_aws.metric_line("Visitors", {"SQUALS_ENV": "pr-7"}, 0.0))


class ContainerTest(unittest.TestCase):
    """``shop_aws.py`` as the container starts it, with the variables the island template gives it."""

    def start(self, **env: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "shop_aws.py"],
            cwd=HERE,
            env={**os.environ, "PORT": str(self.port), "SQUALS_ENV": "exp-green", **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.proc.stdout is not None
        self.addCleanup(self.proc.stdout.close)
        self.addCleanup(self.stop)
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(self.base + "/healthz", timeout=2).close()
                return
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=10)

    def lines(self) -> list[dict[str, Any]]:
        """What the app printed: its listening line, then one JSON object per metric."""
        self.stop()
        assert self.proc.stdout is not None
        return [json.loads(line) for line in self.proc.stdout.read().splitlines() if line.startswith("{")]

    def get(self, path: str, cookie: str = "", method: str = "GET") -> tuple[str, list[str]]:
        request = urllib.request.Request(
            self.base + path, method=method, headers={"Cookie": cookie} if cookie else {}
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.read().decode(), response.headers.get_all("Set-Cookie") or []

    def test_a_variant_counts_each_visitor_and_each_conversion_once(self) -> None:
        app_env = {"SHOP_BUTTON_COLOR": "seagreen", "SQUALS_VARIANT": "green"}
        self.start(SQUALS_APP_ENV=json.dumps(app_env))
        page, cookies = self.get("/")
        self.assertIn("background:seagreen", page)
        (unit,) = [c.split(";")[0] for c in cookies if c.startswith("squals_unit=")]
        self.get("/healthz", unit)
        self.get("/", unit)
        _, bought = self.get("/checkout", unit, "POST")
        self.get("/checkout", f"{unit}; {bought[0].split(';')[0]}", "POST")
        self.get("/checkout")  # a second visitor who goes straight to the checkout
        lines = self.lines()
        self.assertEqual(
            [next(k for k in ("Visitors", "Checkout") if k in line) for line in lines],
            ["Visitors", "Checkout", "Visitors", "Checkout"],
        )
        for line in lines:
            (directive,) = line["_aws"]["CloudWatchMetrics"]
            self.assertEqual(directive["Namespace"], "Shop")
            self.assertEqual(directive["Dimensions"], [["Environment", "Variant"]])
            (metric,) = directive["Metrics"]
            self.assertEqual(line[metric["Name"]], 1)
            self.assertEqual((line["Environment"], line["Variant"]), ("exp-green", "green"))
            self.assertLess(abs(line["_aws"]["Timestamp"] / 1000 - time.time()), 60)

    def test_an_island_outside_an_experiment_emits_nothing(self) -> None:
        self.start()
        self.get("/")
        self.get("/checkout", method="POST")
        self.assertEqual(self.lines(), [])

    def test_bad_app_env_is_one_line_and_exit_2(self) -> None:
        done = subprocess.run(
            [sys.executable, "shop_aws.py"],
            cwd=HERE,
            env={**os.environ, "PORT": str(free_port()), "SQUALS_APP_ENV": "{oops"},
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        self.assertEqual(done.returncode, 2)
        self.assertEqual(len(done.stderr.strip().splitlines()), 1, done.stderr)
        self.assertIn("SQUALS_APP_ENV: expected a JSON object of strings", done.stderr)

    def test_the_shops_exit_test_passes_against_it(self) -> None:
        self.start()
        done = subprocess.run(
            [sys.executable, str(HERE.parent / "shop" / "exit_test.py")],
            env={**os.environ, "SQUALS_URL": self.base},
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        self.assertEqual(done.returncode, 0, done.stdout + done.stderr)


if __name__ == "__main__":
    unittest.main()
