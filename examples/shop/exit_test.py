"""Exit test: the deployed shop at ``$SQUALS_URL`` is healthy, shows its page and checks out."""

from __future__ import annotations

import os
import sys
import urllib.request


def fetch(url: str, method: str = "GET") -> tuple[int, dict[str, str], str]:
    request = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, dict(response.headers.items()), response.read().decode("utf-8", "replace")


def main() -> int:
    base = os.environ.get("SQUALS_URL", "").rstrip("/")
    if not base:
        print("exit test: SQUALS_URL is not set", file=sys.stderr)
        return 2
    checks = []
    status, _, body = fetch(base + "/healthz")
    checks.append(("healthz answers ok", status == 200 and body.strip() == "ok"))
    status, _, body = fetch(base + "/")
    checks.append(("page shows the shop", status == 200 and "Squals shop" in body))
    status, headers, _ = fetch(base + "/checkout", method="POST")
    checks.append(
        ("checkout reports the event", status == 200 and headers.get("X-Squals-Event") == "checkout")
    )
    for name, ok in checks:
        print(f"{'PASS' if ok else 'FAIL'} {name}")
    return 0 if all(ok for _, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
