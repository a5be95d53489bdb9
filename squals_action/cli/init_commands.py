"""``squals init``: argument parsing only; :mod:`squals_action.onboarding` does the work."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from squals_action.errors import UsageError


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``init``."""
    init = subparsers.add_parser(
        "init",
        help="write a squals file and the workflow into this app's repository",
        description="Detect how the app starts and its health path, then write squals.yml and "
        ".github/workflows/squals.yml (and with --provider aws the front-door and island templates). "
        "Asks on a terminal; --yes takes the detected values. Never overwrites a file without --force.",
    )
    init.add_argument("--provider", choices=("local", "aws"), default="local")
    init.add_argument("--yes", "-y", action="store_true", help="take the detected values without asking")
    init.add_argument("--force", action="store_true", help="replace files that exist")
    init.add_argument("--start", metavar="COMMAND", help="the command that starts the app (on $PORT)")
    init.add_argument("--health", metavar="PATH", help="the URL path that answers 2xx once the app is up")
    init.add_argument("--dir", metavar="DIR", help="the app's repository (default: the one around the cwd)")
    init.set_defaults(handler=run_init)


def _ask(question: str, default: str | None) -> str:
    shown = f" [{default}]" if default else ""
    answer = input(f"{question}{shown}: ").strip()
    return answer or (default or "")


def run_init(args: argparse.Namespace) -> int:
    from squals_action.manifest import find_repo_root
    from squals_action.onboarding import InitOptions, init

    root = Path(args.dir) if args.dir else find_repo_root(Path.cwd())
    if not root.is_dir():
        raise UsageError(f"squals init: --dir {args.dir!r} is not a directory")
    interactive = not args.yes and sys.stdin.isatty()
    options = InitOptions(
        root=root, provider=args.provider, force=args.force, start=args.start, health=args.health
    )
    return init(options, sys.stdout, _ask if interactive else None)
