"""The lifecycle's gates run where the squals file is, not at the repository root."""

from __future__ import annotations

import subprocess
from pathlib import Path
from types import SimpleNamespace

from squals_action.lifecycle.project import _gates_runner
from squals_action.lifecycle.source import checkout
from squals_action.manifest import load


def test_gates_of_a_squals_file_in_a_subfolder_run_in_that_folder(tmp_path: Path) -> None:
    service = tmp_path / "svc"
    service.mkdir()
    (service / "marker").write_text("here\n")
    (service / "squals.yml").write_text(
        "version: 1\nname: svc\napp: {start: python3 app.py}\n"
        "gates:\n  compile: [{name: where, run: test -f marker}]\n"
    )
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True, timeout=30)
    subprocess.run(["git", "-C", str(tmp_path), "add", "-A"], check=True, timeout=30)
    subprocess.run(["git", "-C", str(tmp_path), "commit", "-qm", "svc"], check=True, timeout=30)
    manifest = load(service / "squals.yml", tmp_path)
    lifecycle = SimpleNamespace(repo=tmp_path, log_dir=tmp_path / ".squals" / "logs", manifest=manifest)

    with checkout(tmp_path, "HEAD", manifest) as source:
        ok, summary = _gates_runner(lifecycle)(source)  # type: ignore[arg-type]

    assert ok, summary
    assert summary == "1 pass"
