"""Which parser reads which dependency file, chosen by file name."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from pathlib import PurePosixPath

from squals_action.gates.security.interface import ParsedFile
from squals_action.gates.security.lockfiles import npm, pipfile, poetry, requirements, yarn

Parser = Callable[[str, str], ParsedFile]

#: File-name globs and their parsers, most specific first.
PARSERS: tuple[tuple[str, Parser], ...] = (
    ("requirements*.txt", requirements.parse),
    ("poetry.lock", poetry.parse),
    ("Pipfile.lock", pipfile.parse),
    ("package-lock.json", npm.parse),
    ("npm-shrinkwrap.json", npm.parse),
    ("yarn.lock", yarn.parse),
)


def parser_for(path: str) -> Parser | None:
    name = PurePosixPath(path).name
    for pattern, parser in PARSERS:
        if fnmatch.fnmatchcase(name, pattern):
            return parser
    return None


def is_dependency_file(path: str) -> bool:
    return parser_for(path) is not None


def parse_text(text: str, path: str) -> ParsedFile:
    """Parse ``text`` as the dependency file named ``path``; raises ``LockfileError`` on bad content."""
    parser = parser_for(path)
    if parser is None:
        raise ValueError(f"no parser for {path}")
    return parser(text, path)
