"""The error hierarchy every concern raises from, so the CLI and the action have one exit place.

Each error knows its exit code and renders as one line; nothing here prints or exits.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 70


class SqualsError(Exception):
    """An expected failure with a one-line message for the user."""

    exit_code = EXIT_FAILURE

    def one_line(self) -> str:
        return one_line(self)


def one_line(exc: BaseException) -> str:
    """Any exception's message on one line (an ``OSError``'s too), else its type's name."""
    return " ".join(str(exc).split()) or type(exc).__name__


class UsageError(SqualsError):
    """The command line itself is wrong (bad flag value, missing file argument)."""

    exit_code = EXIT_USAGE
