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
from squals_action.errors import EXIT_USAGE, SqualsError

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
        try:
            return handler(args)
        except SqualsError as exc:
            raise _with_hint(args, exc) from exc

    return run_guarded(body, "squals")


class _HintedError(SqualsError):
    """An error with what the person at the terminal can do about it; the exit code is the original's."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def _with_hint(args: argparse.Namespace, exc: SqualsError) -> SqualsError:
    """``exc``, or the same line with a way out: an unreachable state remote suggests ``--local-state``."""
    from squals_action.state.errors import RemoteUnreachableError

    if isinstance(exc, RemoteUnreachableError) and hasattr(args, "local_state"):
        return _HintedError(
            f"{exc.one_line()}; if {exc.remote!r} cannot be reached from here, --local-state keeps the "
            "state in this repository instead",
            exc.exit_code,
        )
    return exc
