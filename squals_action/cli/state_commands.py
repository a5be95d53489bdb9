"""Sub-commands of the state concern: ``squals status``, ``squals history [ENV]``, ``squals unlock ENV``.

Only argparse here: the store (and gitdb), rich and json rendering are imported inside the handlers.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from squals_action.cli.options import (
    add_state_options,
    default_actor,
    positive_int,
    requested_remote,
)
from squals_action.errors import EXIT_OK

if TYPE_CHECKING:
    from squals_action.report.status import LiveTraffic
    from squals_action.state import HistoryEntry, StateStore

#: Transitions ``squals history`` shows unless told otherwise: one page.
HISTORY_PAGE = 50


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``status``, ``history`` and ``unlock``."""
    status = subparsers.add_parser(
        "status",
        help="the public URL, environments (version, status, traffic, URL, figures, lock), experiments",
        description="Read the state branch and print the public URL, then every environment (in natural "
        "order) with its version, status, traffic share, URL while it runs, the requests, errors and p95 "
        "latency the local Dealer tallied for it ('no data' when none runs) and its lock, then the running "
        "experiments.",
    )
    _common(status)
    status.add_argument("--all", action="store_true", help="also list experiments that are over")
    status.set_defaults(handler=run_status)

    history = subparsers.add_parser(
        "history",
        help="recorded transitions, newest first (time, event, environment, PR, actor)",
        description="Print the transitions recorded on the state branch, newest first, read from its "
        f"commit log: one commit per transition. One page at a time: the newest {HISTORY_PAGE} unless "
        "--limit, --since or --all say otherwise; only the commits shown are read.",
    )
    history.add_argument(
        "environment", nargs="?", metavar="ENV", help="only the transitions of ENV (archived ones too)"
    )
    pages = history.add_mutually_exclusive_group()
    pages.add_argument(
        "--limit", type=positive_int, default=None, help=f"at most N transitions (default {HISTORY_PAGE})"
    )
    pages.add_argument("--all", action="store_true", help="every transition (may be thousands)")
    history.add_argument(
        "--since",
        type=since_time,
        metavar="TIME",
        help="only transitions recorded since TIME: ISO 8601 (2026-11-30, 2026-11-30T14:00:00Z) or an age "
        "(30m, 12h, 7d)",
    )
    _common(history)
    history.set_defaults(handler=run_history)

    unlock = subparsers.add_parser(
        "unlock",
        help="break the lock a pull request holds on ENV (recorded with who did it)",
        description="Break the lock on ENV whoever holds it. The transition records the actor: --actor, "
        "else $GITHUB_ACTOR, else git's user.name, else the login name.",
    )
    unlock.add_argument("environment", metavar="ENV", help="the environment to unlock, e.g. prod")
    unlock.add_argument("--actor", help="who breaks the lock (default: $GITHUB_ACTOR, git user.name, login)")
    _common(unlock)
    unlock.set_defaults(handler=run_unlock)


def since_time(text: str) -> datetime:
    """An argparse type: an ISO 8601 date or time (UTC unless it says otherwise), or an age like ``12h``."""
    from squals_action.state import parse_time, utc_now

    match = re.fullmatch(r"(\d+)([mhd])", text.strip())
    if match:
        unit = {"m": "minutes", "h": "hours", "d": "days"}[match.group(2)]
        return utc_now() - timedelta(**{unit: int(match.group(1))})
    try:
        return parse_time(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an ISO 8601 date or time (2026-11-30, 2026-11-30T14:00:00Z) or an age (30m, 12h, 7d), "
            f"got {text!r}"
        ) from None


def _common(parser: argparse.ArgumentParser) -> None:
    add_state_options(parser, squals_file=False)
    parser.add_argument("--format", choices=("text", "json"), default="text", help="output format")


def _open(args: argparse.Namespace) -> StateStore:
    """The store the options name; ``args.remote`` becomes the remote chosen, ``""`` for local-only mode."""
    from squals_action.state import choose_remote, open_store

    repo = args.repo or Path.cwd()
    args.remote = choose_remote(repo, requested_remote(args)) or ""
    return open_store(repo, remote=args.remote or None, branch=args.state_branch)


def _where(args: argparse.Namespace) -> str:
    """Where the state branch is, for messages: ``on origin`` or ``in this repository``."""
    return f"on {args.remote}" if args.remote else "in this repository (local state)"


def _console(out: TextIO) -> Any:
    from squals_action.report.terminal import console

    return console(out)


def _text(value: object) -> Any:
    from squals_action.report.terminal import cell

    return cell(value)


