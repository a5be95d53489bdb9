"""The ``squals`` command line: argument parsing; failures end in :mod:`squals_action.error_handler`.

Each concern contributes its sub-commands through a module listed in :data:`COMMAND_MODULES`; a module is
imported only to register its parsers, so heavy dependencies stay inside the handlers.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from typing import Protocol

from squals_action import __version__
from squals_action.error_handler import UsageExit, run_guarded
from squals_action.errors import EXIT_USAGE

Handler = Callable[[argparse.Namespace], int]

#: Modules that each expose ``register(subparsers)``; listed explicitly so the CLI's surface is greppable.
COMMAND_MODULES: tuple[str, ...] = (
    "squals_action.cli.init_commands",
    "squals_action.cli.manifest_commands",
    "squals_action.cli.gates_commands",
    "squals_action.cli.state_commands",
    "squals_action.cli.lifecycle_commands",
    "squals_action.cli.shared_commands",
    "squals_action.cli.costs_commands",
    "squals_action.cli.experiment_commands",
)


class CommandModule(Protocol):
    def register(self, subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None: ...


class _Parser(argparse.ArgumentParser):
    """An argparse parser whose usage errors become :class:`UsageExit` instead of ``sys.exit``."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageExit(f"{self.prog}: error: {message}")


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
