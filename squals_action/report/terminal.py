"""What every terminal view shares: a rich console per stream, cells that show untrusted text as it is, and
the order people expect names in (``pr-2`` before ``pr-10``).

``rich`` is imported when a console or a cell is built, never when this module is imported.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import IO, Any

#: Width of a view written to a file or a pipe: wide enough that a status table does not wrap its cells.
PIPE_WIDTH = 240


def console(out: IO[str]) -> Any:
    """A rich console on ``out``: colours and the terminal's width on a terminal, plain text otherwise."""
    from rich.console import Console

    return Console(file=out, highlight=False, soft_wrap=False, width=None if out.isatty() else PIPE_WIDTH)


def cell(value: object) -> Any:
    """A table cell shown as is: untrusted text (PR titles, logins, command output) is never rich markup."""
    from rich.text import Text

    return Text("" if value is None else str(value))


def unbroken(values: Iterable[object]) -> dict[str, Any]:
    """Column options that keep every one of ``values`` whole (a URL cut or folded cannot be copied): on a
    narrow terminal the other columns wrap instead."""
    return {"no_wrap": True, "min_width": max((len(str(v)) for v in values if v), default=1)}