def _live_traffic(repo: Path) -> LiveTraffic | None:
    """The project's local Dealer now (``None`` when none runs): its URL and, if it answers, its tallies."""
    from squals_action.dealer import DealerError, connect_dealer, dealer_status
    from squals_action.dealer.layers import by_upstream
    from squals_action.lifecycle.project import dealer_dir
    from squals_action.report.status import LiveTraffic

    state_dir = dealer_dir(repo)
    status = dealer_status(state_dir)
    if status.state != "running" or status.url is None:
        return None
    try:
        client = connect_dealer(state_dir, timeout=2.0)
        try:
            tallies = by_upstream(client.tallies())  # an environment's cells summed
        finally:
            client.close()
    except DealerError:
        return LiveTraffic(status.url, status.pid, None)
    return LiveTraffic(status.url, status.pid, tallies)


def run_status(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Print the environments and running experiments at the tip of the state branch, with live figures."""
    from squals_action.gitcmd import repo_top
    from squals_action.lifecycle.project import dealer_dir
    from squals_action.report.status import print_status, status_json

    stream = out if out is not None else sys.stdout
    with _open(args) as store:
        snapshot = store.read()
    repo = repo_top((args.repo or Path.cwd()).resolve())
    live = _live_traffic(repo)
    report = status_json(snapshot, args.state_branch, args.all, args.remote or None, live)
    if args.format == "json":
        stream.write(json.dumps(report, indent=2, sort_keys=True) + "\n")
        return EXIT_OK
    if snapshot.commit is None:
        missing = f"No state yet: branch {args.state_branch} does not exist {_where(args)}."
        _console(stream).print(_text(missing))
        return EXIT_OK
    title = f"Environments ({args.state_branch} @ {snapshot.commit[:12]}{_local_mark(args)})"
    shown_dir = dealer_dir(repo).relative_to(repo)
    print_status(stream, report, title=title, live=live, dealer_dir=str(shown_dir), include_all=args.all)
    return EXIT_OK


def _local_mark(args: argparse.Namespace) -> str:
    return "" if args.remote else ", local"


def history_json(entries: list[HistoryEntry]) -> list[dict[str, Any]]:
    return [entry.to_json() for entry in entries]


def run_history(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Print the recorded transitions, newest first."""
    from squals_action.state import format_time
    from squals_action.state.layout import check_name

    stream = out if out is not None else sys.stdout
    if args.environment is not None:
        check_name("environment", args.environment)
    limit = None if args.all else args.limit or (None if args.since else HISTORY_PAGE)
    with _open(args) as store:
        entries = store.history(args.environment, limit, args.since)
    if limit is not None and len(entries) == limit and args.limit is None:
        sys.stderr.write(  # a page, not the whole story: say so, on stderr so JSON stays clean
            f"squals: the newest {limit} transitions; --limit N, --since TIME or --all for more\n"
        )
    if args.format == "json":
        stream.write(json.dumps(history_json(entries), indent=2) + "\n")
        return EXIT_OK
    from rich.table import Table

    console = _console(stream)
    where = f" of {args.environment}" if args.environment else ""
    if not entries:
        console.print(_text(f"No transitions{where} recorded on {args.state_branch} {_where(args)}."))
        return EXIT_OK
    table = Table(
        title=_text(f"Transitions{where} ({args.state_branch}{_local_mark(args)}, newest first)"),
        title_justify="left",
    )
    for column in ("time", "event", "environment", "PR", "actor", "summary", "commit"):
        table.add_column(column)
    for e in entries:
        table.add_row(
            _text(format_time(e.time)),
            _text(e.event),
            _text(e.environment),
            _text(f"#{e.pr}" if e.pr is not None else ""),
            _text(e.actor),
            _text(e.summary),
            _text(e.commit[:12]),
        )
    console.print(table)
    return EXIT_OK


def run_unlock(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Break the lock on ENV; the transition records who did it."""
    from squals_action.report.status import lock_json
    from squals_action.state import format_time
    from squals_action.state.layout import check_name

    stream = out if out is not None else sys.stdout
    check_name("environment", args.environment)
    actor = args.actor or default_actor(args.repo)
    run_id = os.environ.get("GITHUB_RUN_ID") or None
    attempt = int(os.environ.get("GITHUB_RUN_ATTEMPT", "1") or 1)
    with _open(args) as store:
        broken = store.break_lock(args.environment, actor=actor, run_id=run_id, attempt=attempt)
    if args.format == "json":
        report = {"environment": args.environment, "actor": actor, "broken": lock_json(broken)}
        stream.write(json.dumps(report, indent=2) + "\n")
    elif broken is None:
        stream.write(f"{args.environment} was not locked; nothing recorded\n")
    else:
        stream.write(
            f"unlocked {args.environment}: the lock of PR #{broken.pr} "
            f"(since {format_time(broken.acquired_at)}) was broken by {actor}\n"
        )
    return EXIT_OK
