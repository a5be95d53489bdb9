"""Suite-wide setup: every test's git commits get an identity, whatever the machine's git config holds."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True, scope="session")
def _git_identity() -> None:
    for key, value in {
        "GIT_AUTHOR_NAME": "squals-test",
        "GIT_AUTHOR_EMAIL": "test@squals.invalid",
        "GIT_COMMITTER_NAME": "squals-test",
        "GIT_COMMITTER_EMAIL": "test@squals.invalid",
    }.items():
        os.environ.setdefault(key, value)
