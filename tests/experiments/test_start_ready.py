"""Variants ready before traffic: a start validates every variant file at the start commit, finds its scripts
there, and runs its before_preprod / after_preprod hooks and exit tests on its own island (the lifecycle's
code) before the splitter opens; a variant that fails stops the start in one line with nothing half-started.

Real git repositories with a bare ``origin`` for the state branch, the real local provider and Dealer
daemons, real hook scripts writing marker files."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest

from squals_action.dealer import dealer_status
from squals_action.experiments.interface import ExperimentError
from squals_action.experiments.spec import island_names
from squals_action.lifecycle.traffic import DealerTraffic
from squals_action.manifest import load
from squals_action.providers import LocalProvider
from squals_action.providers.interface import DestroyOutcome, EnvironmentHandle
from tests.support.experiments import (
    experiment_engine,
    make_shop,
    project_lifecycle,
    squals_experiment,
    state_log,
    stop_everything,
    visit,
)
from tests.support.lifecycle import git

#: Writes what a command saw (its environment's URL and its folder) to ``$MARKS/<env>-<stage>``.
MARK = '#!/bin/sh\nprintf "url=%s dir=%s\\n" "$SQUALS_URL" "$(pwd)" > "$MARKS/$SQUALS_ENV-$SQUALS_STAGE"\n'
#: An exit test: what the island answers at ``/``, to ``$MARKS/<env>-exit``.
FETCH = f"""#!{sys.executable}
import os, urllib.request
with urllib.request.urlopen(os.environ["SQUALS_URL"] + "/", timeout=10) as answer:
    body = answer.read().decode().strip()
with open(os.path.join(os.environ["MARKS"], os.environ["SQUALS_ENV"] + "-exit"), "w") as out:
    out.write(body + "\\n")
"""
FAIL = '#!/bin/sh\necho "the orders table is not migrated" >&2\nexit 3\n'


def hooks(prefix: str, marks: Path, *, after: str = "mark.sh") -> str:
    """A hooks and exit-tests section whose scripts are ``prefix``/scripts/... (relative to the file)."""
    env = f"{{MARKS: '{marks}'}}"
    return f"""\
hooks:
  before_preprod: [{{name: snapshot, run: {prefix}/scripts/mark.sh, env: {env}}}]
  after_preprod: [{{name: migrate, run: {prefix}/scripts/{after}, env: {env}}}]
