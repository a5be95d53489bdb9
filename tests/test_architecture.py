"""The shape of the code, enforced: the import layers of pyproject's import-linter contracts, module size."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "squals_action"
#: A module past this holds more than one idea (the issue that set the rule: split it, don't raise this).
MAX_MODULE_LINES = 600


def test_import_layers_and_no_cycles() -> None:
    """``lint-imports`` keeps every contract in pyproject (imports inside functions count too)."""
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    assert exe, "import-linter is not installed (it is in the test extras)"
    done = subprocess.run(
        [exe, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Contracts: 2 kept, 0 broken." in done.stdout, done.stdout  # both contracts were checked


def test_no_module_is_too_long() -> None:
    long = {
        str(path.relative_to(ROOT)): n
        for path in sorted(PACKAGE.rglob("*.py"))
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
    }
    assert not long, f"modules above {MAX_MODULE_LINES} lines (split them by idea): {long}"
