"""``poetry.lock``: a TOML array of ``[[package]]`` tables; the line of each is its ``name = ...`` line."""

from __future__ import annotations

import re
import tomllib

from squals_action.gates.security.interface import Dependency, LockfileError, ParsedFile

_HEADER = re.compile(r"^\s*\[\[\s*package\s*\]\]\s*$")
_NAME = re.compile(r"^\s*name\s*=")


def _package_lines(text: str) -> list[int]:
    """The line of each ``[[package]]`` entry's ``name`` key (its header line if the key comes later)."""
    lines: list[int] = []
    pending: int | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        if _HEADER.match(line):
            if pending is not None:
                lines.append(pending)
            pending = -number
        elif pending is not None and pending < 0 and _NAME.match(line):
            pending = number
        elif line.startswith("[") and not line.startswith("[[package]]") and pending is not None:
            lines.append(abs(pending))
            pending = None
    if pending is not None:
        lines.append(abs(pending))
    return lines


def parse(text: str, path: str) -> ParsedFile:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line = getattr(exc, "lineno", None) or 1
        raise LockfileError(path, line, f"not valid TOML ({exc.args[0] if exc.args else exc})") from exc
    packages = data.get("package", [])
    if not isinstance(packages, list):
        raise LockfileError(path, 1, "expected [[package]] tables")
    positions = _package_lines(text)
    deps: list[Dependency] = []
    for index, entry in enumerate(packages):
        line = positions[index] if index < len(positions) else 1
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise LockfileError(path, line, "expected a [[package]] table with a name")
        version = entry.get("version")
        if not isinstance(version, str):
            raise LockfileError(path, line, f"package {entry['name']!r} has no version")
        source = entry.get("source")
        if isinstance(source, dict) and source.get("type") in ("directory", "file", "git", "url"):
            continue  # not a registry release: no advisory can name it
        dev = entry.get("category") == "dev" or entry.get("groups") == ["dev"]
        deps.append(Dependency("PyPI", entry["name"], version, path, line, dev=bool(dev)))
    return ParsedFile(path, tuple(deps))