exit_tests: [{{name: e2e, run: {prefix}/scripts/fetch.sh, env: {env}}}]
"""


def marks_of(marks: Path) -> dict[str, str]:
    return {p.name: p.read_text().strip() for p in sorted(marks.iterdir())}


def test_a_good_experiment_starts_after_each_variant_ran_its_hooks_and_exit_tests_on_its_island(
    tmp_path: Path,
) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    shop = make_shop(
        tmp_path,
        control_extra=hooks(".", marks),
        green_extra=hooks("..", marks),
        scripts={"mark.sh": MARK, "fetch.sh": FETCH},
    )
    try:
        eng = experiment_engine(shop)
        started = eng.start()
        assert started.started and started.experiment.status == "running", started.message
        islands = started.experiment.extra["islands"]
        env = started.experiment.extra["island_names"]  # SQUALS_ENV of each variant's hooks
        seen = marks_of(marks)
        stages = ("before_preprod", "after_preprod", "exit")
        assert set(seen) == {f"{env[v]}-{stage}" for v in ("control", "green") for stage in stages}
        for variant, color in (("control", "grey"), ("green", "green")):
            url = islands[variant]["url"]
            before = dict(kv.split("=", 1) for kv in seen[f"{env[variant]}-before_preprod"].split(" "))
            assert before["url"] == ""  # before provisioning: no island yet
            after = dict(kv.split("=", 1) for kv in seen[f"{env[variant]}-after_preprod"].split(" "))
            assert after["url"] == url  # against its own island
            # from the variant file's own folder in the start commit's worktree, not the working tree
            folder = "/tree" if variant == "control" else "/tree/variants"
            assert before["dir"].endswith(folder) and after["dir"].endswith(folder), after
            assert seen[f"{env[variant]}-exit"] == color  # the exit test reached its own island
        assert state_log(shop.origin) == ["experiment-start", "experiment-routing", "experiment-running"]
        assert started.url and set(visit(started.url, 40)) == {"grey", "green"}
        eng.stop(started.experiment.id)
        eng.store.close()
    finally:
        leftovers, dealers = stop_everything(shop.path)
    assert leftovers == [] and dealers == []


def test_a_variant_whose_relative_path_is_wrong_fails_at_start_in_one_line(tmp_path: Path) -> None:
    """``./scripts/smoke.sh`` in ``variants/green.yml`` means ``variants/scripts/smoke.sh``: before, the
    start passed and the hook failed only when green won and the lifecycle deployed it."""
    shop = make_shop(
        tmp_path,
        green_extra="hooks:\n  after_preprod: [{name: smoke, run: ./scripts/smoke.sh}]\n",
        scripts={"smoke.sh": "#!/bin/sh\nexit 0\n"},
    )
    try:
        sha = shop.commit[:12]
        refused = squals_experiment(shop, "start")
        assert refused.returncode == 1, refused.stdout + refused.stderr
        line = refused.stderr.strip()
        assert line.splitlines() == [line] and "Traceback" not in line
        assert line == (
            "squals: error: experiment start refused: variant green: variants/green.yml:10:19 in commit "
            f"{sha}: after_preprod hook smoke: expected an existing file, './scripts/smoke.sh' does not "
            "exist (looked for variants/scripts/smoke.sh); nothing was started"
        )
        assert git(shop.origin, "branch", "--list", "squals/state") == ""  # nothing claimed, nothing written
        assert LocalProvider(shop.path).list() == ()

        # fixed in the working tree only: the start commit still holds the wrong path
        green = shop.path / "variants" / "green.yml"
        green.write_text(green.read_text().replace("./scripts/smoke.sh", "../scripts/smoke.sh"))
        assert load(shop.path / "squals.yml", shop.path).experiment is not None
        again = squals_experiment(shop, "start")
        assert again.returncode == 1 and "looked for variants/scripts/smoke.sh" in again.stderr
        assert LocalProvider(shop.path).list() == ()
    finally:
        leftovers, dealers = stop_everything(shop.path)
    assert leftovers == [] and dealers == []


def test_a_variant_file_invalid_at_the_start_commit_is_refused_naming_the_variant(tmp_path: Path) -> None:
    """The working tree was fixed, the commit was not: the commit's files are the ones validated, and the
    one line names the file once, as the repository does, with the commit (never the start's worktree)."""
    shop = make_shop(tmp_path, green_extra="exit_tests: [{name: e2e}]\n")
    try:
        green = shop.path / "variants" / "green.yml"
        green.write_text(green.read_text().replace("exit_tests: [{name: e2e}]\n", ""))
        assert load(shop.path / "squals.yml", shop.path).experiment is not None  # the working tree is valid
        refused = squals_experiment(shop, "start")
        assert refused.returncode == 1, refused.stdout + refused.stderr
        assert refused.stderr.splitlines() == [
            f"squals: error: experiment start refused: variant green: variants/green.yml:9:14 in commit "
            f"{shop.commit[:12]}: $.exit_tests[0]: missing required key 'run'; nothing was started"
        ]
        assert "/tmp/" not in refused.stdout + refused.stderr
        assert git(shop.origin, "branch", "--list", "squals/state") == ""
        assert LocalProvider(shop.path).list() == ()
    finally:
        leftovers, dealers = stop_everything(shop.path)
    assert leftovers == [] and dealers == []


def test_a_variant_its_provider_refuses_is_named_with_its_file_once_and_the_commit(tmp_path: Path) -> None:
    """control's own file (squals.yml) runs its app from a folder the start commit lacks: the provider's
    refusal already names the file, line and commit; the start's line adds the variant, not the file again
    (before: ``variant control: squals.yml: squals.yml:5:3: ...``, no commit)."""
    shop = make_shop(tmp_path)
    squals = shop.path / "squals.yml"
    health = "  health: /healthz\n"
    squals.write_text(squals.read_text().replace(health, f"{health}  workdir: gone\n"))
    git(shop.path, "commit", "-qam", "control runs from gone/")
    sha = git(shop.path, "rev-parse", "HEAD")[:12]
    try:
        failed = squals_experiment(shop, "start")
        assert failed.returncode == 1, failed.stdout + failed.stderr
        errors = [line for line in failed.stderr.splitlines() if line.startswith("squals: error:")]
        assert errors == [
            f"squals: error: experiment shop-{sha}: start failed: variant control: squals.yml:4:3 in commit "
            f"{sha}: app.workdir 'gone' is not a folder in the commit; no traffic was routed and its islands "
            "were stopped"
        ], failed.stderr
        assert "/tmp/" not in failed.stdout + failed.stderr
        assert LocalProvider(shop.path).list() == ()
    finally:
        leftovers, dealers = stop_everything(shop.path)
    assert leftovers == [] and dealers == []


def test_a_variant_whose_after_preprod_hook_fails_stops_the_start_with_nothing_half_started(
    tmp_path: Path,
) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    shop = make_shop(
        tmp_path,
        control_extra=hooks(".", marks),
        green_extra=hooks("..", marks, after="fail.sh"),
        scripts={"mark.sh": MARK, "fetch.sh": FETCH, "fail.sh": FAIL},
    )
    try:
        eng = experiment_engine(shop)
        # prod runs behind the project's Dealer: the start must not move a single user
        prod = project_lifecycle(shop, eng.manifest, eng.store, LocalProvider(shop.path))
        assert prod.deploy(1, "HEAD").ok and prod.promote(1).ok
        public = DealerTraffic(shop.path / ".squals" / "dealer")
        routing = dict(public.routing())
        assert routing == {"pr-1": 100.0}
        before = state_log(shop.origin)

        with pytest.raises(ExperimentError) as caught:
            eng.start()
        line = caught.value.one_line()
        eid = f"shop-{shop.commit[:12]}"
        assert line.startswith(
            f"experiment {eid}: start failed: variant green: variants/green.yml:11:19 in commit "
            f"{shop.commit[:12]}: "
            "after_preprod hook migrate failed: exit 3; log "
        ), line
        assert "last output: the orders table is not migrated" in line
        assert line.endswith("no traffic was routed and its islands were stopped")

        # control was made ready first (its hooks ran), green got as far as its failing hook
        control, green = island_names(eid, ("control", "green")).values()
        assert set(marks_of(marks)) == {
            f"{control}-before_preprod",
            f"{control}-after_preprod",
            f"{control}-exit",
            f"{green}-before_preprod",
        } | {"pr-1-before_preprod", "pr-1-after_preprod", "pr-1-exit"}
        # nothing half-started: prod's routing as it was, no experiment Dealer, no island, not running
        assert dict(public.routing()) == routing
        assert dealer_status(eng.dealer_dir(eid)).state == "stopped"
        assert {h.env for h in LocalProvider(shop.path).list()} == {"pr-1"}
        assert state_log(shop.origin)[len(before) :] == ["experiment-start", "experiment-failed"]
        doc = eng.store.read().experiment(eid)
        assert doc is not None and doc.status == "failed"
        assert doc.decision is not None and "after_preprod hook migrate failed" in doc.decision["reason"]
        assert "islands" not in doc.extra and "url" not in doc.extra
        env = eng.store.read().environment("pr-1")
        assert env is not None and env.status == "prod" and env.traffic_share == 100.0
        eng.store.close()
    finally:
        leftovers, dealers = stop_everything(shop.path)
    assert leftovers == ["pr-1"]
    assert dealers == [str(shop.path / ".squals" / "dealer")]


class Stuck(LocalProvider):
    """The local provider, except that the first destroy of control's island fails, as a process that will
    not stop makes it fail."""

    refused = False

    def destroy(self, handle: EnvironmentHandle) -> DestroyOutcome:
        if handle.env.startswith("exp-control-") and not self.refused:
            self.refused = True
            return DestroyOutcome(handle.env, False, "its process would not stop")
        return super().destroy(handle)


def test_an_island_a_failed_start_cannot_destroy_is_named_with_the_command_that_ends_it(
    tmp_path: Path,
) -> None:
    shop = make_shop(
        tmp_path,
        green_extra="hooks:\n  after_preprod: [{name: migrate, run: ../scripts/fail.sh}]\n",
        scripts={"fail.sh": FAIL},
    )
    try:
        eng = dataclasses.replace(experiment_engine(shop), provider=Stuck(shop.path))
        eid = f"shop-{shop.commit[:12]}"
        control = island_names(eid, ("control",))["control"]
        with pytest.raises(ExperimentError) as caught:
            eng.start()
        line = caught.value.one_line()
        assert (
            f"variant green: variants/green.yml:10:19 in commit {shop.commit[:12]}: after_preprod hook "
            "migrate failed: exit 3"
        ) in line
        assert line.endswith(
            f"no traffic was routed, but not destroyed: {control} (its process would not stop): "
            f"run `squals experiment stop {eid}`"
        ), line
        assert [h.env for h in LocalProvider(shop.path).list()] == [control]
        doc = eng.store.read().experiment(eid)
        assert doc is not None and doc.status == "starting"  # never running; a stop finds it
        assert dealer_status(eng.dealer_dir(eid)).state == "stopped"
        assert eng.stop(eid).status == "stopped"  # the command the line names
        assert LocalProvider(shop.path).list() == ()
        eng.store.close()
    finally:
        leftovers, dealers = stop_everything(shop.path)
    assert leftovers == [] and dealers == []


def test_app_start_is_checked_where_the_provider_runs_it(tmp_path: Path) -> None:
    """The local provider runs ``app.start`` from the commit; on aws the island's template says what runs."""
    from squals_action.experiments.ready import checked

    shop = make_shop(tmp_path, scripts={"serve": "#!/bin/sh\nexit 0\n"})
    green = shop.path / "variants" / "green.yml"
    # its app runs in ``workdir: ..`` (the repository's top): the script is scripts/serve from there
    green.write_text(green.read_text().replace(f"start: {sys.executable} app.py", "start: ./serve"))
    sha = "0" * 40
    with pytest.raises(ExperimentError) as caught:
        checked(shop.path, "squals.yml", sha, app_here=True)
    assert caught.value.one_line() == (
        "experiment start refused: variant green: variants/green.yml:4:3 in commit 000000000000: app.start: "
        "expected an existing file, './serve' does not exist (looked for serve); nothing was started"
    )
    started, spec = checked(shop.path, "squals.yml", sha, app_here=False)  # on aws
    assert set(spec.variants) == {"control", "green"} and started.name == "shop"


def test_a_splitter_that_cannot_open_stops_the_ready_islands(tmp_path: Path) -> None:
    """The experiment's Dealer cannot start (its folder would be under a file): an OSError, not a squals
    error. The islands made ready for it are stopped all the same (before, they kept running); no Dealer can
    run where there is no folder, so nothing is left and the start is recorded failed (a stop then has
    nothing to do)."""
    shop = make_shop(tmp_path)
    try:
        eng = experiment_engine(shop)
        blocker = tmp_path / "blocker"
        blocker.write_text("a file where the experiments' folder should be\n")
        eng.state_dir = blocker
        eid = f"shop-{shop.commit[:12]}"
        with pytest.raises(ExperimentError) as caught:
            eng.start()
        line = caught.value.one_line()
        assert line.startswith(f"experiment {eid}: start failed: [Errno 20] Not a directory: "), line
        assert line.endswith("; the splitter could not open and its islands were stopped"), line
        assert LocalProvider(shop.path).list() == ()  # both islands destroyed
        doc = eng.store.read().experiment(eid)
        assert doc is not None and doc.status == "failed"
        assert set(doc.extra["islands"]) == {"control", "green"}  # written before the splitter opened
        assert eng.stop(eid).status == "failed"
        eng.store.close()
    finally:
        leftovers, dealers = stop_everything(shop.path)
    assert leftovers == [] and dealers == []
