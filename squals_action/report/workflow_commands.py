"""GitHub Actions workflow commands and environment files, escaped exactly as the runner parses them.

Everything a step prints that starts with ``::`` is a command to the runner, so untrusted text must be
escaped (``%``, CR and LF in the message; additionally ``:`` and ``,`` in properties) or it could end the
command early or forge another one. Outputs and step summaries go through the files the runner names in
``GITHUB_OUTPUT`` / ``GITHUB_STEP_SUMMARY``; multi-line values use a heredoc delimiter that is random and
checked not to occur in the value, so a value can never inject a second output.

The builders (:func:`error`, :func:`group`, ...) return the command line as a string and print nothing;
:func:`emit` writes lines to stdout. Reference: docs.github.com "Workflow commands for GitHub Actions".
"""

from __future__ import annotations

import functools
import os
import secrets
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Literal, TextIO

from squals_action.errors import SqualsError

AnnotationLevel = Literal["error", "warning", "notice"]

#: GitHub refuses a job summary over 1 MiB for one step; we cut before that instead of losing it all.
STEP_SUMMARY_LIMIT = 1024 * 1024


class WorkflowCommandError(SqualsError):
    """An output or environment name the runner would misread (empty, or containing a line break or ``=``)."""


def escape_data(value: str) -> str:
    """Escape a command's message: ``%`` first, then CR and LF, so the runner restores the exact text."""
    return value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(value: str) -> str:
    """Escape a property value: as a message, plus ``:`` and ``,`` which delimit properties."""
    return escape_data(value).replace(":", "%3A").replace(",", "%2C")


def command(name: str, message: str = "", properties: Mapping[str, object] | None = None) -> str:
    """One ``::name key=value,...::message`` line; properties whose value is ``None`` are left out."""
    props = ",".join(
        f"{key}={escape_property(str(value))}"
        for key, value in (properties or {}).items()
        if value is not None
    )
    head = f"{name} {props}" if props else name
    return f"::{head}::{escape_data(message)}"


def annotation(
    level: AnnotationLevel,
    message: str,
    *,
    file: str | None = None,
    line: int | None = None,
    col: int | None = None,
    end_line: int | None = None,
    end_column: int | None = None,
    title: str | None = None,
) -> str:
    """An annotation shown on the run and, when ``file``/``line`` fall in the diff, on the PR's files."""
    return command(
        level,
        message,
        {
            "title": title,
            "file": file,
            "line": line,
            "endLine": end_line,
            "col": col,
            "endColumn": end_column,
        },
    )


error = functools.partial(annotation, "error")
error.__doc__ = "An ``::error`` annotation line (the arguments of :func:`annotation` but the level)."
warning = functools.partial(annotation, "warning")
warning.__doc__ = "A ``::warning`` annotation line."
notice = functools.partial(annotation, "notice")
notice.__doc__ = "A ``::notice`` annotation line."


def group(title: str) -> str:
    """Start a collapsible group in the log."""
    return command("group", title)


def endgroup() -> str:
    """End the current collapsible group."""
    return command("endgroup")


def add_mask(value: str) -> list[str]:
    """Lines that mask ``value`` in all later log output.

    The runner masks line by line, so a multi-line secret is masked one non-empty line at a time.
    """
    return [command("add-mask", part) for part in value.splitlines() if part.strip()]


def stop_commands_token() -> str:
    """A fresh token for :func:`stop_commands`; unguessable so logged text cannot resume commands."""
    return f"squals-{secrets.token_hex(16)}"


def emit(*lines: str, stream: TextIO | None = None) -> None:
    """Print command lines to stdout (where the runner reads them) and flush so they keep their order."""
    out = stream if stream is not None else sys.stdout
    for line in lines:
        out.write(line + "\n")
    out.flush()


@contextmanager
def grouped(title: str, stream: TextIO | None = None) -> Iterator[None]:
    """Wrap a block's output in a collapsible log group; the group is closed even when the block fails."""
    emit(group(title), stream=stream)
    try:
        yield
    finally:
        emit(endgroup(), stream=stream)


