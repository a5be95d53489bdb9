"""An experiment starts from the files of the commit it records (issue 14, finding 1): a variant file
changed in the working tree after that commit changes nothing."""

from __future__ import annotations

import json

from squals_action.state import open_store
from tests.support.experiments import Shop, squals_experiment
from tests.support.lifecycle import get


def test_the_islands_run_the_committed_variant_files_not_the_working_trees(shop: Shop) -> None:
    variant = shop.path / "variants" / "green.yml"
    variant.write_text(variant.read_text().replace("COLOR: green", "COLOR: purple"))  # not committed
    started = squals_experiment(shop, "start", "--format", "json")
    assert started.returncode == 0, started.stderr
    eid = json.loads(started.stdout)["id"]
    with open_store(shop.path) as store:
        doc = store.read().experiment(eid)
    assert doc is not None and doc.extra["commit"] == shop.commit
    islands = doc.extra["islands"]
    assert get(islands["green"]["url"]) == (200, "green")  # the commit's variant, not the working tree's
    assert get(islands["control"]["url"]) == (200, "grey")
    stopped = squals_experiment(shop, "stop", eid)
    assert stopped.returncode == 0, stopped.stderr
