"""Line numbers for keys of a JSON object member, from the text (``json`` itself forgets positions).

Lock files are written by tools with one key per line, so a line scan is exact for them; a key that is not
found falls back to line 1 rather than failing.
"""

from __future__ import annotations

import json
import re

_KEY = re.compile(r'^\s*"((?:[^"\\]|\\.)*)"\s*:\s*(.)')


def key_lines(text: str, section: str) -> dict[str, int]:
    """Line of every object-valued key inside the top-level member ``section`` (first occurrence wins)."""
    lines = text.splitlines()
    start = None
    indent = 0
    for number, line in enumerate(lines):
        m = _KEY.match(line)
        if m and json.loads(f'"{m.group(1)}"') == section and m.group(2) == "{":
            start = number
            indent = len(line) - len(line.lstrip())
            break
    out: dict[str, int] = {}
    if start is None:
        return out
    child_indent: int | None = None
    for number in range(start + 1, len(lines)):
        line = lines[number]
        stripped = line.lstrip()
        depth = len(line) - len(stripped)
        if stripped.startswith("}") and depth <= indent:
            break
        m = _KEY.match(line)
        if not m:
            continue
        if child_indent is None:
            child_indent = depth
        if depth == child_indent:
            key = json.loads(f'"{m.group(1)}"')
            out.setdefault(key, number + 1)
    return out
