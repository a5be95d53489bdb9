"""The lifecycle's sub-commands: ``deploy``, ``promote``, ``rollback``, ``teardown``, ``down``, ``demo``.

Only argparse here; the engine, the provider, the Dealer and the state store are imported by the handlers.
Progress goes to stderr and the outcome to stdout, both for people (rich tables, colours on a terminal); the
PR comment's markdown only with ``--report markdown`` (``squals promote --pr 7 --report markdown > c.md``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from squals_action.cli.options import (
    add_state_options,
    duration,
    project_options,
    pull_request_number,
)
from squals_action.errors import EXIT_FAILURE, EXIT_OK, UsageError


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the lifecycle's sub-commands."""
    deploy = subparsers.add_parser(
        "deploy",
        help="gates, hooks, the island pr-N from a commit, exit tests",
        description="Validate, run the gates, run before_preprod hooks, provision the island pr-N from "
        "COMMIT, run after_preprod hooks and the exit tests against its URL. Each step is a state "
        "transition.",
    )
    deploy.add_argument(
        "--pr", type=pull_request_number, required=True, help="pull request number (the island is pr-N)"
    )
    deploy.add_argument(
        "--commit",
        help="commit to deploy, exactly as committed whatever the working tree holds (default: HEAD, "
        "refused while the working tree has uncommitted changes)",
    )
    deploy.add_argument(
        "--allow-dirty",
        action="store_true",
        help="deploy the working tree with its uncommitted files (recorded as dirty: deploy <sha>+dirty)",
    )
    deploy.add_argument("--skip-gates", action="store_true", help="do not run the gates (they ran elsewhere)")
    _common(deploy, locks=True)
    deploy.set_defaults(handler=run_deploy)

    promote = subparsers.add_parser(
        "promote",
        help="blue/green: pr-N gets the blue share, bakes, then takes all traffic",
        description="The current prod is GREEN, pr-N becomes BLUE with each share of rollout.steps in "
        "turn (or rollout.blue_share); at each, in-flight tests, KPIs and alarms are watched for its bake; "
        "then the promote hooks, BLUE takes 100 %, the old prod becomes postprod at 0 % and after_postprod "
        "hooks run. A breach returns all traffic to GREEN; so does a bake without data (inconclusive: BLUE "
        "stays ready).",
    )
    promote.add_argument(
        "--pr", type=pull_request_number, required=True, help="pull request whose island is promoted"
    )
    _common(promote, locks=True)
    promote.set_defaults(handler=run_promote)

    rollback = subparsers.add_parser(
        "rollback",
        help="swap prod and postprod: one traffic switch",
        description="Make postprod prod again and prod postprod, with one traffic switch and no rebuild. "
        "During an interrupted promotion, return all traffic to GREEN instead.",
    )
    rollback.add_argument(
        "--pr", type=pull_request_number, help="pull request asking (holds the prod lock; default: prod's)"
    )
    _common(rollback, locks=True)
    rollback.set_defaults(handler=run_rollback)

    teardown = subparsers.add_parser(
        "teardown",
        help="destroy the island of a closed pull request",
        description="Destroy pr-N. An island that serves prod or postprod is kept (the next promotion "
        "retires it).",
    )
    teardown.add_argument("--pr", type=pull_request_number, required=True)
    _common(teardown, locks=True)
    teardown.set_defaults(handler=run_teardown)

    down = subparsers.add_parser(
        "down",
        help="stop everything this project started (environments, the Dealer)",
        description="Stop every environment and the Dealer of this repository and record it. Breaks the "
        "locks of what it stopped. An AWS front door is kept unless --front-door is given.",
    )
    down.add_argument(
        "--front-door",
        action="store_true",
        help="also delete the front-door stack (aws; nothing else ever deletes it)",
    )
    _common(down)
    down.set_defaults(handler=run_down)

    demo = subparsers.add_parser(
        "demo",
        help="the whole story on examples/shop in a temporary repository",
        description="Copy examples/shop into a temporary git repository and tell the story: a PR opens "
        "(island, exit tests), promotion under synthetic loopback traffic, status, rollback, promotion "
        "again; print the PR comment at each step; stop everything it started.",
    )
    demo.add_argument("--example", type=Path, help="the example to copy (default: examples/shop)")
    demo.add_argument("--bake", type=float, default=3.0, help="bake seconds in the demo (default 3)")
    demo.add_argument("--keep", action="store_true", help="keep the temporary repository (it is printed)")
    demo.set_defaults(handler=run_demo)


