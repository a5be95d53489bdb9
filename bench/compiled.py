"""A compiled copy of a checkout: its wheel built with the opt-in mypyc hook, then installed.

    python bench/compiled.py DEST [--checkout DIR]

``HATCH_BUILD_HOOK_ENABLE_MYPYC=true`` compiles the Dealer's request path (pyproject.toml's wheel hook;
docs/dealer.md, "A compiled request path"). The checkout is copied first, so nothing is built inside it, and
the build uses this environment (``--no-build-isolation``: the test extra has hatch-mypyc and mypy), so it
downloads nothing; it needs a C compiler and the Python headers. Run a Dealer from DEST (its working
directory, or first on ``PYTHONPATH``) to run it compiled: bench/dealer.py ``--compiled`` does, and
tests/dealer/test_compiled.py runs the Dealer's tests that way.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# What the wheel is built from; the rest of a checkout (tests, docs, caches, earlier builds) is not copied.
_NOT_BUILT_FROM = (
    ".git",
    "__pycache__",
    "*.so",
    ".venv",
    "node_modules",
    "tests",
    "bench",
    "docs",
    "build",
    "dist",
)


def build_compiled(dest: Path, checkout: Path = ROOT, opt_level: str | None = None) -> Path:
    """Build ``checkout``'s compiled wheel and install it into ``dest`` (``pip --target``); returns ``dest``.

    ``opt_level`` overrides the C compiler's optimisation (mypyc's ``opt_level``): the generated C is the
    same, only gcc's work differs, so a test may trade run-time speed for half the build time.
    """
    with tempfile.TemporaryDirectory(prefix="squals-compile-") as tmp:
        source, wheels = Path(tmp) / "source", Path(tmp) / "wheels"
        shutil.copytree(checkout, source, ignore=shutil.ignore_patterns(*_NOT_BUILT_FROM))
        if opt_level is not None:
            pyproject = source / "pyproject.toml"
            text = pyproject.read_text()
            if 'opt_level = "3"' not in text:
                raise SystemExit(
                    f'{checkout / "pyproject.toml"}: the mypyc hook\'s opt_level = "3" not found'
                )
            pyproject.write_text(text.replace('opt_level = "3"', f'opt_level = "{opt_level}"'))
        command = [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-cache-dir",
        ]
        done = subprocess.run(
            [*command, "--wheel-dir", str(wheels), str(source)],
            env=dict(os.environ, HATCH_BUILD_HOOK_ENABLE_MYPYC="true"),
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        built = sorted(wheels.glob("*.whl"))
        if done.returncode or not built:
            raise SystemExit(
                f"the compiled build of {checkout} failed:\n{(done.stdout + done.stderr)[-3000:]}"
            )
        # installed, not unzipped: pip keeps the files' modes (the example app's hooks are executables)
        install = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--quiet"]
        subprocess.run([*install, "--target", str(dest), str(built[0])], check=True, timeout=300)
    return dest


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("dest", type=Path, help="directory to install the compiled wheel into")
    parser.add_argument("--checkout", type=Path, default=ROOT, help="checkout to build (default: this one)")
    args = parser.parse_args()
    build_compiled(args.dest, args.checkout.resolve())
    print(args.dest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
