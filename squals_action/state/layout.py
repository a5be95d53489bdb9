"""Where documents live on the state branch, which names they may have, and how they are written.

Environment, experiment and lock names become file names, so they keep to a safe alphabet; every document
is serialised one way (sorted keys, two-space indent) so ``git diff`` between two transitions is readable.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from squals_action.state.errors import StateError

#: The version every document written by this code carries in ``schema_version``.
SCHEMA_VERSION = 1

#: A JSON object as parsed by :func:`json.loads`.
JsonObject = dict[str, Any]

ENVIRONMENTS_DIR = "environments"
EXPERIMENTS_DIR = "experiments"
LOCKS_DIR = "locks"
#: Documents that left the live tree (retired environments): the store's own, never a transaction's.
ARCHIVE_DIR = "archive"
#: The reserved root document: marks a squals state branch and keeps the recent idempotency keys.
META_PATH = "squals-state.json"

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_PATH_SEGMENT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def check_name(kind: str, name: str) -> str:
    """Environment, experiment and lock names become file names: keep them to a safe alphabet."""
    if not _NAME_RE.match(name):
        raise StateError(f"invalid {kind} name {name!r}: expected letters, digits, '.', '_' or '-' (max 100)")
    return name


def check_path(path: str) -> str:
    """A document path is ``seg/seg.json`` of safe segments, never absolute and never leaving the tree."""
    segments = path.split("/")
    if not path.endswith(".json") or not all(_PATH_SEGMENT_RE.match(s) for s in segments):
        raise StateError(f"invalid state document path {path!r}: expected safe segments ending in .json")
    if segments[0] == ARCHIVE_DIR:
        raise StateError(f"state document path {path!r} is in {ARCHIVE_DIR}/, which only the store writes")
    return path


def dumps_document(doc: Mapping[str, Any]) -> bytes:
    """The one canonical serialisation (sorted keys, two-space indent, trailing newline): stable diffs."""
    return (json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


def dumps_marker(recent_keys: Sequence[str]) -> bytes:
    """:func:`dumps_document` of ``squals-state.json``, byte for byte, written on every transition.

    With an indent, :mod:`json` encodes in pure Python; without one, in C, and the separator can carry the
    indent of a list of strings: the 1,000 recent keys in a fifth of the time.
    """
    listed = json.dumps(list(recent_keys), ensure_ascii=False, separators=(",\n    ", ": "))
    keys = f"[\n    {listed[1:-1]}\n  ]" if recent_keys else "[]"
    head = '{\n  "format": "squals-state",\n  "recent_keys": '
    return f'{head}{keys},\n  "schema_version": {SCHEMA_VERSION}\n}}\n'.encode()
