"""Example-file corpus: every valid case yields a model, every invalid case exactly its expected lines."""

from __future__ import annotations

from pathlib import Path

import pytest

from squals_action.manifest.model import Manifest
from tests.support.corpus import case_dirs, run_case

VALID = case_dirs("valid")
INVALID = case_dirs("invalid")


def test_corpus_is_large_enough() -> None:
    assert len(INVALID) >= 40
    assert all((case / "expected.txt").is_file() for case in INVALID)


@pytest.mark.parametrize("case", VALID, ids=[c.name for c in VALID])
def test_valid_case(case: Path, tmp_path: Path) -> None:
    report, lines = run_case(case, tmp_path)
    assert lines == []
    assert report.valid
    assert report.results and all(isinstance(r.manifest, Manifest) for r in report.results)


@pytest.mark.parametrize("case", INVALID, ids=[c.name for c in INVALID])
def test_invalid_case(case: Path, tmp_path: Path) -> None:
    report, lines = run_case(case, tmp_path)
    expected = (case / "expected.txt").read_text(encoding="utf-8").splitlines()
    assert lines == expected
    assert not report.valid
    assert lines == sorted(lines, key=lambda line: _position(line))


def _position(line: str) -> tuple[str, int, int]:
    file, row, col, _ = line.split(":", 3)
    return file, int(row), int(col)
