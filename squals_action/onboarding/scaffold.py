"""What ``squals init`` writes: the squals file, the workflow, and for AWS the two CloudFormation templates.

The workflow is the one the README shows and the test suite lints (``examples/workflows/squals.yml``), copied
byte for byte from the installed package (the wheel ships ``examples/workflows`` inside ``squals_action``) or
from this checkout. Nothing is overwritten without ``force``: every file is checked before any is written, so
a refusal leaves the repository exactly as it was.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from squals_action.errors import SqualsError
from squals_action.onboarding.detect import AppGuess

SQUALS_FILE = "squals.yml"
WORKFLOW_FILE = ".github/workflows/squals.yml"
#: The AWS example's templates and where ``squals init --provider aws`` puts them in the app's repository.
AWS_TEMPLATES = {"front_door": "infra/front-door.yml", "island": "infra/island.yml"}
#: Parameters squals fills in itself (docs/providers.md); the others are the user's to set.
_SQUALS_PARAMETER_PREFIX = "Squals"
PLACEHOLDER = "CHANGE-ME"


class InitError(SqualsError):
    """``squals init`` cannot write what was asked (a file exists, the AWS templates are missing)."""


@dataclass(frozen=True)
class Planned:
    """One file to write: its path inside the repository and its bytes."""

    path: str
    data: bytes


def example_file(relative: str) -> Path | None:
    """A file of ``examples/`` in the installed package, else in this checkout; None when neither has it."""
    package = Path(__file__).resolve().parents[1]
    for base in (package / "examples", package.parent / "examples"):
        if (base / relative).is_file():
            return base / relative
    return None


def workflow() -> Planned:
    source = example_file("workflows/squals.yml")
    if source is None:
        raise InitError("squals init: examples/workflows/squals.yml is missing from this installation")
    return Planned(WORKFLOW_FILE, source.read_bytes())


def aws_templates() -> dict[str, Planned]:
    """The front-door and island templates of ``examples/shop-aws`` (shipped in the wheel), or one line
    naming the file this installation lacks."""
    found = {key: example_file(f"shop-aws/{path}") for key, path in AWS_TEMPLATES.items()}
    missing = [AWS_TEMPLATES[k] for k, v in found.items() if v is None]
    if missing:
        raise InitError(
            f"squals init: --provider aws: examples/shop-aws/{missing[0]} is missing from this installation "
            "(reinstall squals-action); nothing was written"
        )
    return {key: Planned(AWS_TEMPLATES[key], path.read_bytes()) for key, path in found.items() if path}


class _CfnLoader(yaml.SafeLoader):
    """Reads a CloudFormation template's structure; intrinsic-function tags (``!Ref``) become None."""


_CfnLoader.add_multi_constructor("!", lambda loader, suffix, node: None)


def user_parameters(template: bytes) -> list[str]:
    """The template's parameters without a default that squals does not fill in: the user's to set."""
    data = yaml.load(template, Loader=_CfnLoader)  # noqa: S506 - a SafeLoader subclass
    params: dict[str, Any] = (data or {}).get("Parameters") or {}
    return [
        name
        for name, spec in params.items()
        if not name.startswith(_SQUALS_PARAMETER_PREFIX) and "Default" not in (spec or {})
    ]


def _quoted(value: str) -> str:
    """A YAML scalar for any text (a JSON string is a valid YAML double-quoted scalar)."""
    return json.dumps(value)


def _parameters(names: Sequence[str], indent: str) -> list[str]:
    if not names:
        return []
    return [f"{indent}parameters:", *(f"{indent}  {n}: {PLACEHOLDER}" for n in names)]


def squals_file(guess: AppGuess, start: str, health: str, templates: dict[str, Planned] | None) -> Planned:
    """The squals file for the app; with ``templates``, an ``aws`` provider using them."""
    lines = [
        f"# Written by `squals init` ({guess.source}). Every key: docs/squals-file.md; check it with",
        "# `squals validate`. The app must listen on $PORT, which the provider sets.",
        "version: 1",
        f"name: {_quoted(guess.name)}",
    ]
    if templates is None:
        lines.append("provider: {kind: local}")
    else:
        island, door = templates["island"], templates["front_door"]
        lines += [
            "provider:",
            "  kind: aws",
            "  region: us-east-1",
            f"  template: {island.path}",
            *_parameters(user_parameters(island.data), "  "),
            "  front_door:",
            f"    template: {door.path}",
            *_parameters(user_parameters(door.data), "    "),
        ]
    lines += [
        "app:",
        f"  start: {_quoted(start)}",
        f"  health: {_quoted(health)}",
        "  health_timeout: 60s",
        "gates:",
    ]
    if guess.language == "python" and guess.package:
        lines += [
            "  compile:",
            f"    - {{name: bytecode, run: {_quoted('python3 -m compileall -q ' + guess.package)}, "
            "timeout: 5m}",
        ]
    lines += [
        "  # `run:` gates execute inside the action's container (Python and git only). Tests that need",
        "  # a toolchain (npm test, go test) run as jobs of your workflow: name them here, squals waits.",
        "  # checks: [test]",
        "  security:",
        "    risk: {max_score: 60}",
    ]
    return Planned(SQUALS_FILE, ("\n".join(lines) + "\n").encode())


def write(root: Path, files: Sequence[Planned], force: bool) -> list[str]:
    """Write ``files`` under ``root``; refuses (writing nothing) when one exists and ``force`` is off."""
    if not force:
        for planned in files:
            if (root / planned.path).exists():
                raise InitError(
                    f"squals init: {planned.path} exists; not overwritten (use --force to replace it)"
                )
    written = []
    for planned in files:
        target = root / planned.path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(planned.data)
        written.append(planned.path)
    return written
