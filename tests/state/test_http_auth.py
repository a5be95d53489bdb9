"""The state branch over git's smart HTTP with a token, as on GitHub: ``git http-backend`` on 127.0.0.1.

The token travels as ``actions/checkout``'s extra header in ``GIT_CONFIG_*`` variables: a right token
pushes, a wrong one (401) or a read-only one (403) is one line naming the cause, nothing is half-written on
the branch, and the token shows in no output, no config and no command line.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from squals_action.gitcmd import token_header_env
from squals_action.state import AccessDeniedError, Documents, Transition, open_store
from tests.support.git_http import GitHttpServer, basic_header
from tests.support.state import clone, git, make_origin

WRITE, READ = "ghs_write_token_0123456789", "ghs_read_token_0123456789"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[GitHttpServer]:
    served = tmp_path / "served"
    served.mkdir()
    make_origin(served)  # served/origin.git
    with GitHttpServer(served, {WRITE: "write", READ: "read"}) as http:
        yield http


@pytest.fixture
def checkout(server: GitHttpServer, tmp_path: Path) -> Path:
    """A checkout whose origin is the server, with no credentials kept (``persist-credentials: false``)."""
    repo = clone(server.root / "origin.git", tmp_path / "checkout")
    git(repo, "remote", "set-url", "origin", f"{server.url}/origin.git")
    return repo


def put(name: str) -> Transition:
    return Transition("test", f"put {name}", environment=name, run_id="9", actor="octocat")


def add_env(name: str) -> Callable[[Documents], Documents]:
    def fn(docs: Documents) -> Documents:
        docs[f"counters/{name}.json"] = {"schema_version": 1, "n": 1}
        return docs

    return fn


def remote_tip(server: GitHttpServer) -> str:
    bare = server.root / "origin.git"
    return git(bare, "for-each-ref", "--format=%(objectname)", "refs/heads/squals/state")


def test_the_right_token_pushes_and_stays_out_of_config_argv_and_output(
    server: GitHttpServer, checkout: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trace = tmp_path / "git-trace.log"
    monkeypatch.setenv("GIT_TRACE", str(trace))  # every command line git runs, helpers included
    config_before = (checkout / ".git" / "config").read_text()
    with open_store(checkout, git_env=token_header_env(server.url, WRITE, {})) as store:
        result = store.transact(add_env("pr-1"), put("pr-1"))
        assert store.read().commit == result.commit
    assert remote_tip(server).strip() == result.commit
    assert {s.role for s in server.seen} == {"write"} and {s.authorizations for s in server.seen} == {1}
    assert any("git-receive-pack" in s.path for s in server.seen)
    encoded = base64.b64encode(f"x-access-token:{WRITE}".encode()).decode()
    assert (checkout / ".git" / "config").read_text() == config_before
    logged = trace.read_text()
    assert "git-remote-http" in logged or "remote-http" in logged
    assert WRITE not in logged and encoded not in logged


def test_a_wrong_token_is_one_line_naming_401_and_writes_nothing(
    server: GitHttpServer, checkout: Path
) -> None:
    before = remote_tip(server)
    auth = token_header_env(server.url, "ghs_wrong", {})
    with open_store(checkout, git_env=auth) as store, pytest.raises(AccessDeniedError) as caught:
        store.transact(add_env("pr-1"), put("pr-1"))
    message = caught.value.one_line()
    assert message == (
        "remote 'origin' did not accept the credentials for state branch 'squals/state' (HTTP 401): "
        "the token was not accepted"
    )
    assert "\n" not in str(caught.value) and "ghs_wrong" not in message
    assert caught.value.status == 401
    assert remote_tip(server) == before == ""


def test_a_read_only_token_reads_but_its_push_is_refused_with_the_remotes_words(
    server: GitHttpServer, checkout: Path
) -> None:
    with open_store(checkout, git_env=token_header_env(server.url, WRITE, {})) as store:
        store.transact(add_env("pr-1"), put("pr-1"))
    tip = remote_tip(server)
    objects = git(server.root / "origin.git", "count-objects", "-v")
    with open_store(checkout, git_env=token_header_env(server.url, READ, {})) as store:
        assert "counters/pr-1.json" in store.read().documents  # a read-only token may fetch
        with pytest.raises(AccessDeniedError) as caught:
            store.transact(add_env("pr-2"), put("pr-2"))
    assert caught.value.status == 403
    assert caught.value.one_line() == (
        "remote 'origin' denied permission for state branch 'squals/state' (HTTP 403): "
        "Permission to origin.git denied to github-actions[bot]."
    )
    assert remote_tip(server) == tip  # nothing half-written: the branch did not move, no object arrived
    assert git(server.root / "origin.git", "count-objects", "-v") == objects


def test_the_token_replaces_credentials_the_checkout_persisted(server: GitHttpServer, checkout: Path) -> None:
    # actions/checkout's persist-credentials: true leaves this header in .git/config (another identity here)
    git(checkout, "config", f"http.{server.url}/.extraheader", f"AUTHORIZATION: {basic_header(READ)}")
    with open_store(checkout, git_env=token_header_env(server.url, WRITE, {})) as store:
        result = store.transact(add_env("pr-1"), put("pr-1"))
    assert remote_tip(server).strip() == result.commit
    assert {s.authorizations for s in server.seen} == {1}  # only ours went out, not both


def test_the_header_is_scoped_to_the_server_and_appended_to_existing_config_entries() -> None:
    env = token_header_env("https://ghe.example.com/", "t0k", {"GIT_CONFIG_COUNT": "1"})
    key = "http.https://ghe.example.com/.extraheader"
    assert env == {
        "GIT_CONFIG_COUNT": "3",
        "GIT_CONFIG_KEY_1": key,
        "GIT_CONFIG_VALUE_1": "",
        "GIT_CONFIG_KEY_2": key,
        "GIT_CONFIG_VALUE_2": "AUTHORIZATION: basic " + base64.b64encode(b"x-access-token:t0k").decode(),
    }
