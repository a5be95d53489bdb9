"""``requirements*.txt``: exact pins (``name==1.2.3``) are checked; anything else is reported as unpinned.

Handles comments, ``\\`` continuations, ``--hash`` options, extras (``pkg[socks]==2.31.0``) and environment
markers. Option lines (``-r``, ``-c``, ``--index-url``, ``-e``) are not packages and are passed over;
editable or URL requirements have no version to check and are reported as unpinned.
"""

from __future__ import annotations

import re

from squals_action.gates.security.interface import Dependency, ParsedFile, Unpinned

_NAME = r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?"
_REQ = re.compile(
    rf"^(?P<name>{_NAME})\s*(?:\[[^\]]*\])?\s*(?P<spec>[^;@]*?)\s*(?:@\s*(?P<url>\S+))?\s*(?:;.*)?$"
)
_PIN = re.compile(r"^===?\s*(?P<version>[A-Za-z0-9][A-Za-z0-9.+!_-]*)$")


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """Join backslash continuations; each logical line keeps the number of its first physical line."""
    out: list[tuple[int, str]] = []
    buf: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw
        if not buf:
            start = number
        # A comment starts at '#' preceded by whitespace or at the line start.
        line = re.sub(r"(^|\s)#.*$", "", line)
        if line.rstrip().endswith("\\"):
            buf.append(line.rstrip()[:-1])
            continue
        buf.append(line)
        out.append((start, " ".join(buf).strip()))
        buf = []
    if buf:
        out.append((start, " ".join(buf).strip()))
    return out


def parse(text: str, path: str) -> ParsedFile:
    deps: list[Dependency] = []
    unpinned: list[Unpinned] = []
    for number, line in _logical_lines(text):
        if not line:
            continue
        if line.startswith("-"):
            if line.startswith(("-e ", "--editable")):
                target = line.split(None, 1)[1] if " " in line else line
                unpinned.append(Unpinned(target, "editable", path, number))
            continue
        # Per-requirement options (--hash=...) follow the requirement; drop them.
        requirement = re.split(r"\s+--?[A-Za-z]", line, maxsplit=1)[0].strip()
        m = _REQ.match(requirement)
        if m is None:
            unpinned.append(Unpinned(requirement, "unrecognised line", path, number))
            continue
        name, spec, url = m.group("name"), m.group("spec").strip(), m.group("url")
        if url:
            unpinned.append(Unpinned(name, f"@ {url}", path, number))
            continue
        pin = _PIN.match(spec.replace(" ", ""))
        if pin is None or "*" in spec or "," in spec:
            unpinned.append(Unpinned(name, spec or "(no version)", path, number))
            continue
        deps.append(Dependency("PyPI", name, pin.group("version"), path, number))
    return ParsedFile(path, tuple(deps), tuple(unpinned))
