"""Variants ready before traffic: what a start checks and runs for every variant before the splitter opens.

Before anything is claimed, from a worktree of the start commit (never the working tree), :func:`checked`:

1. :func:`load_variants` validates the squals file and every variant file, each with its own folder as the
   base of its relative paths; a problem names its variant, file and line;
2. the metric declarations (``sources.check_declarations``);
3. :func:`check_scripts` finds the script every command starts with (``./scripts/smoke.sh``: the app's
   ``start``, hooks of every stage, exit and in-flight tests) in that commit, executable, from the
   command's folder (``workdir`` under the file's folder). Validation alone accepts a missing script (it
   may be generated), so a variant's wrong relative path used to surface only when it won and its hooks
   ran at last.

Then, with the provider bound to the start commit, :func:`check_islands` checks every variant's island as
its provisioning would before starting anything (on aws its template and parameters), all before the
first island is made. After the claim, :func:`ready_islands` makes each variant's island ready as a pull
request's island is made ready: the lifecycle's own ``before_preprod`` hooks, the provisioning of its
island (``exp-<variant>-<tag>``, as the claim named it: :func:`~squals_action.experiments.spec.island_names`),
its ``after_preprod`` hooks and exit tests (``Steps.run_stage``, the code a deploy runs), with the lifecycle
holding that variant's file. A variant that fails raises
:class:`ExperimentError` in one line naming it; the engine then stops what this start provisioned.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Literal

from squals_action.errors import SqualsError
from squals_action.experiments.interface import ExperimentError
from squals_action.experiments.promotion import Promoter
from squals_action.experiments.sources import check_declarations
from squals_action.experiments.spec import as_island, load_at
from squals_action.lifecycle.hooks import first_failure
from squals_action.lifecycle.machine import Check, Env
from squals_action.manifest.model import HOOK_STAGES, Experiment, Location, Manifest
from squals_action.manifest.paths import reference_problem, script_of
from squals_action.manifest.problems import ManifestError
from squals_action.manifest.yamlload import load_document
from squals_action.providers.interface import EnvironmentHandle, Provider

Log = Callable[[str], None]


def checked(tree: Path, squals_file: str, sha: str, *, app_here: bool) -> tuple[Manifest, Experiment]:
    """The squals file of ``tree`` (a worktree of ``sha``) and its experiment once every variant passed
    the checks that need nothing running: its file, its metric declarations, its scripts (``app.start``'s
    too when ``app_here``: the provider runs it from the commit). Else one line (``experiment start
    refused: variant green: variants/green.yml:9:14 in commit 1a2b3c4d5e6f: ...; nothing was started``):
    the files were loaded with the commit, so every location names it."""
    try:
        started = load_variants(tree, squals_file, sha)
        spec = started.experiment
        if spec is None:
            raise ExperimentError(
                f"{started.shown}: no experiment is declared (add an `experiment:` section)"
            )
        check_declarations(spec)
        check_scripts(spec, started, app_here=app_here)
    except ExperimentError as exc:
        raise ExperimentError(f"experiment start refused: {exc.one_line()}; nothing was started") from None
    return started, spec


def load_variants(tree: Path, squals_file: str, sha: str) -> Manifest:
    """``squals_file`` of ``tree`` (a worktree of ``sha``) with its variant files, validated; a problem is
    refused in one line that starts with the variant whose file holds it (``variant green:
    variants/green.yml:7:5 in commit 1a2b3c4d5e6f: ...``)."""
    try:
        return load_at(tree, squals_file, sha)
    except ManifestError as exc:
        variant = _variants_by_file(tree, squals_file).get(exc.file)
        raise ExperimentError(f"variant {variant}: {exc.one_line()}" if variant else exc.one_line()) from None


def _variants_by_file(tree: Path, squals_file: str) -> dict[str, str]:
    """Each variant's file (as problems name it: relative to ``tree``) -> the variant's name, read from the
    declaring file as written (it may itself be invalid: then as much as can be read)."""
    try:
        data = load_document(tree / squals_file, squals_file).data
    except ManifestError:
        return {}
    experiment = data.get("experiment") if isinstance(data, dict) else None
    variants = experiment.get("variants") if isinstance(experiment, dict) else None
    folder = (tree / squals_file).parent
    found: dict[str, str] = {}
    for name, item in variants.items() if isinstance(variants, dict) else ():
        ref = item.get("squals") if isinstance(item, dict) else None
        if isinstance(ref, str):
            found.setdefault(os.path.relpath(os.path.normpath(folder / ref), tree), str(name))
    return found


def check_scripts(spec: Experiment, started: Manifest, *, app_here: bool) -> None:
    """Every variant's commands start with scripts that are in the commit ``started`` was read from (its
    worktree), else one line: the variant, the command's file, line and commit, where it looked.
    ``app.start`` only when ``app_here`` (on aws the island's template says what runs, not ``app.start``)."""
    for name, variant in spec.variants.items():
        own = variant.manifest or started
        missing = _missing_script(own, app_here=app_here)
        if missing is not None:
            raise ExperimentError(f"variant {name}: {missing}")


def _commands(manifest: Manifest, *, app_here: bool) -> Iterator[tuple[str, str, str, Location]]:
    """(what, command line, folder relative to the file's, where) of everything a variant's island runs."""
    app = manifest.app
    if app_here:
        yield "app.start", app.start, app.workdir, app.location
    for stage in HOOK_STAGES:
        for hook in manifest.hooks.for_stage(stage):
            yield f"{stage} hook {hook.name}", hook.run, hook.workdir, hook.location
    for test in manifest.exit_tests:
        yield f"exit test {test.name}", test.run, test.workdir, test.location
    for test in manifest.rollout.inflight_tests:
        yield f"in-flight test {test.name}", test.run, test.workdir, test.location


def _missing_script(manifest: Manifest, *, app_here: bool) -> str | None:
    """The first command of ``manifest`` whose script is not an executable file of its tree, and why."""
    root = Path(manifest.repo_root)
    for what, run, workdir, where in _commands(manifest, app_here=app_here):
        script = script_of(run)
        if script is None:
            continue
        folder = Path(manifest.base_dir) / workdir
        full = os.path.normpath(folder / script)
        looked = os.path.relpath(full, root)
        problem = reference_problem(folder, root, script, must_exist=True)
        if problem is None and not os.access(full, os.X_OK):
            problem = f"expected an executable file, {script!r} is not executable (git add --chmod=+x)"
        if problem is not None:
            return f"{where}: {what}: {problem} (looked for {looked})"
    return None


def check_islands(
    provider: Provider, spec: Experiment, started: Manifest, *, eid: str, names: Mapping[str, str], sha: str
) -> None:
    """Every variant's island as its provisioning checks it before starting anything (``Provider.check``:
    on aws its template read from the commit and linted, with the outputs the front door needs, and its
    parameters), all of them before the first island is made: a later variant's mistake costs no earlier
    variant's island (``names``: each variant's island). Else one line naming the variant; nothing was
    started."""
    if spec.assignment == "app":
        return
    for name, variant in spec.variants.items():
        own = as_island(variant.manifest or started, name, names[name])
        try:
            provider.check(names[name], sha, own, extra_env=_island_env(eid, name, started))
        except SqualsError as exc:  # one about a file names it, its line and commit, itself
            raise ExperimentError(
                f"experiment start refused: variant {name}: {exc.one_line()}; nothing was started"
            ) from None


def _island_env(eid: str, variant: str, started: Manifest) -> dict[str, str]:
    """What a variant's app is told besides its file's environment: the experiment, its variant, project."""
    return {"SQUALS_EXPERIMENT": eid, "SQUALS_VARIANT": variant, "SQUALS_PROJECT": started.name}


def ready_islands(
    promoter: Promoter,
    provider: Provider,
    spec: Experiment,
    started: Manifest,
    *,
    eid: str,
    names: Mapping[str, str],
    sha: str,
    log: Log,
    handles: dict[str, EnvironmentHandle],
) -> None:
    """Each variant's island (``names``: as the claim recorded them) made ready in turn, into ``handles`` as
    it comes up (so a caller can stop those already running when one fails); a variant that fails raises
    :class:`ExperimentError` naming it. App-side variants have none: prod's app branches on
    ``X-Squals-Assignments``."""
    if spec.assignment == "app":
        return
    for name, variant in spec.variants.items():
        island = names[name]
        own = as_island(variant.manifest or started, name, island)
        with promoter(own) as lifecycle:
            fleet = lifecycle.fleet()  # the hooks' SQUALS_PROD_* / SQUALS_POSTPROD_* variables
            env = Env(name=island, commit=sha)
            _passed(name, own, "before_preprod", lifecycle.run_stage("before_preprod", env, fleet))
            log(f"provision {island} ({variant.squals}) from {sha[:12]}")
            try:
                handle = provider.provision(island, sha, own, extra_env=_island_env(eid, name, started))
            except SqualsError as exc:  # one about a file names it, its line and commit, itself
                raise ExperimentError(f"variant {name}: {exc.one_line()}") from exc
            handles[name] = handle
            env = dataclasses.replace(env, url=handle.url, handle=handle.to_json())
            _passed(name, own, "after_preprod", lifecycle.run_stage("after_preprod", env, fleet))
            _passed(name, own, "exit", lifecycle.run_stage("exit", env, fleet))
            log(f"{island} is ready at {handle.url}")


def _passed(
    name: str,
    own: Manifest,
    stage: Literal["before_preprod", "after_preprod", "exit"],
    result: tuple[tuple[Check, ...], str | None],
) -> None:
    """Nothing when the stage passed; else the one line: the variant, where its failing command is declared
    and what failed."""
    checks, failed = result
    if failed is None:
        return
    bad = first_failure(checks)
    commands = own.exit_tests if stage == "exit" else own.hooks.for_stage(stage)
    where = next((str(c.location) for c in commands if bad is not None and c.name == bad.name), own.shown)
    # the one line carries the command's last output too (a terminal shows it as lines elsewhere)
    said = " | ".join(bad.output.splitlines()) if bad is not None and bad.output else ""
    raise ExperimentError(f"variant {name}: {where}: {failed}" + (f"; last output: {said}" if said else ""))
