"""``squals gates``: run the compile, test and security gates locally, with the same results as the action.

Only argument parsing lives here; the runner and the report are imported inside the handler so the CLI
starts quickly.
"""

from __future__ import annotations

import argparse

from squals_action.errors import EXIT_FAILURE, EXIT_OK


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``squals gates``."""
    parser = subparsers.add_parser(
        "gates",
        help="run the gates of a squals file (compile -> tests, in parallel with security)",
        description="Run the squals file's gates: compile, then the tests whose path filters match the "
        "change, in parallel with the security checks. Exit code 0 when every gate passed or was skipped.",
    )
    parser.add_argument("file", nargs="?", metavar="FILE", help="the squals file (default: squals.yml)")
    parser.add_argument(
        "--stage",
        action="append",
        choices=("compile", "test", "security"),
        help="run only this stage (repeatable; default: all)",
    )
    parser.add_argument(
        "--base", metavar="REF", help="base of the change: path filters and risk use BASE...HEAD"
    )
    parser.add_argument("--head", metavar="REF", default="HEAD", help="head of the change (default: HEAD)")
    parser.add_argument(
        "--format", choices=("text", "json", "markdown"), default="text", help="report format"
    )
    parser.add_argument("--concurrency", type=int, metavar="N", help="gates run at once (default: cores)")
    parser.add_argument("--log-dir", metavar="DIR", help="where gate logs go (default: .squals/logs)")
    parser.set_defaults(handler=run_gates_command)


def run_gates_command(args: argparse.Namespace) -> int:
    import sys
    from pathlib import Path

    from squals_action.errors import UsageError
    from squals_action.gates.interface import GateResult
    from squals_action.gates.runner import all_ok, make_context, run_pipeline
    from squals_action.manifest import find_repo_root, load
    from squals_action.own_files import own_dir
    from squals_action.report import gates as report
    from squals_action.report import workflow_commands as wc

    if args.concurrency is not None and args.concurrency < 1:
        raise UsageError("--concurrency must be at least 1")
    file = Path(args.file) if args.file else Path("squals.yml")
    if not file.is_file():
        raise UsageError(f"squals file {file} not found (pass FILE)")
    repo = find_repo_root(file.resolve().parent)
    manifest = load(file, repo)
    log_dir = Path(args.log_dir) if args.log_dir else own_dir(repo) / "logs"
    ctx = make_context(
        repo,
        log_dir.resolve(),
        base=args.base,
        head=args.head,
        base_dir=Path(manifest.base_dir),
        passthrough=manifest.env_passthrough,
    )
    live = args.format == "text" and sys.stderr.isatty()

    def progress(result: GateResult) -> None:
        if live:
            print(f"  {result.stage}: {result.name} {result.status}", file=sys.stderr, flush=True)

    results = run_pipeline(
        manifest.gates, ctx, stages=args.stage, concurrency=args.concurrency, on_result=progress
    )
    if wc.in_github_actions():
        report.emit_github(results)
        wc.append_step_summary(report.to_markdown(results))
    if args.format == "json":
        print(report.to_json_text(results))
    elif args.format == "markdown":
        print(report.to_markdown(results), end="")
    else:
        print(report.to_text(results))
    return EXIT_OK if all_ok(results) else EXIT_FAILURE
