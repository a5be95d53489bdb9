"""``squals costs``: what each environment and shared resource costs, shared costs split by traffic."""

from __future__ import annotations

import argparse
import json
import sys

from squals_action.cli.options import add_state_options, positive_int, project_options
from squals_action.errors import EXIT_OK


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``squals costs``."""
    costs = subparsers.add_parser(
        "costs",
        help="cost per environment and shared resource, shared costs allocated by traffic",
        description="On aws: AWS Cost Explorer grouped by the squals:environment and squals:shared tags "
        "over the last --days days, each shared resource's cost allocated to the islands in proportion to "
        "their requests (CloudWatch). Locally: CPU-seconds and memory-hours of each island's and shared "
        "resource's processes, shared ones allocated by requests through the Dealer.",
    )
    costs.add_argument("--days", type=positive_int, default=30, help="aws: the period in days (default 30)")
    costs.add_argument("--format", choices=("text", "markdown", "json"), default="text")
    add_state_options(costs, squals_file=True)
    costs.set_defaults(handler=run_costs)


def run_costs(args: argparse.Namespace) -> int:
    from squals_action.costs import measure_costs
    from squals_action.lifecycle.project import load_project_manifest, squals_dir
    from squals_action.providers import get_provider
    from squals_action.report import costs as render

    repo, manifest = load_project_manifest(project_options(args, gates=False, run_id=None))
    provider = get_provider(manifest.provider.kind, repo, manifest.provider)
    reports = measure_costs(provider, dealer_dir=squals_dir(repo) / "dealer", days=args.days)
    if args.format == "json":
        sys.stdout.write(json.dumps(render.as_json(reports), indent=2, sort_keys=True) + "\n")
    elif args.format == "markdown":
        sys.stdout.write(render.markdown(reports))
    else:
        sys.stdout.write(render.text(reports))
    return EXIT_OK
