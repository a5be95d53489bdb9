"""The ``squals`` command line: argument parsing only, and the one place that maps errors to exit codes.

Each concern contributes its sub-commands through a module listed in :data:`COMMAND_MODULES`; a module is
imported only to register its parsers, so heavy dependencies stay inside the handlers.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import tempfile
import traceback
from collections.abc import Callable, Sequence
from typing import Protocol

from squals_action import __version__
from squals_action.errors import EXIT_INTERNAL, EXIT_USAGE, SqualsError

Handler = Callable[[argparse.Namespace], int]

#: Modules that each expose ``register(subparsers)``; listed explicitly so the CLI's surface is greppable.
COMMAND_MODULES: tuple[str, ...] = (
    "squals_action.cli.manifest_commands",
    "squals_action.cli.gates_commands",
    "squals_action.cli.state_commands",
    "squals_action.cli.lifecycle_commands",
    "squals_action.cli.experiment_commands",
)


class CommandModule(Protocol):
    def register(self, subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None: ...


class _Parser(argparse.ArgumentParser):
    """An argparse parser whose usage errors become :class:`UsageExit` instead of ``sys.exit``."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageExit(f"{self.prog}: error: {message}")


class UsageExit(Exception):
    pass


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="squals", description="Pull-request-driven delivery with git-native state.")
    parser.add_argument("--version", action="version", version=f"squals {__version__}")
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser] = parser.add_subparsers(
        dest="command", metavar="COMMAND", parser_class=_Parser
    )
    for name in COMMAND_MODULES:
        module: CommandModule = importlib.import_module(name)
        module.register(subparsers)
    return parser


def run_guarded(body: Callable[[], int], prog: str) -> int:
    """Run ``body`` and turn every failure into an exit code and one line on stderr, never a traceback."""
    try:
        return body()
    except UsageExit as exc:
        print(exc, file=sys.stderr)
        return EXIT_USAGE
    except SqualsError as exc:
        print(f"{prog}: error: {exc.one_line()}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # the one place that catches everything, by design
        with tempfile.NamedTemporaryFile(
            "w", prefix=f"{prog}-crash-", suffix=".log", delete=False, encoding="utf-8"
        ) as log:
            traceback.print_exc(file=log)
        summary = " ".join(str(exc).split())[:200]
        print(
            f"{prog}: internal error: {type(exc).__name__}: {summary} (traceback written to {log.name})",
            file=sys.stderr,
        )
        return EXIT_INTERNAL


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `squals` console script."""
    def body() -> int:
        parser = build_parser()
        args = parser.parse_args(argv)
        handler: Handler | None = getattr(args, "handler", None)
        if handler is None:
            parser.print_help(sys.stderr)
            return EXIT_USAGE
        return handler(args)

    return run_guarded(body, "squals")
