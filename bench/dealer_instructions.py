"""Instructions per proxied request of a Dealer worker, counted by callgrind: a figure load cannot move.

    python bench/dealer_instructions.py [CHECKOUT ...] [--requests 2000] [--concurrency 32]

For each checkout (default: this one; another one is ``git archive <commit> | tar -x -C DIR``), two upstream
processes (bench/dealer.py's trivial app) are started, the checkout's worker process runs under
``valgrind --tool=callgrind`` with instrumentation off, and the load generator of bench/dealer.py sends 300
warm-up requests; instrumentation is then switched on for ``--requests`` requests at ``--concurrency``
connections and off again, so start-up and shutdown are not counted. Every thread of the worker is counted
(user space only: the kernel's share of a socket write is not in the figure, CPU time per request from
bench/dealer.py has it). Needs valgrind (Debian package); each checkout takes a minute or two.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from dealer import load, start_upstream

ROOT = Path(__file__).resolve().parent.parent

_SETUP = """
import sys
from pathlib import Path
from squals_action.dealer.board import BOARD_FILE, RoutingBoard
from squals_action.dealer.config import write_config
from squals_action.dealer.interface import DealerConfig
from squals_action.dealer.routing import make_routing
work, upstreams = Path(sys.argv[1]), dict(u.split("=", 1) for u in sys.argv[2:])
weights = dict.fromkeys(upstreams, 50)
RoutingBoard(work / "state" / BOARD_FILE, create=True).publish(make_routing(upstreams, weights))
write_config(work / "config.json", DealerConfig(upstreams=upstreams, weights=weights, token="x" * 32))
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _totals(path: Path) -> int:
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("totals:"):
            return int(line.split()[1])
    raise SystemExit(f"{path}: no totals line (callgrind did not finish its dump)")


def count(checkout: Path, upstreams: dict[str, int], requests: int, concurrency: int) -> int:
    """Instructions per proxied request of ``checkout``'s worker."""
    work = Path(tempfile.mkdtemp(prefix="squals-callgrind-"))
    env = dict(os.environ, PYTHONPATH=str(checkout))
    try:
        (work / "state").mkdir()
        urls = [f"{name}=http://127.0.0.1:{port}" for name, port in upstreams.items()]
        subprocess.run([sys.executable, "-c", _SETUP, str(work), *urls], check=True, env=env, timeout=60)
        port = _free_port()
        out = work / "callgrind.out"
        command = [
            *("valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", "--instr-atstart=no"),
            *(sys.executable, "-m", "squals_action.dealer", "--config", str(work / "config.json")),
            *("--state", str(work / "state"), "--worker", "0", "--port", str(port)),
        ]
        with (work / "stderr").open("w") as stderr:
            worker = subprocess.Popen(
                command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, env=env, cwd=checkout
            )
        assert worker.stdin is not None and worker.stdout is not None
        try:
            if not worker.stdout.readline().startswith(b'{"ready"'):
                raise SystemExit(
                    f"{checkout}: the worker did not start: {(work / 'stderr').read_text()[-800:]}"
                )
            target = [("127.0.0.1", port)]
            load(target, 300, concurrency)
            control = ["callgrind_control", "-i"]
            subprocess.run([*control, "on", str(worker.pid)], check=True, capture_output=True, timeout=120)
            result = load(target, requests, concurrency, seed=5)
            subprocess.run([*control, "off", str(worker.pid)], check=True, capture_output=True, timeout=120)
            if result.failures:
                raise SystemExit(f"{checkout}: {result.failures} answers were not 200")
        finally:
            worker.stdin.close()  # the worker stops when its supervisor's channel closes
            worker.wait(timeout=300)
            worker.stdout.close()
        return _totals(out) // requests
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("checkouts", nargs="*", type=Path, default=[ROOT], help="checkouts to measure")
    parser.add_argument("--requests", type=int, default=2000, help="requests counted")
    parser.add_argument("--concurrency", type=int, default=32, help="connections of the load generator")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (apt-get install -y valgrind)", file=sys.stderr)
        return 1
    procs: list[subprocess.Popen[str]] = []
    try:
        upstreams = {name: start_upstream(name, procs) for name in ("a", "b")}
        for checkout in args.checkouts:
            per = count(checkout.resolve(), upstreams, args.requests, args.concurrency)
            print(f"{checkout!s:<40}: {per:>9,} instructions per proxied request (x{args.concurrency})")
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=10)
            if proc.stdout is not None:
                proc.stdout.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
