"""The Dealer's request path compiled by mypyc, as the image ships it, passes the Dealer's own tests.

Compiled code checks its annotations at run time and compiles some constructs its own way; found by running
these tests on the build: a memoryview slice's start was evaluated twice (every journal record was written
twice), and a compiled module cannot run as ``__main__`` (the compaction child). The build is the wheel hook's
(bench/compiled.py, gcc at -O0 to save half of its minute); the tests run in a fresh pytest process whose
imports come from the build first, and a probe there checks that every module the hook names is compiled.
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

#: The tests run on the build (about 35 s): the request path end to end with several workers (sticky split
#: and exact tallies, a promotion and rollback under load, restart and SIGKILL around a compaction, 502/504,
#: events), the journal and unit store, the server, the upstream client, the trip, upgrades, and what the
#: Dealer publishes about its build.
PROXY = "tests/dealer/test_proxy.py::test_"
ON_THE_BUILD = (
    f"{PROXY}10000_units_split_30_70_sticky_and_tallied_exactly[2]",
    f"{PROXY}promotion_and_rollback_under_steady_load_lose_no_request[2]",
    f"{PROXY}restart_keeps_tallies_and_a_bare_daemon_restart_keeps_the_switch",
    f"{PROXY}sigkill_loses_nothing_acknowledged_before_or_after_a_compaction",
    f"{PROXY}requests_and_responses_are_forwarded_faithfully",
    f"{PROXY}requests_in_flight_finish_on_an_upstream_switched_away_and_drain_waits_for_them",
    f"{PROXY}header_units_are_sticky_without_cookies",
    f"{PROXY}slow_upstream_times_out_with_504",
    f"{PROXY}upstream_refusing_connections_is_a_502_counted_for_its_variant",
    f"{PROXY}events_from_the_public_endpoint_and_the_admin_api",
    "tests/dealer/test_units.py",
    "tests/dealer/test_server.py",
    "tests/dealer/test_upstream.py",
    "tests/dealer/test_trip.py",
    "tests/dealer/test_upgrade.py",
    "tests/dealer/test_loop.py",
)

PROBE = '''
import importlib

def test_every_module_the_hook_names_is_compiled():
    for name in {modules!r}:
        path = importlib.import_module(name).__file__
        assert path.startswith({build!r}) and path.endswith(".so"), path
'''


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
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        pytest.skip("no C compiler here: the compiled build cannot be made")
    build = build_compiled(tmp_path / "build")
    probe = tmp_path / "test_probe.py"
    probe.write_text(PROBE.format(modules=compiled_modules(), build=str(build)))
    env = dict(os.environ, PYTHONSAFEPATH="1", PYTHONPATH=os.pathsep.join([str(build), str(ROOT)]))
    env["SQUALS_TEST_BUILD"] = "compiled"  # what test_loop.py expects the Dealer to publish
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:xdist", "-q", "-x",
         "--import-mode=importlib", str(probe), *ON_THE_BUILD],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