def _common(parser: argparse.ArgumentParser, *, locks: bool = False) -> None:
    add_state_options(parser, squals_file=True)
    if locks:
        parser.add_argument(
            "--lock-wait",
            type=duration,
            default=0.0,
            metavar="DURATION",
            help="wait up to DURATION (90s, 5m) for a lock another run holds (default: stop at once)",
        )
    parser.add_argument(
        "--report",
        choices=("text", "markdown", "none"),
        default="text",
        help="what goes to stdout: text (tables for people, the default), markdown (the PR comment) or none",
    )


def _open(args: argparse.Namespace, gates: bool = True) -> Any:
    from squals_action.lifecycle.project import open_project
    from squals_action.report.lifecycle import progress_for

    # No run id from the CLI: a person's commands are not replays of each other; the Action passes its own.
    options = project_options(args, gates=gates, run_id=None)
    lifecycle = open_project(options, progress_for(sys.stderr))
    lifecycle.lock_wait = getattr(args, "lock_wait", 0.0)
    return lifecycle


def _finish(args: argparse.Namespace, lifecycle: Any, outcome: Any) -> int:
    from squals_action.report.lifecycle import markdown, print_text

    if args.report == "markdown":
        sys.stdout.write(markdown(outcome))
    elif args.report == "text":
        print_text(outcome, sys.stdout, shown=getattr(lifecycle.progress, "shown", ()))
    return EXIT_OK if outcome.ok else EXIT_FAILURE


def _interruptible(lifecycle: Any, body: Any) -> Any:
    """Ctrl-C during a bake sets the cancel flag so traffic returns to GREEN before we exit."""
    import signal

    def on_sigint(signum: int, frame: object) -> None:
        if lifecycle.cancel.is_set():
            raise KeyboardInterrupt
        lifecycle.cancel.set()

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        return body()
    finally:
        signal.signal(signal.SIGINT, previous)


def run_deploy(args: argparse.Namespace) -> int:
    if args.allow_dirty and args.commit is not None:
        raise UsageError("--allow-dirty deploys the working tree; it cannot be combined with --commit")
    lifecycle = _open(args, gates=not args.skip_gates)
    return _finish(args, lifecycle, lifecycle.deploy(args.pr, args.commit, allow_dirty=args.allow_dirty))


def run_promote(args: argparse.Namespace) -> int:
    lifecycle = _open(args)
    return _finish(args, lifecycle, _interruptible(lifecycle, lambda: lifecycle.promote(args.pr)))


def run_rollback(args: argparse.Namespace) -> int:
    lifecycle = _open(args)
    return _finish(args, lifecycle, lifecycle.rollback(args.pr))


def run_teardown(args: argparse.Namespace) -> int:
    lifecycle = _open(args)
    return _finish(args, lifecycle, lifecycle.teardown(args.pr))


def run_down(args: argparse.Namespace) -> int:
    lifecycle = _open(args)
    door = None
    if args.front_door:
        from squals_action.providers.aws import AwsProvider
        from squals_action.providers.aws_front_door import FrontDoorStack

        if not isinstance(lifecycle.provider, AwsProvider):
            raise UsageError("--front-door: only the aws provider has a front door")
        door = FrontDoorStack(lifecycle.provider)  # refuses a squals file that declares none, before down
    code = _finish(args, lifecycle, lifecycle.down())
    if door is not None:
        outcome = door.delete()
        sys.stderr.write(f"front door: {outcome.detail}\n")
        if not outcome.ok:
            code = EXIT_FAILURE
    return code


def run_demo(args: argparse.Namespace) -> int:
    from squals_action.demo import run_demo as demo

    code: int = demo(example=args.example, bake=args.bake, keep=args.keep)
    return code
