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

from squals_action.experiments.engine import from_lifecycle
from squals_action.lifecycle.project import ProjectOptions, open_project
from squals_action.lifecycle.traffic import DealerTraffic
from squals_action.providers import LocalProvider
from squals_action.state import utc_now
from squals_action.state.interface import EnvironmentState
from tests.experiments.test_aws import _shop, _stacks
from tests.support.aws import Cloud, MotoCalls
from tests.support.cloudwatch import put_custom
from tests.support.experiments import Shop, experiment_engine, git, visit


def _green_wins_on_aws(work: Path, pr: int) -> EnvironmentState:
    """An experiment of ``work``'s HEAD started, green converting 20 % against control's 10 % (published
    per island), ticked: green's own stack promoted as ``pr-<pr>``; that prod's document."""
    engine = from_lifecycle(open_project(ProjectOptions(repo=work, gates=False)))
    engine.clock = lambda: utc_now() - timedelta(minutes=10)  # whole CloudWatch minutes since the start
    try:
        started = engine.start(pr=pr)
        engine.clock = utc_now
        islands = started.experiment.extra["islands"]
        for variant, shoppers, checkouts in (("control", 3000, 300), ("green", 2000, 400)):
            dims = {"Environment": islands[variant]["env"], "Variant": variant}
            put_custom("Shoppers", dims, shoppers, minutes_ago=6)
            put_custom("Checkouts", dims, checkouts, minutes_ago=5)
        (outcome,) = engine.tick(started.experiment.id)
        assert outcome.promoted == "green", outcome.message
        prod = engine.store.read().environment(f"pr-{pr}")
    finally:
        engine.store.close()
    assert prod is not None and prod.status == "prod" and prod.handle
    return prod


def test_on_aws_a_second_green_wins_on_its_own_stack_and_never_touches_prods(
    aws_cloud: Cloud, tmp_path: Path, moto_calls: MotoCalls
) -> None:
    _, work, _ = _shop(aws_cloud, tmp_path)
    first = _green_wins_on_aws(work, 5)
    stack = first.handle["data"]
    held = {stack["stack_name"], stack["stack_id"]}
    before = len(moto_calls.stacks())

    (work / "VERSION").write_text("two\n")
    git(work, "commit", "-qam", "Green again (#6)")
    git(work, "push", "-q", "origin", "main")
    second = _green_wins_on_aws(work, 6)  # the same variant names, promoted twice in a row

    touched = [(op, name) for op, name in moto_calls.stacks()[before:] if name in held]
    assert [op for op, _ in touched if op in ("CreateStack", "UpdateStack", "DeleteStack")] == [], touched
    assert second.handle["data"]["stack_name"] != stack["stack_name"]
    with open_project(ProjectOptions(repo=work, gates=False)).store as store:
        postprod = store.read().environment("pr-5")
    assert postprod is not None and postprod.status == "postprod"  # the first winner, hot for a rollback
    assert postprod.handle["data"]["stack_id"] == stack["stack_id"]
    assert {stack["stack_name"], second.handle["data"]["stack_name"]} <= _stacks(aws_cloud)


def test_locally_prod_still_serves_the_first_winner_while_a_second_green_starts_and_stops(
    shop: Shop,
) -> None:
    first = experiment_engine(shop)
    started = first.start(pr=7)
    assert started.url
    visit(started.url, 300)
    (won,) = first.tick()
    assert won.promoted == "green", won.message
    prod = first.store.read().environment("pr-7")
    assert prod is not None and prod.handle
    shop.kept.add(str(prod.handle["env"]))  # the first winner's own island is prod: it stays
    public = DealerTraffic(shop.path / ".squals" / "dealer").url()
    assert public is not None and visit(public, 3) == {"green": 3}

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
    first.store.close()
