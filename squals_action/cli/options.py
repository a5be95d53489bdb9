"""Options shared by the sub-commands that work on a repository and its state: one spelling, one meaning.

Only argparse and the standard library at import time; the project and the store are imported when used.
"""

from __future__ import annotations

import argparse
import getpass
import os
from pathlib import Path
from typing import TYPE_CHECKING

from squals_action.errors import SqualsError

if TYPE_CHECKING:
    from squals_action.lifecycle.project import ProjectOptions


def _at_least_one(text: str, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected {what} >= 1, got {value}")
    return value


def positive_int(text: str) -> int:
    """An argparse type: a whole number >= 1."""
    return _at_least_one(text, "a whole number")


def pull_request_number(text: str) -> int:
    """An argparse type: a pull request number (>= 1)."""
    return _at_least_one(text, "a pull request number")


def duration(text: str) -> float:
    """An argparse type: a duration (``90s``, ``5m``) or a number of seconds."""
    from squals_action.manifest.units import parse_duration

    try:
        return float(text) if text.replace(".", "", 1).isdigit() else parse_duration(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a duration such as 90s or 5m, got {text!r}") from None


def add_state_options(parser: argparse.ArgumentParser, *, squals_file: bool) -> None:
    """The repository and state-branch options; ``--file`` too where a command reads the squals file."""
    if squals_file:
        parser.add_argument(
            "--file", type=Path, help="the squals file (default: squals.yml at the repository root)"
        )
    parser.add_argument("--repo", type=Path, help="the repository (default: the current directory's)")
    parser.add_argument(
        "--remote",
        default="origin",
        help="remote that holds the state branch (default: origin; a repository without any remote keeps "
        "it locally)",
    )
    parser.add_argument(
        "--local-state",
        action="store_true",
        help="keep the state on the branch of this repository itself, push nothing (same as --remote '')",
    )
    parser.add_argument(
        "--state-branch", default="squals/state", help="the state branch (default: squals/state)"
    )


def requested_remote(args: argparse.Namespace) -> str:
    """The remote the options ask for; ``""`` asks for local state."""
    return "" if args.local_state else str(args.remote)


def default_actor(repo: Path | None) -> str:
    """Who is acting: $GITHUB_ACTOR in a workflow, else git's user.name, else the login name."""
    actor = os.environ.get("GITHUB_ACTOR", "").strip()
    if actor:
        return actor
    from squals_action.gitcmd import git_text

    try:
        name = git_text(repo or Path.cwd(), "config", "user.name", timeout=10)
    except SqualsError:
        name = ""
    if name:
        return name
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return "unknown"


def project_options(args: argparse.Namespace, *, gates: bool, run_id: str | None) -> ProjectOptions:
    """The lifecycle project the options name (``--file``, ``--repo`` and the state options)."""
    from squals_action.lifecycle.project import ProjectOptions

    return ProjectOptions(
        repo=args.repo,
        squals_file=args.file,
        remote=requested_remote(args),
        state_branch=args.state_branch,
        run_id=run_id,
        actor=default_actor(args.repo),
        gates=gates,
    )
