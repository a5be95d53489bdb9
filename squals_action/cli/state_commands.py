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
    from squals_action.state import HistoryEntry, Lock, Snapshot, StateStore

#: Transitions ``squals history`` shows unless told otherwise: one page.
HISTORY_PAGE = 50


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``status``, ``history`` and ``unlock``."""
    status = subparsers.add_parser(
        "status",
        help="environments (version, URL, traffic, status, lock) and running experiments",
        description="Read the state branch and print every environment with its version, URL, traffic "
        "share, status and lock, then the running experiments.",
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
    from rich.console import Console

    return Console(file=out, highlight=False, soft_wrap=False, width=None if out.isatty() else 160)


def _text(value: object) -> Any:
    """A table cell that is shown as is: untrusted text (PR titles, logins) is never read as rich markup."""
    from rich.text import Text

    return Text("" if value is None else str(value))


def _lock_line(lock: Lock | None) -> str:
    from squals_action.state import format_time, utc_now

    if lock is None:
        return ""
    line = f"PR #{lock.pr} since {format_time(lock.acquired_at)}"
    if lock.expired(utc_now()):
        line += " (expired)"
    return line


def _lock_json(lock: Lock | None) -> dict[str, Any] | None:
    from squals_action.state import utc_now

    if lock is None:
        return None
    doc = lock.to_json()
    doc.pop("schema_version", None)
    doc["expired"] = lock.expired(utc_now())
    return doc


def status_json(
    snapshot: Snapshot, branch: str, include_all: bool = False, remote: str | None = None
) -> dict[str, Any]:
    """The ``--format json`` document of ``squals status`` (environments, locks, experiments).

    ``remote``: the remote that holds the branch, ``None`` for the repository's own (local-only mode).
    """
    envs = snapshot.environments()
    locks = snapshot.locks()
    environments = []
    for name in sorted(set(envs) | set(locks)):
        env = envs.get(name)
        doc: dict[str, Any] = env.to_json() if env is not None else {"name": name, "status": None}
        doc.pop("schema_version", None)
        doc["lock"] = _lock_json(locks.get(name))
        environments.append(doc)
    experiments = []
    for experiment in snapshot.experiments().values():
        if include_all or experiment.status == "running":
            exp_doc = experiment.to_json()
            exp_doc.pop("schema_version", None)
            experiments.append(exp_doc)
    return {
        "branch": branch,
        "remote": remote,
        "commit": snapshot.commit,
        "environments": environments,
        "experiments": experiments,
    }


def run_status(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Print the environments and running experiments at the tip of the state branch."""
    stream = out if out is not None else sys.stdout
    with _open(args) as store:
        snapshot = store.read()
    report = status_json(snapshot, args.state_branch, args.all, args.remote or None)
    if args.format == "json":
        stream.write(json.dumps(report, indent=2, sort_keys=True) + "\n")
        return EXIT_OK
    from rich.table import Table

    console = _console(stream)
    if snapshot.commit is None:
        console.print(_text(f"No state yet: branch {args.state_branch} does not exist {_where(args)}."))
        return EXIT_OK
    locks = snapshot.locks()
    table = Table(
        title=_text(f"Environments ({args.state_branch} @ {snapshot.commit[:12]}{_local_mark(args)})"),
        title_justify="left",
    )
    for column in ("environment", "version", "status", "traffic", "URL", "lock", "updated"):
        table.add_column(column, justify="right" if column == "traffic" else "left")
    for env in report["environments"]:
        share = env.get("traffic_share")
        table.add_row(
            _text(env["name"]),
            _text(env.get("version") or (env.get("commit") or "")[:12]),
            _text(env.get("status") or "-"),
            _text(f"{share:g} %" if share is not None else ""),
            _text(env.get("url")),
            _text(_lock_line(locks.get(env["name"]))),
            _text(env.get("updated_at")),
        )
    console.print(table if report["environments"] else _text("No environments."))
    experiments = Table(
        title=_text("Experiments" if args.all else "Running experiments"), title_justify="left"
    )
    for column in ("experiment", "status", "variants", "decision", "updated"):
        experiments.add_column(column)
    for exp in report["experiments"]:
        split = exp.get("split") or {}
        variants = ", ".join(f"{v} {split[v]:g} %" if v in split else v for v in exp["variants"])
        decision = exp.get("decision") or {}
        verdict = " ".join(str(decision[k]) for k in ("outcome", "winner") if decision.get(k))
        experiments.add_row(
            _text(exp["id"]),
            _text(exp["status"]),
            _text(variants),
            _text(verdict),
            _text(exp.get("updated_at")),
        )
    if report["experiments"]:
        console.print(experiments)
    else:
        console.print(_text("No running experiments." if not args.all else "No experiments."))
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
        report = {"environment": args.environment, "actor": actor, "broken": _lock_json(broken)}
        stream.write(json.dumps(report, indent=2) + "\n")
    elif broken is None:
        stream.write(f"{args.environment} was not locked; nothing recorded\n")
    else:
        stream.write(
            f"unlocked {args.environment}: the lock of PR #{broken.pr} "
            f"(since {format_time(broken.acquired_at)}) was broken by {actor}\n"
        )
    return EXIT_OK
