"""The example-file corpus: one folder per case under ``cases/{valid,invalid}/<case>/``.

A case folder holds the squals file(s) as they would sit at a repository's root, ``expected.txt`` with the
exact ``file:line:col: error: ...`` lines (invalid cases), and optionally ``setup.json`` for what cannot be
committed as plain files: ``append`` (grow a file past the size limit), ``outside`` (files next to the
repository) and ``symlinks`` (links created inside it).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from squals_action.manifest import ValidationReport, discover, validate_paths

CASES = Path(__file__).resolve().parent.parent / "manifest" / "cases"


def case_dirs(kind: str) -> list[Path]:
    return sorted(p for p in (CASES / kind).iterdir() if p.is_dir())


def materialize(case: Path, workdir: Path) -> Path:
    """Copy a case into ``workdir/repo`` (plus its ``outside`` files) and return the repository root."""
    repo = workdir / "repo"
    shutil.copytree(case, repo, ignore=shutil.ignore_patterns("expected.txt", "setup.json"))
    setup_file = case / "setup.json"
    if setup_file.exists():
        setup = json.loads(setup_file.read_text())
        append = setup.get("append")
        if append:
            with (repo / append["file"]).open("a", encoding="utf-8") as handle:
                handle.write(append["text"] * int(append["times"]))
        for rel, content in setup.get("outside", {}).items():
            target = workdir / "outside" / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)
        for rel, link in setup.get("symlinks", {}).items():
            target = repo / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(link, target)
    return repo


def run_case(case: Path, workdir: Path) -> tuple[ValidationReport, list[str]]:
    repo = materialize(case, workdir)
    report = validate_paths(discover(repo), repo_root=repo, relative_to=repo)
    return report, [p.render() for p in report.problems]
