"""``python -m squals_action.dealer --config FILE --state DIR``: the Dealer daemon's entry point.

Binds, then publishes ``dealer.pid`` and ``dealer.json`` (pid, ports, URLs) in the state directory; on SIGTERM
or SIGINT stops accepting, lets in-flight requests finish, writes the tallies and removes those files.

The event loop is uvloop's when it is installed (its C loop and transports take about a fifth off the Dealer's
CPU per proxied request), asyncio's otherwise or when ``SQUALS_DEALER_LOOP=asyncio`` asks for it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import importlib
import json
import logging
import os
import signal
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from squals_action.dealer.config import ENDPOINT_FILE, PID_FILE, atomic_write, load_config
from squals_action.errors import SqualsError

LOOP_ENV = "SQUALS_DEALER_LOOP"
# Young objects a collection of the youngest generation waits for. CPython's 700 is below what a few dozen
# requests in flight keep alive, so it collected every ~50 requests, promoted those requests' objects and led
# to full collections of 20-30 ms; at 20,000 a load of 24,000 requests ran with no collection at all.
GC_THRESHOLDS = (20_000, 10, 10)


def _tune_gc() -> None:
    """Move what start-up allocated out of the collector's sight and collect young objects less often.

    Cycles are still collected; full collections no longer walk the modules and the app (tens of thousands of
    objects that live as long as the process), which took a full collection from ~25 ms to ~1 ms.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def _run(main: Coroutine[Any, Any, None]) -> None:
    """Run ``main`` on uvloop when it is installed and not refused through ``SQUALS_DEALER_LOOP``.

    Nothing else differs: aiohttp runs the same on both loops.
    """
    if os.environ.get(LOOP_ENV, "").strip().lower() != "asyncio":
        try:
            uvloop = importlib.import_module("uvloop")
        except ImportError:
            pass
        else:
            uvloop.run(main)
            return
    asyncio.run(main)


def _loop_name() -> str:
    """Which loop serves, published in ``dealer.json`` and the log so a benchmark can say what it measured."""
    return "uvloop" if type(asyncio.get_running_loop()).__module__.startswith("uvloop") else "asyncio"


async def _serve(config_path: Path, state_dir: Path) -> None:
    from squals_action.dealer.server import DealerServer

    config = load_config(config_path)
    state_dir.mkdir(parents=True, exist_ok=True)
    server = DealerServer(config, state_dir)
    await server.start()
    _tune_gc()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    pid = os.getpid()
    wildcard = config.host in ("0.0.0.0", "", "::")  # noqa: S104 - only to print a usable URL
    host = "127.0.0.1" if wildcard else config.host
    endpoint = {
        "pid": pid,
        "port": server.port,
        "admin_port": server.admin_port,
        "url": f"http://{host}:{server.port}",
        "admin_url": f"http://127.0.0.1:{server.admin_port}",
        "loop": _loop_name(),
    }
    atomic_write(state_dir / PID_FILE, f"{pid}\n")
    atomic_write(state_dir / ENDPOINT_FILE, json.dumps(endpoint, indent=2) + "\n")
    logging.getLogger("squals.dealer").info(
        "serving on %s, admin %s (event loop: %s)", endpoint["url"], endpoint["admin_url"], endpoint["loop"]
    )
    try:
        await stop.wait()
    finally:
        await server.stop()
        for name in (PID_FILE, ENDPOINT_FILE):
            path = state_dir / name
            with contextlib.suppress(OSError, ValueError):
                if name == PID_FILE and int(path.read_text().strip()) != pid:
                    continue
                if name == ENDPOINT_FILE and json.loads(path.read_text()).get("pid") != pid:
                    continue
                path.unlink()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m squals_action.dealer", description=__doc__)
    parser.add_argument("--config", required=True, type=Path, help="the Dealer's JSON config (mode 0600)")
    parser.add_argument(
        "--state", required=True, type=Path, help="directory for pid, ports, tallies, routing"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        _run(_serve(args.config, args.state.resolve()))
    except SqualsError as exc:
        print(f"squals dealer: {exc.one_line()}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:
        print(f"squals dealer: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