@contextmanager
def stop_commands(stream: TextIO | None = None) -> Iterator[None]:
    """Make the runner ignore workflow commands while untrusted output (e.g. a user's test log) is printed."""
    token = stop_commands_token()
    emit(f"::stop-commands::{token}", stream=stream)
    try:
        yield
    finally:
        emit(f"::{token}::", stream=stream)


def _check_name(name: str, what: str) -> None:
    if not name or any(ch in name for ch in "\r\n=") or name != name.strip():
        raise WorkflowCommandError(
            f"{what} name {name!r} is not usable: no spaces around, '=' or line breaks"
        )


def heredoc_delimiter(value: str) -> str:
    """A random delimiter that occurs nowhere in ``value`` (so the value cannot close the heredoc early)."""
    while True:
        delimiter = f"ghadelimiter_{secrets.token_hex(16)}"
        if delimiter not in value:
            return delimiter


def format_file_command(name: str, value: str) -> str:
    """The ``name<<DELIM`` block the runner reads from GITHUB_OUTPUT / GITHUB_ENV; safe for any value."""
    delimiter = heredoc_delimiter(value)
    return f"{name}<<{delimiter}\n{value}\n{delimiter}\n"


def _env_file(variable: str, path: str | os.PathLike[str] | None) -> Path | None:
    if path is not None:
        return Path(path)
    named = os.environ.get(variable, "")
    return Path(named) if named else None


def set_output(name: str, value: str, *, path: str | os.PathLike[str] | None = None) -> bool:
    """Set a step output through GITHUB_OUTPUT; returns False (and writes nothing) outside Actions."""
    _check_name(name, "output")
    target = _env_file("GITHUB_OUTPUT", path)
    if target is None:
        return False
    with target.open("a", encoding="utf-8", newline="\n") as handle:
        handle.write(format_file_command(name, value))
    return True


def set_outputs(values: Mapping[str, str], *, path: str | os.PathLike[str] | None = None) -> bool:
    """Set several outputs in one append; returns False outside Actions."""
    for name in values:
        _check_name(name, "output")
    target = _env_file("GITHUB_OUTPUT", path)
    if target is None:
        return False
    with target.open("a", encoding="utf-8", newline="\n") as handle:
        handle.write("".join(format_file_command(name, value) for name, value in values.items()))
    return True


def set_env(name: str, value: str, *, path: str | os.PathLike[str] | None = None) -> bool:
    """Export an environment variable to later steps through GITHUB_ENV; returns False outside Actions."""
    _check_name(name, "environment variable")
    target = _env_file("GITHUB_ENV", path)
    if target is None:
        return False
    with target.open("a", encoding="utf-8", newline="\n") as handle:
        handle.write(format_file_command(name, value))
    return True


def append_step_summary(markdown: str, *, path: str | os.PathLike[str] | None = None) -> bool:
    """Append markdown to the job summary (GITHUB_STEP_SUMMARY); returns False outside Actions.

    The summary is capped at :data:`STEP_SUMMARY_LIMIT` bytes; text beyond it is cut with a note rather
    than letting the runner drop the whole summary.
    """
    target = _env_file("GITHUB_STEP_SUMMARY", path)
    if target is None:
        return False
    used = target.stat().st_size if target.exists() else 0
    data = markdown if markdown.endswith("\n") else markdown + "\n"
    encoded = data.encode("utf-8")
    room = STEP_SUMMARY_LIMIT - used
    if len(encoded) > room:
        note = b"\n\n_(summary truncated: GitHub limits a step summary to 1 MiB)_\n"
        keep = max(0, room - len(note))
        cut = encoded[:keep].decode("utf-8", errors="ignore").encode("utf-8")
        encoded = cut + (note if room > len(note) else b"")
    with target.open("ab") as handle:
        handle.write(encoded)
    return True


def in_github_actions(environ: Mapping[str, str] | None = None) -> bool:
    """True when running as an Actions step (``GITHUB_ACTIONS=true``)."""
    env = os.environ if environ is None else environ
    return env.get("GITHUB_ACTIONS", "").lower() == "true"
