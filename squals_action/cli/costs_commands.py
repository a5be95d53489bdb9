"""``squals costs``: what each environment and shared resource costs, shared costs split by traffic."""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from squals_action.cli.options import add_state_options, positive_int, project_options
from squals_action.errors import EXIT_OK

if TYPE_CHECKING:
    from squals_action.costs.placed import Opener
    from squals_action.lifecycle.machine import Env


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``squals costs``."""
    costs = subparsers.add_parser(
        "costs",
        help="cost per environment and shared resource, shared costs allocated by traffic",
        description="On aws: AWS Cost Explorer grouped by the squals:environment and squals:shared tags "
        "over the last --days days, each shared resource's cost allocated to the islands in proportion to "
        "their requests (CloudWatch). Locally: CPU-seconds and memory-hours of each island's and shared "
        "resource's processes, shared ones allocated by requests through the Dealer. Each environment is "
        "measured where it was deployed (the provider section of its recorded commit; an experiment's "
        "islands, of its start commit), shared resources with prod's provider.",
    )
    costs.add_argument("--days", type=positive_int, default=30, help="aws: the period in days (default 30)")
    costs.add_argument("--format", choices=("text", "markdown", "json"), default="text")
    add_state_options(costs, squals_file=True)
    costs.set_defaults(handler=run_costs)


def run_costs(args: argparse.Namespace) -> int:
    from squals_action.costs.placed import measure_placed
    from squals_action.lifecycle.project import open_project, squals_dir
    from squals_action.report import costs as render

    lifecycle = open_project(project_options(args, gates=False, run_id=None))
    try:
        reports = measure_placed(
            lambda: contextlib.nullcontext(lifecycle.provider),
            _placed_islands(lifecycle),
            dealer_dir=squals_dir(lifecycle.repo) / "dealer",
            days=args.days,
        )
    finally:
        lifecycle.store.close()
    if args.format == "json":
        sys.stdout.write(json.dumps(render.as_json(reports), indent=2, sort_keys=True) + "\n")
    elif args.format == "markdown":
        sys.stdout.write(render.markdown(reports))
    else:
        sys.stdout.write(render.text(reports))
    return EXIT_OK


def prod_first(fleet: Iterable[Env]) -> list[Env]:
    """The environments, prod first: its provider is the home of the shared resources (the order of the
    others is kept)."""
    from squals_action.lifecycle.machine import Status

    return sorted(fleet, key=lambda env: env.status is not Status.PROD)


def _placed_islands(lifecycle: Any) -> dict[str, Opener]:
    """Every island a record places -> how to open the provider it was made with: an environment's (not
    retired, with a deployed commit) from that commit, prod's first (the home of the shared resources),
    an active experiment's from its start commit."""
    from squals_action.experiments.engine import from_lifecycle
    from squals_action.experiments.records import ACTIVE, island_names_of
    from squals_action.lifecycle.machine import Status

    islands: dict[str, Opener] = {}
    for env in prod_first(lifecycle.fleet().values()):
        island = (env.handle or {}).get("env")
        if isinstance(island, str) and env.commit and env.status != Status.RETIRED:
            islands.setdefault(island, functools.partial(lifecycle.provider_of, env.name))
    engine = from_lifecycle(lifecycle)
    for doc in lifecycle.store.read().experiments().values():
        if doc.status in ACTIVE:
            for island in island_names_of(doc).values():
                islands.setdefault(island, functools.partial(engine.provider_of, doc))
    return islands
