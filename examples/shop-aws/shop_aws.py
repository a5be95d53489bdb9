"""The shop as an island behind the ALB front door: ``examples/shop``'s app plus what AWS needs.

The shop itself is not copied: this module imports ``../shop/app.py`` (the image keeps the same layout) and
adds three things an ECS task behind an ALB needs:

* the app's variables: CloudFormation cannot parse JSON, so the island template hands squals' whole
  ``SqualsAppEnv`` (``app.env``, the environment's overrides, ``SQUALS_VARIANT``...) to the container as one
  variable, ``SQUALS_APP_ENV``, expanded here. Variables the template sets itself (``PORT``, ``SQUALS_ENV``,
  ``SQUALS_URL``...) win, as on every provider;
* the experiment's unit: a visitor gets the cookie ``squals_unit`` on its first page. The ALB keeps it on
  its variant with that cookie (``stickiness.app_cookie``, set by squals from ``experiment.unit``);
* per-variant metrics for the experiment: one ``Visitors`` per new unit and one ``Checkout`` per unit that
  buys, as CloudWatch embedded-metric-format lines on stdout. The task's ``awslogs`` driver sends stdout to
  CloudWatch Logs, which turns them into the metrics ``Shop/Visitors`` and ``Shop/Checkout`` with the
  dimensions ``Environment`` and ``Variant``: no API call and no AWS SDK in the app. Islands that are not
  an experiment's variant (no ``SQUALS_VARIANT``) emit nothing (every dimension set is a billed metric).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
import uuid
from collections.abc import Mapping, MutableMapping
from http.cookies import CookieError, SimpleCookie
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "shop"))

import app as shop  # the shop of examples/shop, found through the path above

UNIT_COOKIE = "squals_unit"
CONVERTED_COOKIE = "shop_converted"
NAMESPACE = "Shop"
#: A week, the longest stickiness an ALB keeps.
COOKIE_SECONDS = 7 * 24 * 3600


class AppEnvError(ValueError):
    """``SQUALS_APP_ENV`` is not a JSON object of strings."""


def expand_app_env(environ: MutableMapping[str, str]) -> None:
    """Copy the variables of ``SQUALS_APP_ENV`` into ``environ`` without replacing any already set."""
    raw = environ.get("SQUALS_APP_ENV", "")
    if not raw:
        return
    try:
        values = json.loads(raw)
    except ValueError as exc:
        raise AppEnvError(f"SQUALS_APP_ENV: expected a JSON object of strings ({exc})") from None
    if not isinstance(values, dict) or not all(isinstance(v, str) for v in values.values()):
        raise AppEnvError("SQUALS_APP_ENV: expected a JSON object of strings")
    for name, value in values.items():
        environ.setdefault(name, value)


def metric_line(metric: str, environ: Mapping[str, str], now: float) -> str | None:
    """One embedded-metric-format line counting 1 ``metric`` for this island's variant, or None when the
    island is no experiment's variant."""
    variant = environ.get("SQUALS_VARIANT", "")
    if not variant:
        return None
    return json.dumps(
        {
            "_aws": {
                "Timestamp": int(now * 1000),
                "CloudWatchMetrics": [
                    {
                        "Namespace": NAMESPACE,
                        "Dimensions": [["Environment", "Variant"]],
                        "Metrics": [{"Name": metric, "Unit": "Count"}],
                    }
                ],
            },
            "Environment": environ.get("SQUALS_ENV", ""),
            "Variant": variant,
            metric: 1,
        },
        separators=(",", ":"),
    )


class AwsShopHandler(shop.ShopHandler):
    """The shop's routes; a page or a checkout also counts the visitor and the conversion once each."""

    def do_GET(self) -> None:
        self._count(self.path.split("?", 1)[0])
        super().do_GET()

    def do_POST(self) -> None:
        self._count(self.path.split("?", 1)[0])
        super().do_POST()

    def _count(self, path: str) -> None:
        self._cookies: list[str] = []
        if path not in ("/", "/checkout"):
            return
        cookies = SimpleCookie()
        with contextlib.suppress(CookieError):  # a malformed Cookie header: a new visitor
            cookies.load(self.headers.get("Cookie", ""))
        if UNIT_COOKIE not in cookies:
            self._set_cookie(UNIT_COOKIE, uuid.uuid4().hex)
            self._emit("Visitors")
        if path == "/checkout" and CONVERTED_COOKIE not in cookies:
            self._set_cookie(CONVERTED_COOKIE, "1")
            self._emit("Checkout")

    def _set_cookie(self, name: str, value: str) -> None:
        self._cookies.append(f"{name}={value}; Path=/; Max-Age={COOKIE_SECONDS}; HttpOnly; SameSite=Lax")

    def _emit(self, metric: str) -> None:
        line = metric_line(metric, os.environ, time.time())
        if line is not None:
            print(line, flush=True)

    def end_headers(self) -> None:
        for cookie in getattr(self, "_cookies", ()):
            self.send_header("Set-Cookie", cookie)
        super().end_headers()


def main() -> int:
    try:
        expand_app_env(os.environ)
    except AppEnvError as exc:
        print(f"shop: {exc}", file=sys.stderr)
        return 2
    return shop.main(AwsShopHandler)


if __name__ == "__main__":
    sys.exit(main())
