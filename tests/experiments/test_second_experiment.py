"""A later experiment whose variants have the names of an earlier one's, after that one's winner became prod.

The winner's own island is what became prod (adopted, never provisioned again), so it keeps the name it was
made under. Before, every experiment named its islands ``exp-<variant>``: the next experiment with a
``green`` provisioned onto prod's own stack (an ``UpdateStack`` with the new variant's template, a
``DeleteStack`` at its end) or, locally, replaced prod's process with its own. Each experiment's islands are
now its own (the experiment in the name), and nothing held by a live environment is provisioned or
destroyed by an experiment.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from squals_action.experiments.engine import ExperimentEngine, from_lifecycle
from squals_action.experiments.interface import ExperimentError
from squals_action.experiments.spec import as_island, island_names, legacy_island_name
from squals_action.lifecycle.project import ProjectOptions, open_project
from squals_action.lifecycle.traffic import DealerTraffic
from squals_action.manifest import load
from squals_action.providers import LocalProvider
from squals_action.state import EnvironmentState, ExperimentState, Transition, utc_now
from tests.experiments.test_aws import _shop, _stacks
from tests.support.aws import Cloud, MotoCalls
from tests.support.cloudwatch import publish_green_wins
from tests.support.experiments import Shop, experiment_engine, green_wins_again, make_shop, visit
from tests.support.lifecycle import git


def _engine(work: Path) -> ExperimentEngine:
    """The project's experiments, started 10 minutes ago: CloudWatch has whole minutes since the start."""
    engine = from_lifecycle(open_project(ProjectOptions(repo=work, gates=False)))
    engine.clock = lambda: utc_now() - timedelta(minutes=10)
    return engine


def test_on_aws_a_second_green_starts_and_stops_on_its_own_stack_never_on_prods(
    aws_cloud: Cloud, tmp_path: Path, moto_calls: MotoCalls
) -> None:
    """Before: the second start sent ``UpdateStack`` to prod's stack (the first green, adopted as pr-5) with
    the new variant's template, failed ("the listener forwards to this experiment's target groups already")
    and its clean-up sent ``DeleteStack`` for it: prod's document said prod on a deleted stack."""
    _, work, _ = _shop(aws_cloud, tmp_path)
    first = _engine(work)
    started = first.start(pr=5)
    first.clock = utc_now
    islands = started.experiment.extra["islands"]
    publish_green_wins({variant: island["env"] for variant, island in islands.items()})
    (won,) = first.tick(started.experiment.id)
    assert won.promoted == "green", won.message
    prod = first.store.read().environment("pr-5")
    assert prod is not None and prod.status == "prod" and prod.handle
    held = {prod.handle["data"]["stack_name"], prod.handle["data"]["stack_id"]}
    first.store.close()
    before = len(moto_calls.stacks())

    (work / "VERSION").write_text("two\n")
    git(work, "commit", "-qam", "Green again (#6)")
    git(work, "push", "-q", "origin", "main")
    second = _engine(work)
    running = second.start(pr=6)  # the same variant names
    assert running.experiment.status == "running"
    mine = {h["data"]["stack_name"] for h in running.experiment.extra["islands"].values()}
    assert not mine & held and len(mine) == 2
    assert second.stop(running.experiment.id).status == "stopped"

    calls = moto_calls.stacks()[before:]
    assert [(op, name) for op, name in calls if name in held and op != "DescribeStacks"] == [], calls
    assert {op for op, name in calls if any(s in name for s in mine)} >= {"CreateStack", "DeleteStack"}
    after = second.store.read().environment("pr-5")
    assert after is not None and after.status == "prod" and after.handle == prod.handle
    assert prod.handle["data"]["stack_name"] in _stacks(aws_cloud)
    assert not mine & _stacks(aws_cloud)
    second.store.close()


