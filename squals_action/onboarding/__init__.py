"""``squals init``: a squals file, the workflow and (for AWS) the templates, written into an app's repository.

:mod:`~squals_action.onboarding.detect` guesses how the app starts and where it answers;
:mod:`~squals_action.onboarding.scaffold` builds and writes the files; :func:`init` asks what it could not
guess (on a terminal), writes, validates what it wrote and says what to run next.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from squals_action.errors import EXIT_FAILURE, EXIT_OK
from squals_action.onboarding.detect import detect
from squals_action.onboarding.scaffold import (
    PLACEHOLDER,
    InitError,
    aws_templates,
    squals_file,
    workflow,
    write,
)

#: Asks the user one question with a default; returns the answer (the default for an empty one).
Ask = Callable[[str, str | None], str]


@dataclass(frozen=True)
class InitOptions:
    root: Path
    provider: str = "local"
    force: bool = False
    start: str | None = None
    health: str | None = None


def init(options: InitOptions, out: TextIO, ask: Ask | None) -> int:
    """Write the files; ``ask`` is None with ``--yes`` or without a terminal (the guesses are taken as is)."""
    from squals_action.manifest import validate_paths

    root = options.root
    guess = detect(root)
    start = options.start or guess.start
    health = options.health or guess.health
    if ask is not None:
        if options.start is None:
            start = ask("Command that starts the app (it must listen on $PORT)", start) or None
        if options.health is None:
            health = ask("URL path that answers 2xx once the app is up", health)
    if not start:
        raise InitError(
            "squals init: could not tell how the app starts (looked for a Procfile, manage.py, a Flask, "
            "FastAPI or Starlette app, [project.scripts], package.json's scripts.start); pass --start COMMAND"
        )
    if not health.startswith("/"):
        raise InitError(f"squals init: health path {health!r}: expected a URL path starting with /")
    templates = aws_templates() if options.provider == "aws" else None
    files = [squals_file(guess, start, health, templates), workflow(), *(templates or {}).values()]
    written = write(root, files, options.force)
    source = "" if options.start else f" (from {guess.source})"
    out.write(f"squals init: wrote {', '.join(written)}\n  start: {start}{source}\n  health: {health}\n")
    report = validate_paths([root / files[0].path], repo_root=root)
    if not report.valid:
        out.write("".join(p.render() + "\n" for p in report.problems))
        out.write(f"squals init: {files[0].path} does not validate yet: fix the lines above\n")
        return EXIT_FAILURE
    if templates is not None:
        out.write(f"  set the {PLACEHOLDER} parameters in {files[0].path} (examples/shop-aws/README.md)\n")
    out.write(
        "next:\n"
        "  squals deploy --pr 1      # a preview island on this machine: the steps of a pull request\n"
        f"  git add {' '.join(written)} && git commit -m 'Deliver with squals' && git push\n"
    )
    return EXIT_OK
