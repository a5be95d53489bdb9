"""``python -m squals_action.dealer --config FILE --state DIR``: the Dealer daemon's entry point.

Binds, then publishes ``dealer.pid`` and ``dealer.json`` (pid, ports, URLs) in the state directory; on SIGTERM
or SIGINT stops accepting, lets in-flight requests finish, writes the tallies and removes those files.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from pathlib import Path

from squals_action.dealer.config import ENDPOINT_FILE, PID_FILE, atomic_write, load_config
from squals_action.errors import SqualsError


async def _serve(config_path: Path, state_dir: Path) -> None:
    from squals_action.dealer.server import DealerServer

    config = load_config(config_path)
    state_dir.mkdir(parents=True, exist_ok=True)
    server = DealerServer(config, state_dir)
    await server.start()
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
    }
    atomic_write(state_dir / PID_FILE, f"{pid}\n")
    atomic_write(state_dir / ENDPOINT_FILE, json.dumps(endpoint, indent=2) + "\n")
    logging.getLogger("squals.dealer").info("serving on %s, admin %s", endpoint["url"], endpoint["admin_url"])
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
        asyncio.run(_serve(args.config, args.state.resolve()))
    except SqualsError as exc:
        print(f"squals dealer: {exc.one_line()}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:
        print(f"squals dealer: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
