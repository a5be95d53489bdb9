"""``Pipfile.lock``: JSON whose ``default`` and ``develop`` map names to ``{"version": "==x"}``."""

from __future__ import annotations

import json
import re

from squals_action.gates.security.interface import Dependency, LockfileError, ParsedFile, Unpinned
from squals_action.gates.security.lockfiles.jsonlines import key_lines


def parse(text: str, path: str) -> ParsedFile:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise LockfileError(path, exc.lineno, f"not valid JSON ({exc.msg})") from exc
    if not isinstance(data, dict):
        raise LockfileError(path, 1, "expected a JSON object with 'default' and 'develop'")
    deps: list[Dependency] = []
    unpinned: list[Unpinned] = []
    for section in ("default", "develop"):
        entries = data.get(section) or {}
        if not isinstance(entries, dict):
            raise LockfileError(path, 1, f"expected {section!r} to be an object")
        lines = key_lines(text, section)
        for name, entry in entries.items():
            line = lines.get(name, 1)
            version = entry.get("version") if isinstance(entry, dict) else None
            if isinstance(version, str) and re.fullmatch(r"===?[^,*<>!~ ]+", version):
                dev = section == "develop"
                deps.append(Dependency("PyPI", name, version.lstrip("="), path, line, dev=dev))
            else:
                kinds = ("git", "path", "file", "editable")
                spec = next((k for k in kinds if isinstance(entry, dict) and k in entry), "")
                unpinned.append(Unpinned(name, spec or str(version or "(no version)"), path, line))
    return ParsedFile(path, tuple(deps), tuple(unpinned))
