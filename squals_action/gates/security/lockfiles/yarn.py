"""``yarn.lock``: classic (v1, ``version "1.2.3"``) and Berry (v2+, YAML-like ``version: 1.2.3``).

Each block starts at column 0 with one or more comma-separated specifiers (``"@babel/core@^7.0.0",
"@babel/core@^7.1.0":``) and lists ``version`` indented below; the block's header line is the package line.
Berry's workspace and patch entries (``@workspace:``, ``@patch:`` resolutions) are not registry releases.
"""

from __future__ import annotations

import re

from squals_action.gates.security.interface import Dependency, LockfileError, ParsedFile

_VERSION = re.compile(r'^\s+version:?\s+"?([^"\s]+)"?\s*$')
_RESOLUTION = re.compile(r'^\s+resolution:?\s+"?([^"]+)"?\s*$')


def spec_name(spec: str) -> str:
    """``@scope/pkg@npm:^1.0`` -> ``@scope/pkg``; ``lodash@^4`` -> ``lodash``."""
    spec = spec.strip().strip('"')
    at = spec.find("@", 1)
    return spec if at == -1 else spec[:at]


def parse(text: str, path: str) -> ParsedFile:
    deps: list[Dependency] = []
    seen: set[tuple[str, str]] = set()
    header: tuple[str, int] | None = None
    version: str | None = None
    resolution = ""

    def flush() -> None:
        if header is None:
            return
        name, line = header
        if version is None:
            raise LockfileError(path, line, f"entry for {name!r} has no version")
        if "@workspace:" in resolution or "@patch:" in resolution or "@link:" in resolution:
            return
        if "@file:" in resolution or "@portal:" in resolution or version.startswith("0.0.0-use.local"):
            return
        if (name, version) not in seen:
            seen.add((name, version))
            deps.append(Dependency("npm", name, version, path, line))

    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if not line[0].isspace():
            flush()
            header, version, resolution = None, None, ""
            if not line.rstrip().endswith(":"):
                raise LockfileError(path, number, "expected a 'specifier[, specifier]:' entry header")
            first = line.rstrip()[:-1].split(",")[0]
            if first.strip().strip('"') == "__metadata":
                continue
            header = (spec_name(first), number)
            continue
        if header is None:
            continue
        if version is None and (m := _VERSION.match(line)):
            version = m.group(1)
        elif m := _RESOLUTION.match(line):
            resolution = m.group(1)
    flush()
    return ParsedFile(path, tuple(deps))
