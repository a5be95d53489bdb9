"""An experiment starts from the files of the commit it records (issue 14, finding 1): a variant file
changed in the working tree after that commit changes nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from squals_action.state import open_store
from tests.support.experiments import Shop
from tests.support.lifecycle import get


def test_the_islands_run_the_committed_variant_files_not_the_working_trees(shop: Shop) -> None:
    variant = shop.path / "variants" / "green.yml"
    variant.write_text(variant.read_text().replace("COLOR: green", "COLOR: purple"))  # not committed
    env = dict(os.environ, GITHUB_ACTOR="octocat")
    started = subprocess.run(
        [sys.executable, "-m", "squals_action.cli", "experiment", "start", "--format", "json"],
        cwd=shop.path,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert started.returncode == 0, started.stderr
    eid = json.loads(started.stdout)["id"]
    with open_store(shop.path) as store:
        doc = store.read().experiment(eid)
    assert doc is not None and doc.extra["commit"] == shop.commit
    islands = doc.extra["islands"]
    assert get(islands["green"]["url"]) == (200, "green")  # the commit's variant, not the working tree's
    assert get(islands["control"]["url"]) == (200, "grey")
    stopped = subprocess.run(
        [sys.executable, "-m", "squals_action.cli", "experiment", "stop", eid],
        cwd=shop.path,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert stopped.returncode == 0, stopped.stderr
