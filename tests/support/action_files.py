"""The action's own files as a user's workflow sees them: action.yml's interface and what a run wrote."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
ACTION_YML = ROOT / "action.yml"
#: ``name<<DELIMITER`` opens one value in a GITHUB_OUTPUT file (the runner's heredoc form).
_OPENING = re.compile(r"^([A-Za-z0-9_-]+)<<(\S+)$")


def action() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(ACTION_YML.read_text(encoding="utf-8"))
    return data


def declared_outputs() -> set[str]:
    return set(action()["outputs"])


def written_outputs(path: Path) -> dict[str, list[str]]:
    """Every output a GITHUB_OUTPUT file sets, name -> values in the order written (one per run)."""
    values: dict[str, list[str]] = {}
    lines = path.read_text(encoding="utf-8").split("\n")
    i = 0
    while i < len(lines):
        opening = _OPENING.match(lines[i])
        assert opening, f"{path}:{i + 1}: expected NAME<<DELIMITER, got {lines[i]!r}"
        name, delimiter = opening.groups()
        end = lines.index(delimiter, i + 1)
        values.setdefault(name, []).append("\n".join(lines[i + 1 : end]))
        i = end + 1
        if i == len(lines) - 1 and lines[i] == "":
            break
    return values
