"""``load_tests:`` in the model: units converted, relative limits kept apart, defaults from the profile."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

from squals_action.lifecycle.steps import timeouts
from squals_action.manifest import load
from squals_action.manifest.model import LoadLimit, LoadTests
from tests.support.corpus import CASES


def test_load_tests_model(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(CASES / "valid" / "load_tests", repo)
    manifest = load(repo / "squals.yml", repo)
    spec = manifest.load_tests
    assert spec is not None
    assert (spec.locustfile, spec.users, spec.spawn_rate, spec.duration, spec.timeout) == (
        "load/locustfile.py",
        20,
        5.0,
        60.0,
        180.0,
    )
    assert spec.baseline == "prod"
    assert (spec.p95, spec.p99) == (LoadLimit(10.0, relative=True), LoadLimit(800.0))
    assert (spec.failure_ratio, spec.min_rps) == (0.5, LoadLimit(-10.0, relative=True))
    assert (spec.location.line, spec.location.col) == (8, 3)
    # The deploy's lock outlives the island's run and prod's (each at most its timeout) after the exit test.
    assert timeouts(manifest, "deploy") == 600.0 + 2 * 180.0


def test_spawn_rate_and_timeout_default_from_the_profile(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()
    (tmp_path / "locustfile.py").write_text("")
    (tmp_path / "squals.yml").write_text(
        "version: 1\nname: shop\napp: {start: python app.py}\n"
        "load_tests: {locustfile: locustfile.py, users: 8, duration: 90s, limits: {failure_ratio: 1%}}\n"
    )
    spec = load(tmp_path / "squals.yml", tmp_path).load_tests
    assert spec is not None
    expected = LoadTests(
        locustfile="locustfile.py", users=8, spawn_rate=8.0, duration=90.0, timeout=150.0, failure_ratio=1.0
    )
    assert dataclasses.replace(spec, location=expected.location) == expected
