"""The client over real HTTP (a GitHub API on 127.0.0.1): retries and Retry-After go through urllib3 itself,
with its real sleeps, so the cap on Retry-After and the look-up before a repeated POST are exercised for real.
"""

from __future__ import annotations

import pytest

from squals_action.github.client import ClientConfig, GitHubClient
from squals_action.report.comment import MARKER
from tests.support.fake_github import FakeGitHub
from tests.support.github import REPO

LIMITED = {"message": "You have exceeded a secondary rate limit. Please wait a few minutes and try again."}


def client(url: str) -> GitHubClient:
    return GitHubClient(
        ClientConfig(
            token="ghs_http",
            repository=REPO,
            api_url=url,
            timeout=10,
            retries=3,
            backoff_factor=0.01,
            secondary_rate_wait=0.05,
            max_retry_after=0.05,
            write_interval=0,
            request_interval=0,
        )
    )


@pytest.mark.timeout(120)  # an uncapped Retry-After would wait an hour: the timeout catches it
def test_rate_limits_and_server_errors_over_http() -> None:
    with FakeGitHub(REPO) as fake:
        path = f"/repos/{REPO}/issues/2/comments"
        fake.inject[("GET", path)] = [(502, {}, {"message": "Bad Gateway"})]
        fake.inject[("POST", path)] = [
            (403, {"Retry-After": "3600"}, LIMITED),  # an hour asked; the cap keeps the test short
            (403, {}, LIMITED),  # no Retry-After: secondary_rate_wait
            (502, {}, {"message": "Bad Gateway"}),  # not replayed blindly: looked up first
        ]
        cid = client(fake.url).upsert_comment(2, MARKER, lambda old: MARKER + "\nhi")
        assert fake.comment_bodies(2) == [MARKER + "\nhi"] and cid in fake.comments
        calls = [(m, p.split("?")[0]) for m, p, _ in fake.requests]
        assert calls == [
            ("GET", path),  # 502
            ("GET", path),
            ("POST", path),  # 403 Retry-After
            ("POST", path),  # 403 rate limit
            ("POST", path),  # 502
            ("GET", path),
            ("POST", path),  # created
        ]
