"""Suite-wide setup: every test's git commits get an identity, whatever the machine's git config holds; the
fixtures of ``tests/support`` are registered here, once, so a test of any folder may use any package's."""

from __future__ import annotations

import os

import pytest

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
