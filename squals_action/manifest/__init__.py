"""The squals file: load, validate and model it.

Importing this package is cheap (no YAML or jsonschema import): the functions below import the
validation machinery on first call, so the CLI and the model's users stay quick to start.

Public interface::

    load(path, repo_root=None, *, relative_to=None, commit="") -> Manifest  # raises ManifestError
    validate_paths(paths, repo_root=None, scripts=None) -> ValidationReport  # scripts: Scripts(commit)
    validate_file(path, repo_root=None) -> FileResult
    discover(repo_root) -> list[Path]                    # squals.yml and squals/*.yml
    ManifestError(file, line, col, where, message)       # .problems: all of them, sorted
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from squals_action.manifest.problems import FileResult, ManifestError, Problem, ValidationReport

if TYPE_CHECKING:
    from squals_action.manifest.model import Manifest
    from squals_action.manifest.scripts import Scripts

__all__ = [
    "FileResult",
    "ManifestError",
    "Problem",
    "ValidationReport",
    "discover",
    "find_repo_root",
    "load",
    "validate_file",
    "validate_paths",
]


def load(
    path: str | os.PathLike[str],
    repo_root: str | os.PathLike[str] | None = None,
    *,
    relative_to: str | os.PathLike[str] | None = None,
    commit: str = "",
) -> Manifest:
    """The validated model of one squals file; :class:`ManifestError` (all problems) when invalid.

    Files are named relative to ``relative_to`` (default: the working directory); ``commit``: the file is
    in a checkout of that commit, which every problem and location names beside the file."""
    from squals_action.manifest.validate import load as _load

    return _load(
        path, repo_root, relative_to=Path(relative_to) if relative_to is not None else None, commit=commit
    )


def validate_paths(
    paths: Iterable[str | os.PathLike[str]],
    repo_root: str | os.PathLike[str] | None = None,
    relative_to: str | os.PathLike[str] | None = None,
    scripts: Scripts | None = None,
) -> ValidationReport:
    """Validate several squals files (and their variant files): every problem, sorted by position.

    With ``scripts``, the scripts their commands start must exist in its tree."""
    from squals_action.manifest.validate import validate_paths as _validate_paths

    return _validate_paths(
        paths,
        repo_root=Path(repo_root) if repo_root is not None else None,
        relative_to=Path(relative_to) if relative_to is not None else None,
        scripts=scripts,
    )


def validate_file(
    path: str | os.PathLike[str], repo_root: str | os.PathLike[str] | None = None
) -> FileResult:
    """Validate one squals file; never raises for a bad file."""
    from squals_action.manifest.validate import validate_file as _validate_file

    return _validate_file(path, repo_root=Path(repo_root) if repo_root is not None else None)


def discover(repo_root: str | os.PathLike[str]) -> list[Path]:
    """The squals files of a repository: ``squals.yml`` and ``squals/*.yml`` (``.yaml`` too)."""
    from squals_action.manifest.validate import discover as _discover

    return _discover(Path(repo_root))


def find_repo_root(start: str | os.PathLike[str]) -> Path:
    """The nearest directory at or above ``start`` that holds ``.git`` (``start`` when none does)."""
    from squals_action.manifest.paths import find_repo_root as _find

    return _find(Path(start))
