"""``squals shared up|down|status``: the squals file's shared resources, whose lifetime is their own.

A deploy starts the shared resources its squals file declares when they do not run yet, and nothing else ever
stops them (not teardown, promotion or ``squals down``): ``squals shared down`` is the one way.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

from squals_action.cli.options import add_state_options, project_options
from squals_action.errors import EXIT_FAILURE, EXIT_OK, UsageError


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``squals shared``."""
    shared = subparsers.add_parser(
        "shared",
        help="start, stop or show the shared resources (shared: in the squals file)",
        description="Shared resources are started once and used by every island (as "
        "SQUALS_SHARED_<NAME>_URL); teardown, promotion and 'squals down' never stop them.",
    )
    actions = shared.add_subparsers(dest="shared_action", metavar="ACTION", required=True)
    up = actions.add_parser("up", help="start the declared resources that do not run yet")
    up.add_argument("names", nargs="*", metavar="NAME", help="only these (default: every declared one)")
    up.add_argument("--commit", default="HEAD", help="commit whose files start them (default: HEAD)")
    down = actions.add_parser("down", help="stop and remove shared resources")
    down.add_argument("names", nargs="*", metavar="NAME", help="only these (default: every one)")
    status = actions.add_parser("status", help="each resource: running, down or not started, and its URL")
    for parser in (up, down, status):
        add_state_options(parser, squals_file=True)
        parser.set_defaults(handler=run_shared)


def run_shared(args: argparse.Namespace) -> int:
    from squals_action.lifecycle.project import load_project_manifest
    from squals_action.providers import get_provider

    repo, manifest = load_project_manifest(project_options(args, gates=False, run_id=None))
    provider = get_provider(manifest.provider.kind, repo, manifest.provider)
    resources = provider.shared_resources()
    out = sys.stdout
    if args.shared_action == "status":
        statuses = resources.status(manifest)
        if not statuses:
            out.write("no shared resources (the squals file declares none and none runs)\n")
        for status in statuses:
            where = f" at {status.url}" if status.url else ""
            detail = f" ({status.detail})" if status.detail else ""
            out.write(f"{status.name}: {status.state}{where}{detail}\n")
        return EXIT_OK
    if args.shared_action == "up":
        unknown = sorted(set(args.names) - set(manifest.shared))
        if unknown:
            raise UsageError(
                f"{manifest.path}: no shared resource {unknown[0]!r} declared "
                f"(declared: {', '.join(sorted(manifest.shared)) or 'none'})"
            )
        wanted = {n: r for n, r in manifest.shared.items() if not args.names or n in args.names}
        running = resources.ensure(dataclasses.replace(manifest, shared=wanted), args.commit)
        for handle in running:
            out.write(f"{handle.name}: running at {handle.url} ({handle.env_var})\n")
        return EXIT_OK
    outcomes = resources.remove(args.names or None)
    if not outcomes:
        out.write("no shared resources to remove\n")
    for outcome in outcomes:
        out.write(f"{outcome.env}: {'removed' if outcome.ok else 'FAILED'} ({outcome.detail})\n")
    return EXIT_OK if all(o.ok for o in outcomes) else EXIT_FAILURE
