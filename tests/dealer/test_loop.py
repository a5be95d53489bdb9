"""The Dealer's event loop: uvloop when installed, asyncio on request; both proxy the same way. The request
path it publishes is the build's (tests/dealer/test_compiled.py runs this on the compiled one)."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest
import requests

from squals_action.dealer.config import ENDPOINT_FILE
from tests.support.dealer import DealerFactory


def _loop_of(state_dir: Path) -> str:
    return str(json.loads((state_dir / ENDPOINT_FILE).read_text())["loop"])


#: What the request path runs as here: test_compiled.py sets it for its run on the compiled build.
BUILD = os.environ.get("SQUALS_TEST_BUILD", "interpreted")


@pytest.mark.parametrize("asked", ["", "asyncio"])
def test_the_loop_is_uvloop_when_installed_unless_asyncio_is_asked_for(
    asked: str,
    pair: dict[str, str],
    dealer_factory: DealerFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SQUALS_DEALER_LOOP", asked)
    state = tmp_path / "loop"
    dealer = dealer_factory(pair, {"a": 1, "b": 0}, state=state)
    has_uvloop = importlib.util.find_spec("uvloop") is not None
    assert _loop_of(state) == ("uvloop" if has_uvloop and not asked else "asyncio")
    assert json.loads((state / ENDPOINT_FILE).read_text())["request_path"] == BUILD
    assert f"event loop: {_loop_of(state)}, request path: {BUILD}" in (state / "dealer.log").read_text()

    session = requests.Session()
    answers = [session.get(dealer.url + f"/echo?n={i}", timeout=10) for i in range(5)]
    assert [r.status_code for r in answers] == [200] * 5
    assert {r.headers["X-Squals-Variant"] for r in answers} == {"a"}
    tally = dealer.tallies()["a"]
    assert (tally.activations, tally.units, tally.errors) == (5, 1, 0)
