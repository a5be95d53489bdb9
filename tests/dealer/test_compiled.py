"""The Dealer's request path compiled by mypyc (the opt-in build) passes the Dealer's own tests.

Compiled code checks its annotations at run time and compiles some constructs its own way; found by running
these tests on the build: a memoryview slice's start was evaluated twice (every journal record was written
twice), and a compiled module cannot run as ``__main__`` (the compaction child). The build is the wheel hook's
(bench/compiled.py, gcc at -O0 to save half of its minute); the tests run in a fresh pytest process whose
imports come from the build first, and a probe there checks that every module the hook names is compiled.

It takes about 75 s, so it runs only when asked (``SQUALS_TEST_COMPILED=1``): before shipping a compiled
build, and after a change to a module the hook compiles. The suite's default run stays within its 10 minutes.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: The tests run on the build (about 25 s, a choice against the suite's 10 minutes; all of tests/dealer and
#: the whole suite passed on it when it was made): several workers with a sticky split and exact tallies, a
#: SIGKILL around a compaction (the journal and its child), bodies and streamed answers, upgrades, the journal
#: and unit store, the server, the upstream client, the trip's failures, and what the Dealer publishes.
PROXY = "tests/dealer/test_proxy.py::test_"
ON_THE_BUILD = (
    f"{PROXY}10000_units_split_30_70_sticky_and_tallied_exactly[2]",
    f"{PROXY}sigkill_loses_nothing_acknowledged_before_or_after_a_compaction",
    f"{PROXY}requests_and_responses_are_forwarded_faithfully",
    "tests/dealer/test_units.py",
    "tests/dealer/test_server.py",
    "tests/dealer/test_upstream.py",
    "tests/dealer/test_trip.py",
    "tests/dealer/test_upgrade.py",
    "tests/dealer/test_loop.py",
)

PROBE = """
import importlib

def test_every_module_the_hook_names_is_compiled():
    for name in {modules!r}:
        path = importlib.import_module(name).__file__
        assert path.startswith({build!r}) and path.endswith(".so"), path
"""


def compiled_modules() -> list[str]:
    """The modules pyproject.toml's mypyc hook compiles, as import names."""
    hook = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["hatch"]["build"]["targets"]["wheel"]
    include: list[str] = hook["hooks"]["mypyc"]["include"]
    return [path.strip("/").removesuffix(".py").replace("/", ".") for path in include]


def build_compiled(dest: Path) -> Path:
    spec = importlib.util.spec_from_file_location("bench_compiled", ROOT / "bench" / "compiled.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    built: Path = module.build_compiled(dest, ROOT, opt_level="0")
    return built


@pytest.mark.slow
def test_the_dealer_tests_pass_on_the_compiled_request_path(tmp_path: Path) -> None:
    if os.environ.get("SQUALS_TEST_COMPILED") != "1":
        pytest.skip("the compiled build is opt-in: SQUALS_TEST_COMPILED=1 runs this test (about 75 s)")
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        pytest.skip("no C compiler here: the compiled build cannot be made")
    build = build_compiled(tmp_path / "build")
    probe = tmp_path / "test_probe.py"
    probe.write_text(PROBE.format(modules=compiled_modules(), build=str(build)))
    env = dict(os.environ, PYTHONSAFEPATH="1", PYTHONPATH=os.pathsep.join([str(build), str(ROOT)]))
    env["SQUALS_TEST_BUILD"] = "compiled"  # what test_loop.py expects the Dealer to publish
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:xdist",
            "-q",
            "-x",
            "--import-mode=importlib",
            str(probe),
            *ON_THE_BUILD,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
