"""``python -m squals_action.dealer --config FILE --state DIR [--workers N]``: the Dealer daemon.

The process started so is the supervisor (see ``supervisor``): it holds the public port, starts its workers
(``--workers``, else the config's ``workers``, else ``SQUALS_DEALER_WORKERS``, else one per core: see
``supervisor.worker_count``), serves the admin endpoint, then publishes ``dealer.pid`` and ``dealer.json``
(pid, admin protocol, ports, URLs, worker pids) in the state directory; on SIGTERM or SIGINT it stops the
workers (they let their in-flight requests finish and close their journals) and removes those files. The
supervisor starts each worker as ``... --workers N --worker INDEX --port PORT``.

The event loop is uvloop's when it is installed (its C loop and transports take about a fifth off the Dealer's
CPU per proxied request), asyncio's otherwise or when ``SQUALS_DEALER_LOOP=asyncio`` asks for it. The request
path runs compiled when the installed wheel was built so (mypyc, opt-in: docs/dealer.md), else
interpreted; both are published, in ``dealer.json`` and the log.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import importlib
import importlib.machinery
import importlib.util
import json
import logging
import os
import signal
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from squals_action.dealer.client import ADMIN_PROTOCOL
from squals_action.dealer.config import ENDPOINT_FILE, PID_FILE, atomic_write, load_config
from squals_action.errors import SqualsError

LOOP_ENV = "SQUALS_DEALER_LOOP"


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


def _request_path() -> str:
    """``compiled`` when the request path's modules are extension modules (a wheel built with the mypyc hook),
    else ``interpreted``: a benchmark, or a user, can tell which one runs."""
    spec = importlib.util.find_spec("squals_action.dealer.trip")
    origin = spec.origin if spec is not None else None
    native = origin is not None and origin.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))
    return "compiled" if native else "interpreted"


async def _serve(config_path: Path, state_dir: Path, workers: int | None) -> None:
    from squals_action.dealer.supervisor import Supervisor

    config = load_config(config_path)
    if workers is not None:
        config = dataclasses.replace(config, workers=workers)
    state_dir.mkdir(parents=True, exist_ok=True)
    supervisor = Supervisor(config, config_path, state_dir)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await supervisor.start()
    pid = os.getpid()
    wildcard = config.host in ("0.0.0.0", "", "::")  # noqa: S104 - only to print a usable URL
    host = "127.0.0.1" if wildcard else config.host
    endpoint = {
        "pid": pid,
        "protocol": ADMIN_PROTOCOL,
        "port": supervisor.port,
        "admin_port": supervisor.admin_port,
        "url": f"http://{host}:{supervisor.port}",
        "admin_url": f"http://127.0.0.1:{supervisor.admin_port}",
        "loop": _loop_name(),
        "request_path": _request_path(),
        "workers": len(supervisor.workers),
        "worker_pids": supervisor.worker_pids(),
    }
    # Logged before the endpoint is published: whoever sees the Dealer ready finds this line in its log.
    logging.getLogger("squals.dealer").info(
        "serving on %s with %d workers, admin %s (event loop: %s, request path: %s)",
        endpoint["url"],
        endpoint["workers"],
        endpoint["admin_url"],
        endpoint["loop"],
        endpoint["request_path"],
    )
    atomic_write(state_dir / PID_FILE, f"{pid}\n")
    atomic_write(state_dir / ENDPOINT_FILE, json.dumps(endpoint, indent=2) + "\n")
    try:
        await stop.wait()
    finally:
        await supervisor.stop()
        for name in (PID_FILE, ENDPOINT_FILE):
            path = state_dir / name
            with contextlib.suppress(OSError, ValueError):
                if name == PID_FILE and int(path.read_text().strip()) != pid:
                    continue
                if name == ENDPOINT_FILE and json.loads(path.read_text()).get("pid") != pid:
                    continue
                path.unlink()


async def _serve_worker(config_path: Path, state_dir: Path, index: int, port: int, workers: int) -> None:
    """Run worker ``index`` of ``workers``; a failure to start is also told to the supervisor
    (``{"failed": ...}``)."""
    from squals_action.dealer.worker import Worker

    try:
        config = dataclasses.replace(load_config(config_path), workers=workers)
        worker = Worker(config, state_dir, index)
    except (SqualsError, OSError) as exc:
        text = exc.one_line() if isinstance(exc, SqualsError) else str(exc)
        print(json.dumps({"failed": text}), flush=True)
        raise
    await worker.run(port)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m squals_action.dealer", description=__doc__)
    parser.add_argument("--config", required=True, type=Path, help="the Dealer's JSON config (mode 0600)")
    parser.add_argument(
        "--state", required=True, type=Path, help="directory for pid, ports, tallies, routing"
    )
    parser.add_argument(
        "--workers", type=int, help="worker processes (default: the config's, else one per core)"
    )
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)  # run worker INDEX (the supervisor's)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.workers is not None and args.workers < 1:
        parser.error("--workers must be at least 1")
    name = "squals.dealer" if args.worker is None else f"squals.dealer.w{args.worker}"
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s %(levelname)s {name}: %(message)s")
    try:
        if args.worker is None:
            _run(_serve(args.config, args.state.resolve(), args.workers))
        else:
            _run(_serve_worker(args.config, args.state.resolve(), args.worker, args.port, args.workers or 1))
    except SqualsError as exc:
        print(f"squals dealer: {exc.one_line()}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:
        print(f"squals dealer: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
