"""Line numbers for keys of a JSON object member, from the text (``json`` itself forgets positions).

Lock files are written by tools with one key per line and a fixed indentation, so a scan of the text for
the member's direct children is exact for them and fast (one regular-expression pass, no per-line work in
Python). A key that is not found falls back to line 1 rather than failing; minified JSON gives line 1.
"""

from __future__ import annotations

import json
import re


def _decode(raw: str) -> str:
    return json.loads(f'"{raw}"') if "\\" in raw else raw


def key_lines(text: str, section: str) -> dict[str, int]:
    """Line of every key directly inside the top-level member ``section`` (first occurrence wins)."""
    head = re.compile(r'^([ \t]*)"' + re.escape(section) + r'"\s*:\s*\{[ \t]*$', re.M).search(text)
    if head is None:
        return {}
    indent = head.group(1)
    body_start = head.end()
    closing = re.compile(r"^" + re.escape(indent) + r"\}", re.M).search(text, body_start)
    body_end = closing.start() if closing else len(text)
    first = re.compile(r'^([ \t]+)"', re.M).search(text, body_start, body_end)
    if first is None:
        return {}
    child = re.compile(r"^" + re.escape(first.group(1)) + r'"((?:[^"\\]|\\.)*)"\s*:', re.M)
    out: dict[str, int] = {}
    line = text.count("\n", 0, body_start) + 1
    pos = body_start
    for m in child.finditer(text, body_start, body_end):
        line += text.count("\n", pos, m.start())
        pos = m.start()
        out.setdefault(_decode(m.group(1)), line)
    return out
