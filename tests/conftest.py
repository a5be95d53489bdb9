"""Suite-wide setup: every test's git commits get an identity, whatever the machine's git config holds; the
fixtures of ``tests/support`` are registered here, once, so a test of any folder may use any package's."""

from __future__ import annotations

import os
import sys

import pytest

#: The pytest processes cache the bytecode of what they import (the test modules as pytest rewrites them,
#: squals_action) even where the environment sets PYTHONDONTWRITEBYTECODE: else each xdist worker rewrites
#: and compiles every test module again at each run (its collection took 12 s instead of 3). The commands
#: the tests start keep the environment's setting.
sys.dont_write_bytecode = False

#: Lowest layer first: a support module may import the ones before it (pytest rewrites their asserts).
pytest_plugins = (
    "tests.support.state",
    "tests.support.dealer",
    "tests.support.providers",
    "tests.support.aws",
    "tests.support.gates",
    "tests.support.lifecycle",
    "tests.support.experiments",
)
#: Fixture apps keep their own tests (they are copies of real projects); they are data here, not our tests.
collect_ignore = ["fixtures"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The tests marked ``slow`` run first (in their order; the others keep theirs after them): xdist hands
    tests out in this order, so the long ones start early and the short ones fill both workers at the end,
    instead of a long test running alone while the other worker has nothing left."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(autouse=True, scope="session")
def _one_dealer_worker() -> None:
    """Dealers started by tests (and by the lifecycle under test) run one worker unless a test asks for more:
    the default, one per core, would start as many processes per Dealer and slow the suite down; the tests of
    several workers pin 2 in their config."""
    os.environ.setdefault("SQUALS_DEALER_WORKERS", "1")


@pytest.fixture(autouse=True, scope="session")
def _git_identity() -> None:
    for key, value in {
        "GIT_AUTHOR_NAME": "squals-test",
        "GIT_AUTHOR_EMAIL": "test@squals.invalid",
        "GIT_COMMITTER_NAME": "squals-test",
        "GIT_COMMITTER_EMAIL": "test@squals.invalid",
    }.items():
        os.environ.setdefault(key, value)