def test_locally_prod_serves_the_first_green_while_a_second_starts_and_stops_then_a_third_wins_too(
    shop: Shop,
) -> None:
    """Before, the second start's provision of ``exp-green`` replaced prod's process (prod's Dealer answered
    502). Then a winner promoted twice in a row: the third experiment's green (same variant name) becomes
    prod beside the first's, which is postprod and still answers (a rollback is one switch)."""
    first = experiment_engine(shop)
    started = first.start(pr=7)
    assert started.url
    visit(started.url, 160)
    (won,) = first.tick()
    assert won.promoted == "green", won.message
    prod = first.store.read().environment("pr-7")
    assert prod is not None and prod.handle
    shop.kept.add(str(prod.handle["env"]))  # the first winner's own island is prod: it stays
    public = DealerTraffic(shop.path / ".squals" / "dealer").url()
    assert public is not None and visit(public, 3) == {"green": 3}
    with pytest.raises(ExperimentError, match="already ran"):  # a re-run of its push: not "held by pr-7"
        first.start(pr=7)

    # a second experiment: its green is a darker one, under the same variant name
    variant = shop.path / "variants" / "green.yml"
    variant.write_text(variant.read_text().replace("COLOR: green", "COLOR: darkgreen"))
    git(shop.path, "commit", "-qam", "a darker green")
    git(shop.path, "push", "-q", "origin", "main")
    second = experiment_engine(shop, first.store)
    running = second.start()
    assert running.url and set(visit(running.url, 40)) == {"grey", "darkgreen"}
    assert visit(public, 3) == {"green": 3}  # prod kept its process while the second one runs
    second.stop(running.experiment.id)
    assert visit(public, 3) == {"green": 3}
    assert {h.env for h in LocalProvider(shop.path).list()} == {prod.handle["env"]}
    after = first.store.read().environment("pr-7")
    assert after is not None and after.status == "prod" and after.handle == prod.handle

    green_wins_again(second, public, experiment_id="third", pr=8)
    envs = first.store.read().environments()
    assert envs["pr-8"].status == "prod" and envs["pr-8"].handle
    shop.kept.add(str(envs["pr-8"].handle["env"]))
    assert envs["pr-7"].status == "postprod" and envs["pr-7"].handle == prod.handle
    assert visit(public, 3) == {"darkgreen": 3}
    islands = {h.env: h for h in LocalProvider(shop.path).list()}
    assert set(islands) == {prod.handle["env"], envs["pr-8"].handle["env"]}
    assert LocalProvider(shop.path).health(islands[prod.handle["env"]]).ok
    first.store.close()


def test_a_start_claimed_before_island_names_is_not_taken_over_onto_prods_island(shop: Shop) -> None:
    """A document from before ``island_names`` (its islands ``exp-<variant>``, never renamed) whose start
    died, while an older experiment's winner ``exp-green`` is prod, as those versions left it: taking the
    start over is refused in one line naming prod (before: provisioned onto prod's island), and its stop
    destroys its own ``exp-control`` and keeps prod's ``exp-green`` (before: destroyed it)."""
    eng = experiment_engine(shop)
    provider = LocalProvider(shop.path)
    green = provider.provision(legacy_island_name("green"), shop.commit, eng.manifest)
    shop.kept.add(green.env)
    provider.provision(legacy_island_name("control"), shop.commit, eng.manifest)
    prod = EnvironmentState("pr-5", "prod", commit=shop.commit, handle=green.to_json(), url=green.url, pr=5)
    eng.store.put_environment(prod, Transition("complete", "an older experiment's winner is prod"))
    long_ago = utc_now() - timedelta(hours=1)  # the dead start's claim may be taken over
    orphan = ExperimentState(
        id="orphan",
        spec_digest="sha256:x",
        variants=("control", "green"),
        status="starting",
        started_at=long_ago,
        updated_at=long_ago,
        extra={"claimed_by": "run 99/1 (abcd)"},
    )
    eng.store.put_experiment(orphan, Transition("experiment-start", "a start that died"))

    with pytest.raises(ExperimentError) as refused:
        eng.start(experiment_id="orphan")
    assert refused.value.one_line() == (
        "experiment start refused: variant green's island exp-green is held by pr-5 (prod); "
        "nothing was started"
    )
    assert eng.stop("orphan").status == "stopped"
    assert [h.env for h in provider.list()] == ["exp-green"] and provider.health(green).ok
    eng.store.close()


def test_the_squals_files_settings_for_exp_variant_follow_the_variant_to_each_experiments_island(
    tmp_path: Path,
) -> None:
    """``environments: {exp-control: ...}`` names control's island in a squals file (its app variables, its
    provider parameters): they apply to ``exp-control-<tag>`` of every experiment, in their place."""
    shop = make_shop(tmp_path, control_extra="environments:\n  exp-control: {env: {BANNER: control}}\n")
    manifest = load(shop.path / "squals.yml", shop.path)
    island = island_names("shop-1", ("control",))["control"]
    assert manifest.app_env_for(island).get("BANNER") is None  # the name alone does not match it
    assert as_island(manifest, "control", island).app_env_for(island)["BANNER"] == "control"
    assert as_island(manifest, "green", island) is manifest  # no entry for green's island
