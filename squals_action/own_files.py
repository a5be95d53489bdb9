"""The folder squals keeps its own files in, in a repository: ``.squals/`` (gate logs, the local Dealer, the
local provider's environments, experiments).

:func:`own_dir` is the one place that creates it, and it always writes ``.squals/.gitignore`` (``*``) with
it, so a ``git add -A`` after any command never commits squals' logs or state, whatever the repository's own
``.gitignore`` says.
"""

from __future__ import annotations

from pathlib import Path

#: The folder's name at the repository's top.
OWN_DIR = ".squals"
IGNORE = "# squals' own files (logs, the Dealer, local environments): never commit them\n*\n"


def own_dir(repo: Path) -> Path:
    """``<repo>/.squals``, created with its ``.gitignore`` if need be."""
    path = repo / OWN_DIR
    ignore = path / ".gitignore"
    if not ignore.is_file():
        path.mkdir(parents=True, exist_ok=True)
        ignore.write_text(IGNORE, encoding="utf-8")
    return path
