"""Build the real pieces for the entry point: the GitHub client (or none) and the core pipeline."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

from squals_action.github.events import Intent
from squals_action.github.interface import Core, GitHubApi
from squals_action.github.runner import Settings


def build_api(intent: Intent, token: str, environ: Mapping[str, str]) -> GitHubApi | None:
    """The PyGithub client, or None when the run must not write to GitHub.

    A read-only token (a fork's ``pull_request`` run, Dependabot's, as the payload tells) cannot write: the
    run validates and gates, and reports through the job summary and annotations only. Without a token
    nothing is written either.
    """
    if intent.read_only:
        print(
            f"squals: {intent.read_only}: nothing is written to GitHub; see the job summary", file=sys.stderr
        )
        return None
    repository = intent.repository or environ.get("GITHUB_REPOSITORY", "")
    if not token or not repository:
        print("squals: no github-token or repository: reporting to the job summary only", file=sys.stderr)
        return None
    from squals_action.github.client import ClientConfig, GitHubClient

    return GitHubClient(ClientConfig.from_env(token, repository, environ))


def build_core(settings: Settings, environ: Mapping[str, str] | None = None) -> Core:
    """The pipeline behind every intent (manifest, gates, lifecycle, state), built lazily."""
    from squals_action.github.pipeline import Pipeline

    return Pipeline(settings, dict(os.environ if environ is None else environ))
