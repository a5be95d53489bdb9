"""The one exit place of ``squals`` and ``squals-action``: every failure becomes an exit code and one line.

Expected failures (:class:`SqualsError`, usage errors, Ctrl-C) print one line. An unexpected exception, as
pre-commit's ``error_handler.py`` does it, prints one line naming the exception and the crash log, and the
log holds what a bug report needs: versions (squals, Python, platform, git, every declared dependency), the
command line with secrets blanked, and the traceback.

Under GitHub Actions (``GITHUB_ACTIONS=true``) the traceback is also printed inside a ``::group::`` fold, so
it is in the job's log, and the crash log is written where it outlives the action's container: ``RUNNER_TEMP``
when that directory exists here, else ``HOME``. A Docker action sees the host's ``RUNNER_TEMP`` path, which is
not mounted into it (actions/runner#1984), while its ``HOME`` (``/github/home``) is the host's
``$RUNNER_TEMP/_github_home``, which later steps of the job can read.

What only a crash needs (workflow commands, package metadata, platform, git) is imported when one happens:
this module is on every command's start-up path.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from squals_action import __version__
from squals_action.errors import EXIT_INTERNAL, EXIT_USAGE, SqualsError

#: Option names whose value is blanked in the crash log's command line.
_SECRET_OPTION = re.compile(r"^--?[\w-]*(token|secret|password|passwd|key|credential)[\w-]*$", re.IGNORECASE)
#: ``scheme://user:password@host`` in any argument keeps the scheme and host only.
_URL_CREDENTIALS = re.compile(r"(?<=://)[^/@\s]+@")


class UsageExit(Exception):
    """A command line argparse refused; the message is already the ``prog: error: ...`` line."""


def run_guarded(body: Callable[[], int], prog: str) -> int:
    """Run ``body``; every failure becomes an exit code and one line on stderr, never a bare traceback."""
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
        report_crash(exc, prog)
        return EXIT_INTERNAL


def report_crash(exc: BaseException, prog: str) -> None:
    """Write the crash log, print the one line (and the fold under GitHub Actions)."""
    from squals_action.report import workflow_commands as wc

    formatted = "".join(traceback.format_exception(exc))
    in_actions = wc.in_github_actions()
    try:
        log = _crash_log_path(prog, os.environ, in_actions)
        log.write_text(_crash_log(prog, formatted), encoding="utf-8")
        where = f"traceback written to {log}"
    except OSError as err:  # a full or read-only disk must not turn the crash into a second one
        where = f"crash log not written: {err.strerror or err}"
    if in_actions:
        sys.stdout.flush()
        # The traceback quotes untrusted text (messages, paths), so workflow commands are off inside it.
        with (
            wc.grouped(f"{prog}: internal error traceback", stream=sys.stderr),
            wc.stop_commands(stream=sys.stderr),
        ):
            print(formatted, end="", file=sys.stderr)
    summary = " ".join(str(exc).split())[:200]
    print(f"{prog}: internal error: {type(exc).__name__}: {summary} ({where})", file=sys.stderr)


def _crash_log_path(prog: str, env: Mapping[str, str], in_actions: bool) -> Path:
    """A new file in a directory that outlives the container under GitHub Actions, else a temp file."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    if in_actions:
        for variable in ("RUNNER_TEMP", "HOME"):
            folder = Path(env.get(variable) or "/nonexistent")
            if folder.is_dir() and os.access(folder, os.W_OK):
                return folder / f"{prog}-crash-{stamp}-{os.getpid()}.log"
    with tempfile.NamedTemporaryFile(
        "w", prefix=f"{prog}-crash-", suffix=".log", delete=False, encoding="utf-8"
    ) as handle:
        return Path(handle.name)


def _crash_log(prog: str, formatted: str) -> str:
    import platform

    lines = [
        "### version information",
        "",
        "```",
        f"{prog} (squals-action) {__version__}",
        f"python: {sys.version.split()[0]} ({sys.executable})",
        f"platform: {platform.platform()}",
        f"git: {_git_version()}",
        *(f"{name}: {version}" for name, version in _dependency_versions()),
        "```",
        "",
        "### command line",
        "",
        "```",
        " ".join(redact_argv(sys.argv)),
        "```",
        "",
        "### traceback",
        "",
        "```",
        formatted.rstrip("\n"),
        "```",
        "",
    ]
    return "\n".join(lines)


def _git_version() -> str:
    import subprocess

    try:
        done = subprocess.run(["git", "--version"], capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unavailable ({type(exc).__name__})"
    return done.stdout.strip() or f"unavailable (exit {done.returncode})"


def _dependency_versions() -> list[tuple[str, str]]:
    """The installed version of every runtime dependency squals-action declares, read without importing it."""
    from importlib import metadata

    try:
        requirements = metadata.requires("squals-action") or []
    except metadata.PackageNotFoundError:
        return []
    found: list[tuple[str, str]] = []
    for requirement in requirements:
        if "extra ==" in requirement:
            continue
        match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement)
        if match is None:
            continue
        try:
            found.append((match.group(0), metadata.version(match.group(0))))
        except metadata.PackageNotFoundError:
            found.append((match.group(0), "not installed"))
    return found


def redact_argv(argv: Sequence[str]) -> list[str]:
    """``argv`` with the values of secret-looking options and URL credentials replaced by ``***``."""
    redacted: list[str] = []
    blank_next = False
    for arg in argv:
        if blank_next:
            redacted.append("***")
            blank_next = False
            continue
        name, equals, _ = arg.partition("=")
        if _SECRET_OPTION.match(name):
            if equals:
                redacted.append(f"{name}=***")
            else:
                redacted.append(arg)
                blank_next = True
            continue
        redacted.append(_URL_CREDENTIALS.sub("***@", arg))
    return redacted
