"""The core behind the action's intents: validation, gates, the lifecycle and the state branch.

Each intent validates the squals files first (so a broken file is reported on every run, with annotations),
then hands the typed model to the concern that does the work. Heavy modules are imported inside the methods.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from squals_action.github.interface import Request
from squals_action.github.runner import Settings
from squals_action.report.model import Problem, Report, Step


class Pipeline:
    """The real :class:`~squals_action.github.interface.Core`."""

    def __init__(self, settings: Settings, environ: Mapping[str, str]) -> None:
        self._settings = settings
        self._env = dict(environ)

    # -- validation --------------------------------------------------------------------------------------

    def validate(self, request: Request) -> tuple[Step, tuple[Problem, ...], list[Any]]:
        """Validate the squals files; the step for the table, annotations, and the valid manifests."""
        from squals_action import manifest

        root = request.workspace
        started = time.monotonic()
        paths: list[Path] = [root / p for p in request.squals_files] or manifest.discover(root)
        if not paths:
            step = Step("Validation", "failure", time.monotonic() - started,
                        detail="no squals file found: add squals.yml (or squals/*.yml) at the repo root")
            return step, (Problem(step.detail, title="squals"),), []
        result = manifest.validate_paths(paths, repo_root=root, relative_to=root)
        problems = tuple(
            Problem(
                message=f"{p.where}: {p.message}",
                file=p.file,
                line=p.line,
                col=p.col,
                level="failure" if p.severity == "error" else "warning",
                title="squals validate",
            )
            for p in result.problems
        )
        ok = result.valid
        detail = "\n".join(p.render() for p in result.problems)
        step = Step("Validation", "success" if ok else "failure", time.monotonic() - started, detail=detail)
        manifests = [r.manifest for r in result.results if r.manifest is not None]
        return step, problems, manifests

    def _validated(self, request: Request, verb: str) -> Report | tuple[Step, tuple[Problem, ...], list[Any]]:
        step, problems, manifests = self.validate(request)
        if step.status != "success" or not manifests:
            count = len([p for p in problems if p.level == "failure"])
            return Report(
                intent=verb,
                status="failure",
                headline=f"{verb}: the squals file is not valid ({count} problem{'s' * (count != 1)})",
                environment=request.intent.environment,
                validation=step,
                problems=problems,
            )
        return step, problems, manifests

    # -- intents -----------------------------------------------------------------------------------------

    def preview(self, request: Request) -> Report:
        checked = self._validated(request, "preview")
        if isinstance(checked, Report):
            return checked
        step, problems, _ = checked
        return Report(
            intent="preview",
            status="success",
            headline=f"PR #{request.intent.pr_number}: the squals file is valid",
            environment=request.intent.environment if request.intent.deploy else None,
            validation=step,
            problems=problems,
            notes=(request.intent.reason,) if not request.intent.deploy else (),
        )

    def _not_yet(self, request: Request, verb: str) -> Report:
        checked = self._validated(request, verb)
        if isinstance(checked, Report):
            return checked
        step, problems, _ = checked
        return Report(intent=verb, status="neutral", validation=step, problems=problems,
                      headline=f"{verb}: validated; this step is not carried out by this version yet")

    def promote(self, request: Request) -> Report:
        return self._not_yet(request, "promote")

    def rollback(self, request: Request) -> Report:
        return self._not_yet(request, "rollback")

    def teardown(self, request: Request) -> Report:
        return Report(intent="teardown", status="success", environment=request.intent.environment,
                      headline=f"PR #{request.intent.pr_number} closed: nothing was running")

    def experiment_start(self, request: Request) -> Report:
        return self._not_yet(request, "experiment-start")

    def experiment_tick(self, request: Request) -> Report:
        return self._not_yet(request, "experiment-tick")
