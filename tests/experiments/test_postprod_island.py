"""No experiment start or stop touches the island of the postprod (the previous prod, hot at 0 % so a
rollback is one switch), on the local provider, with the postprod made by the lifecycle itself.

An island's name is the experiment's own (``exp-<variant>-<tag>``, the tag from the experiment id), so a new
experiment meets the postprod's island only when its id is the one whose winner that island was, its
document gone from the state branch (cleaned by hand), or a start of that id claimed and died: what the
name cannot rule out, the guard on live records (``records.holders``) must.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from squals_action.experiments.interface import ExperimentError
from squals_action.experiments.spec import island_names
from squals_action.lifecycle.traffic import DealerTraffic
from squals_action.providers import LocalProvider
from squals_action.state import Documents, ExperimentState, Transition, utc_now
from tests.support.experiments import Shop, experiment_engine, green_wins_again, visit


def _forget(docs: Documents) -> Documents:
    assert docs.remove_experiment("one")
    return docs


def test_a_new_experiment_onto_postprods_island_is_refused_and_a_stop_never_destroys_it(shop: Shop) -> None:
    eng = experiment_engine(shop)
    one = eng.start(experiment_id="one", pr=7)
    assert one.url
    visit(one.url, 160)
    (won,) = eng.tick()
    assert won.promoted == "green", won.message
    public = DealerTraffic(shop.path / ".squals" / "dealer").url()
    assert public is not None
    green_wins_again(eng, public, experiment_id="two", pr=8)
    envs = eng.store.read().environments()
    assert (envs["pr-7"].status, envs["pr-8"].status) == ("postprod", "prod")
    postprod = envs["pr-7"]
    assert postprod.handle and postprod.url
    island = str(postprod.handle["env"])
    assert island == island_names("one", ("green",))["green"]  # the first winner's own island
    shop.kept |= {island, str(envs["pr-8"].handle["env"])}
    provider = LocalProvider(shop.path)
    running = {h.env: h.data.get("process") for h in provider.list()}
    assert visit(postprod.url, 3) == {"green": 3}

    # experiment one's document is gone: "one" is a new experiment again, its green named as postprod's island
    eng.store.transact(_forget, Transition("experiment-start", "the state branch cleaned by hand"))
    with pytest.raises(ExperimentError) as refused:
        eng.start(experiment_id="one", pr=9)
    held = f"variant green's island {island} is held by pr-7 (postprod)"
    assert refused.value.one_line() == f"experiment start refused: {held}; nothing was started"
    assert "one" not in eng.store.read().experiments()
    assert {h.env: h.data.get("process") for h in provider.list()} == running  # nothing made or replaced
    assert DealerTraffic(eng.dealer_dir("one")).url() is None  # no splitter started

    # a start of "one" that claimed the names and died: taken over, refused the same; stopped, it keeps the
    # postprod's island
    long_ago = utc_now() - timedelta(hours=1)  # the dead start's claim may be taken over
    died = ExperimentState(
        id="one",
        spec_digest="sha256:x",
        variants=("control", "green"),
        status="starting",
        started_at=long_ago,
        updated_at=long_ago,
        extra={"claimed_by": "run 99/1 (abcd)", "island_names": island_names("one", ("control", "green"))},
    )
    eng.store.put_experiment(died, Transition("experiment-start", "a start that died"))
    with pytest.raises(ExperimentError) as taken_over:
        eng.start(experiment_id="one", pr=9)
    assert taken_over.value.one_line() == refused.value.one_line()
    assert eng.stop("one").status == "stopped"
    assert {h.env: h.data.get("process") for h in provider.list()} == running
    assert visit(postprod.url, 3) == {"green": 3} and visit(public, 3) == {"green": 3}
    after = eng.store.read().environments()
    assert after["pr-7"].status == "postprod" and after["pr-7"].handle == postprod.handle
    eng.store.close()
