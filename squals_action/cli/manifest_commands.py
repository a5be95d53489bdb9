"""Sub-commands of the manifest concern: ``squals validate`` and ``squals schema``.

Kept light: YAML, jsonschema and the validator are imported inside the handlers.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TextIO

from squals_action.errors import EXIT_FAILURE, EXIT_OK, UsageError


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``validate`` and ``schema``."""
    validate = subparsers.add_parser(
        "validate",
        help="check squals files and print every problem with its location",
        description="Check squals files. Without PATH, find squals.yml and squals/*.yml at the "
        "repository root. "
        "Exit 0 when valid, 1 when a problem was found, 2 for a usage error (a missing file included).",
    )
    validate.add_argument(
        "paths", nargs="*", metavar="PATH", help="squals files, or directories to search for squals files"
    )
    validate.add_argument(
        "--format",
        choices=("text", "json", "github"),
        default="text",
        help="text: path:line:col: error: where: what; json: one document; github: workflow commands",
    )
    validate.add_argument(
        "--repo-root", metavar="DIR", help="repository root that references must stay inside"
    )
    validate.add_argument(
        "--commit",
        metavar="REF",
        help="look for the scripts the commands start (./scripts/x.sh) in this commit, as a deploy of it "
        "runs them (default: the working tree)",
    )
    validate.set_defaults(handler=run_validate)

    schema = subparsers.add_parser(
        "schema", help="print the squals file's JSON Schema (or its reference doc)"
    )
    schema.add_argument("--format", choices=("json", "markdown"), default="json")
    schema.set_defaults(handler=run_schema)


class NoSqualsFile(UsageError):
    """Discovery found nothing to validate: a missing file is a usage error (exit 2) whether named or not."""


def _paths(args: argparse.Namespace) -> tuple[list[Path], Path | None]:
    from squals_action.manifest import discover, find_repo_root

    repo_root = Path(args.repo_root) if args.repo_root else None
    if repo_root is not None and not repo_root.is_dir():
        raise UsageError(f"squals validate: --repo-root {args.repo_root!r} is not a directory")
    if args.paths:
        paths: list[Path] = []
        for raw in args.paths:
            path = Path(raw)
            if path.is_dir():
                found_here = discover(path)
                if not found_here:
                    raise UsageError(f"squals validate: no squals.yml or squals/*.yml in {path}")
                paths.extend(found_here)
            elif path.exists():
                paths.append(path)
            else:
                raise UsageError(f"squals validate: no such file: {path}")
        return paths, repo_root
    root = repo_root if repo_root is not None else find_repo_root(Path.cwd())
    found = discover(root)
    if not found:
        raise NoSqualsFile(f"no squals file found: looked for squals.yml and squals/*.yml in {root}")
    return found, repo_root


def run_validate(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Validate and print problems; the exit code says whether the files are valid."""
    from squals_action.manifest import validate_paths
    from squals_action.manifest.scripts import Scripts
    from squals_action.report import workflow_commands as wc

    stream = out if out is not None else sys.stdout
    paths, repo_root = _paths(args)
    if args.commit is not None:  # a usage error even when no command starts a script
        from squals_action.gitcmd import resolve_commit
        from squals_action.manifest import find_repo_root

        resolve_commit(repo_root or find_repo_root(paths[0].absolute().parent), args.commit, error=UsageError)
    report = validate_paths(paths, repo_root=repo_root, scripts=Scripts(args.commit))
    lines: list[str] = []
    if args.format == "json":
        lines.append(json.dumps(report.as_dict(), indent=2))
    elif args.format == "github":
        lines.extend(
            wc.error(f"{p.where}: {p.message}", file=p.file, line=p.line, col=p.col, title="squals file")
            for p in report.problems
        )
    else:
        lines.extend(p.render() for p in report.problems)
        if args.format == "text" and wc.in_github_actions(os.environ):
            lines.extend(
                wc.error(f"{p.where}: {p.message}", file=p.file, line=p.line, col=p.col, title="squals file")
                for p in report.problems
            )
        files = len(report.files)
        plural = "s" if files != 1 else ""
        if report.valid:
            summary = f"squals: {files} squals file{plural} valid"
        else:
            count = len(report.problems)
            summary = f"squals: {count} problem{'s' if count != 1 else ''} in {files} file{plural}"
        print(summary, file=sys.stderr)
    stream.write("".join(line + "\n" for line in lines))
    stream.flush()
    return EXIT_OK if report.valid else EXIT_FAILURE


def run_schema(args: argparse.Namespace) -> int:
    """Print the schema (``--format json``) or the reference generated from it (``markdown``)."""
    if args.format == "markdown":
        from squals_action.manifest.reference import render_reference

        sys.stdout.write(render_reference())
    else:
        from squals_action.manifest.schema import schema_text

        sys.stdout.write(schema_text())
    return EXIT_OK
