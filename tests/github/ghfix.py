"""Shared helpers for the GitHub tests: the payload fixtures and the OpenAPI excerpt."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "github"
EVENTS = FIXTURES / "events"


def event(name: str) -> dict[str, Any]:
    """A payload file from tests/fixtures/github/events (see the README there for its source)."""
    data: dict[str, Any] = json.loads((EVENTS / f"{name}.json").read_text())
    return data


def openapi() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / "openapi-excerpt.json").read_text())
    return data
