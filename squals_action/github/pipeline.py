"""The core behind the action's intents: validation, gates, the lifecycle and the state branch.

Each intent validates the squals files first (so a broken file is reported on every run, with annotations),
then hands the typed model to the concern that does the work: the gate runner, then the lifecycle engine
(provider, Dealer, hooks, exit tests; one state commit per transition on the state branch). A lock held by
another PR is reported as a ``locked`` report naming the holder. Heavy modules are imported inside methods.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import re
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from squals_action.errors import SqualsError
from squals_action.gitcmd import git_text, has_commit, token_header_env
from squals_action.github.interface import Request
from squals_action.github.runner import Settings
from squals_action.own_files import own_dir
from squals_action.report.gates import gate_steps
from squals_action.report.model import Problem, Report, Step
from squals_action.state.errors import AccessDeniedError


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
            step = Step(
                "Validation",
                "failure",
                time.monotonic() - started,
                detail="no squals file found: add squals.yml (or squals/*.yml) at the repo root",
            )
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
        detail = "\n".join(p.render() for p in result.problems)
        step = Step(
            "Validation", "success" if result.valid else "failure", time.monotonic() - started, detail=detail
        )
        manifests = [r.manifest for r in result.results if r.manifest is not None]
        return step, problems, manifests

    def _validated(self, request: Request, verb: str) -> Report | tuple[Step, tuple[Problem, ...], Any]:
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
        return step, problems, manifests[0]

    # -- the pieces -------------------------------------------------------------------------------------

    def _scratch(self) -> Path | None:
        """``$RUNNER_TEMP/squals`` under GitHub Actions, else None (each concern's own ``.squals/`` default).

        The container runs as root: anything it left in the workspace (logs, the Dealer's and the local
        provider's directories) would be root-owned leftovers that the next ``actions/checkout`` on a
        self-hosted runner cannot clean. The runner empties ``RUNNER_TEMP`` after every job.
        """
        temp = self._env.get("RUNNER_TEMP", "").strip()
        if self._env.get("GITHUB_ACTIONS") == "true" and temp:
            return Path(temp) / "squals"
        return None

    def _own_dir(self, request: Request) -> Path:
        return self._scratch() or own_dir(request.workspace)

    def _log_dir(self, request: Request) -> Path:
        return self._own_dir(request) / "logs"

    def _gates(self, request: Request, model: Any) -> tuple[tuple[Step, ...], tuple[Problem, ...]]:
        from squals_action.gates.runner import make_context, run_pipeline

        base = request.intent.base_ref
        base_ref = f"origin/{base}" if base and has_commit(request.workspace, f"origin/{base}") else None
        sha = request.head_sha
        head = sha if sha and has_commit(request.workspace, sha) else "HEAD"
        ctx = make_context(
            request.workspace,
            self._log_dir(request) / "gates",
            base=base_ref,
            head=head,
            base_dir=Path(model.base_dir),
            passthrough=model.env_passthrough,
            environ=self._env,
        )
        fetch = functools.partial(request.checks, sha) if request.checks is not None and sha else None
        return gate_steps(run_pipeline(model.gates, ctx, checks=fetch))

    def _unpassed(self, request: Request, model: Any, island: Any, parts: dict[str, Any]) -> Report | None:
        """Why the PR's island may not be promoted (None when it may): it must run the PR's head commit, and
        that commit must have passed ``gates.checks``; the commit promoted is then the one that passed."""
        from squals_action.gates.checks import wait_for_checks

        pr, head = request.intent.pr_number, request.head_sha
        commit = island.commit if island is not None else None
        if commit is None:
            return None  # no island: the lifecycle refuses with its own reason
        if head and commit != head:
            return Report(
                intent="promote",
                status="refused",
                environment="prod",
                headline=f"PR #{pr}'s head commit {head[:12]} has not passed its gates: its island runs "
                f"{commit[:12]}. Nothing was changed.",
                notes=("Promote once the preview of the head commit has deployed it.",),
                **parts,
            )
        passed = f"commit {commit} promoted: the island's, whose gates passed"
        if not model.gates.checks or request.checks is None:
            parts["notes"] = (passed + ".",)
            return None
        fetch = request.checks
        results = wait_for_checks(
            model.gates.checks,
            lambda: fetch(commit),
            timeout=model.gates.checks_timeout,
            interval=model.gates.checks_interval,
        )
        failed = [r for r in results if not r.ok]
        if not failed:
            parts["notes"] = (f"{passed}, and so did {', '.join(model.gates.checks)}.",)
            return None
        parts["gates"], more = gate_steps(results)  # the comment shows which checks stopped it
        parts["problems"] = parts.get("problems", ()) + more
        listed = ", ".join(f"{r.name} ({r.summary})" for r in failed)
        return Report(
            intent="promote",
            status="refused",
            environment="prod",
            headline=f"PR #{pr}'s commit {commit[:12]} has not passed its gates: {listed}. "
            "Nothing was changed.",
            **parts,
        )

    @contextlib.contextmanager
    def _lifecycle(self, request: Request, model: Any) -> Iterator[Any]:
        """The lifecycle engine over the state branch; the store's git process is closed afterwards."""
        from squals_action.lifecycle.engine import Lifecycle
        from squals_action.lifecycle.parts import signals_for, traffic_for
        from squals_action.providers import get_provider
        from squals_action.state import open_store

        root = request.workspace
        kind = request.provider or model.provider.kind
        attempt = self._env.get("GITHUB_RUN_ATTEMPT", "1")
        provider = get_provider(kind, root, model.provider, state_dir=self._provider_dir(kind))
        traffic = traffic_for(model, provider, self._own_dir(request) / "dealer")
        with open_store(root, branch=request.state_branch, git_env=self._git_auth()) as store:
            yield Lifecycle(
                repo=root,
                manifest=model,
                store=store,
                provider=provider,
                traffic=traffic,
                signals=signals_for(model, traffic),
                progress=_first_step(request.on_start),
                log_dir=self._log_dir(request),
                run_id=self._env.get("GITHUB_RUN_ID") or None,
                actor=request.intent.actor,
                attempt=int(attempt) if attempt.isdigit() else 1,
            )

    def _no_islands_here(
        self, request: Request, model: Any, verb: str, parts: Mapping[str, Any]
    ) -> Report | None:
        """In the Docker action the ``local`` provider is refused: its islands (and its Dealer) would be
        processes of a container that ends with the job. ``None`` when the islands can run."""
        if not self._settings.container or (request.provider or model.provider.kind) != "local":
            return None
        from squals_action.manifest.model import NOWHERE

        declared = model.provider.location
        where = f"{declared}: provider local"
        if declared == NOWHERE:
            where = f"{model.path}: provider local (the default)"
        return Report(
            intent=verb,
            status="refused",
            environment=request.intent.environment,
            headline=f"{where} cannot run islands in the Docker action: they would be processes of the "
            "job's container, which ends with the job. Use provider kind aws (CloudFormation islands behind "
            "a front door), or the squals CLI on a machine that stays up. Nothing was deployed.",
            **parts,
        )

    def _git_auth(self) -> dict[str, str] | None:
        """The ``github-token`` for the state branch's fetches and pushes, as ``actions/checkout`` sends it.

        Without it the push would use whatever credentials the checkout persisted: none with
        ``persist-credentials: false``, another identity with a custom token.
        """
        if not self._settings.token:
            return None
        return token_header_env(self._settings.server_url, self._settings.token, self._env)

    def _provider_dir(self, kind: str) -> Path | None:
        scratch = self._scratch()
        return scratch / kind if scratch is not None else None

    def _locked(self, request: Request, verb: str, exc: Any, **parts: Any) -> Report:
        holder = f"PR #{exc.lock.pr}"
        if exc.lock.pr == request.intent.pr_number:  # another run of this PR (locks are held per run)
            return Report(
                intent=verb,
                status="locked",
                headline=f"{verb} waits: {exc.one_line()}; nothing was changed",
                lock_holder=holder,
                notes=("Run it again once that run has ended.",),
                **parts,
            )
        return Report(
            intent=verb,
            status="locked",
            headline=f"{verb} waits: {exc.lock.environment} is locked by {holder}; nothing was changed",
            lock_holder=holder,
            notes=("Run it again (or add the label again) once that PR is merged or closed.",),
            **parts,
        )

    def _outcome(self, verb: str, outcome: Any, env_name: str | None, **parts: Any) -> Report:
        from squals_action.lifecycle import machine
        from squals_action.report.lifecycle import markdown as lifecycle_markdown

        fleet = outcome.fleet or {}
        env = fleet.get(env_name) if env_name else None
        if env_name == "prod":
            env = machine.prod(fleet)  # the island serving prod now: its URL and its commit
        url = (env.url if env is not None else None) or outcome.public_url
        if env_name == "prod":
            url = outcome.public_url or url
        exit_tests: list[Step] = []
        for check in outcome.checks:
            if check.kind in ("exit-test", "load-test", "hook", "inflight-test"):
                detail = "\n".join(part for part in (check.detail, check.output) if part)
                exit_tests.append(
                    Step(
                        check.name,
                        "success" if check.ok else "failure",
                        check.duration,
                        detail,
                        kind=check.kind,
                    )
                )
        kpis = ", ".join(f"{k.metric}={k.value:g}" for k in outcome.kpis if k.value is not None)
        commit = env.commit if env is not None else None
        outputs = {"commit": commit} if commit else {}
        return Report(
            intent=verb,
            status="success" if outcome.ok else "failure",
            headline=outcome.message,
            environment=env_name,
            url=url,
            exit_tests=tuple(exit_tests),
            rollout=None if verb == "preview" else outcome.message + (f" (KPIs: {kpis})" if kpis else ""),
            outputs=outputs,
            sections=(("Environments, hooks and tests", lifecycle_markdown(outcome, heading_level=4)),),
            **parts,
        )

    # -- intents -----------------------------------------------------------------------------------------

    def preview(self, request: Request) -> Report:
        from squals_action.state.interface import LockedError

        checked = self._validated(request, "preview")
        if isinstance(checked, Report):
            return checked
        validation, problems, model = checked
        intent = request.intent
        gates, gate_problems = self._gates(request, model)
        problems = problems + gate_problems
        failed = [g.name for g in gates if g.status == "failure"]
        parts: dict[str, Any] = {"validation": validation, "gates": gates, "problems": problems}
        if failed:
            return Report(
                intent="preview",
                status="failure",
                environment=intent.environment,
                headline=f"PR #{intent.pr_number}: gate {', '.join(failed)} failed; not deployed",
                **parts,
            )
        if not intent.deploy or intent.pr_number is None:
            why = f": {intent.read_only}" if intent.read_only else ""
            return Report(
                intent="preview",
                status="success",
                notes=(intent.reason,),
                headline=f"PR #{intent.pr_number}: valid, gates passed; not deployed{why}",
                **parts,
            )
        refused = self._no_islands_here(request, model, "preview", parts)
        if refused is not None:
            return refused
        try:
            with self._lifecycle(request, model) as lifecycle:
                outcome = lifecycle.deploy(intent.pr_number, request.head_sha or "HEAD")
                cost = None
                if outcome.ok and intent.environment:
                    dealer_dir = self._own_dir(request) / "dealer"
                    cost = self._island_cost(lifecycle, dealer_dir, intent.environment)
        except LockedError as exc:
            return self._locked(request, "preview", exc, environment=intent.environment, **parts)
        except AccessDeniedError as exc:
            return _denied("preview", exc, environment=intent.environment, **parts)
        report = self._outcome("preview", outcome, intent.environment, **parts)
        if cost is not None:
            section = ("Cost of the island so far", cost)
            report = dataclasses.replace(report, sections=(*report.sections, section))
        return report

    @staticmethod
    def _island_cost(lifecycle: Any, dealer_dir: Path, env: str) -> str:
        """The island's cost so far, measured with the provider it was deployed with (the provider section
        of the commit its state document records: on aws its region), not the working file's; a cost
        source that cannot answer, or a commit whose file no longer loads, is "no data" with its reason
        (the preview itself succeeded)."""
        from squals_action.costs import measure_costs
        from squals_action.report.costs import island_markdown
        from squals_action.report.markdown import escape

        try:
            with lifecycle.provider_of(env) as provider:
                reports = measure_costs(provider, dealer_dir=dealer_dir, days=30)
        except SqualsError as exc:
            return f"no data: {escape(exc.one_line())}\n"
        return island_markdown(reports, env)

    def _act(self, request: Request, verb: str) -> Report:
        from squals_action.state.interface import LockedError

        checked = self._validated(request, verb)
        if isinstance(checked, Report):
            return checked
        validation, problems, model = checked
        pr = request.intent.pr_number
        parts: dict[str, Any] = {"validation": validation, "problems": problems}
        if pr is None and verb != "rollback":
            raise SqualsError(f"{verb} needs a pull request")
        refused = self._no_islands_here(request, model, verb, parts)
        if refused is not None:
            return refused
        try:
            with self._lifecycle(request, model) as lifecycle:
                if verb == "promote":
                    refusal = self._unpassed(request, model, lifecycle.fleet().get(f"pr-{pr}"), parts)
                    if refusal is not None:
                        return refusal
                    # the checkout's squals file (the base branch's): the PR's code never runs here
                    outcome = lifecycle.promote(pr, source="HEAD")
                elif verb == "rollback":
                    outcome = lifecycle.rollback(pr)
                else:
                    outcome = lifecycle.teardown(pr)
        except LockedError as exc:
            env_name = "prod" if verb != "teardown" else request.intent.environment
            return self._locked(request, verb, exc, environment=env_name, **parts)
        except AccessDeniedError as exc:
            env_name = "prod" if verb != "teardown" else request.intent.environment
            return _denied(verb, exc, environment=env_name, **parts)
        env_name = "prod" if verb != "teardown" else request.intent.environment
        report = self._outcome(verb, outcome, env_name, **parts)
        if verb == "teardown":
            headline = f"PR #{pr} closed: {outcome.message}"
            return Report(
                intent=verb,
                status=report.status,
                headline=headline,
                environment=report.environment,
                validation=validation,
                problems=problems,
            )
        return report

    def promote(self, request: Request) -> Report:
        return self._act(request, "promote")

    def rollback(self, request: Request) -> Report:
        return self._act(request, "rollback")

    def teardown(self, request: Request) -> Report:
        return self._act(request, "teardown")

    def _experiments(self, request: Request, verb: str) -> Report:
        """Start (a push to the default branch) or advance (schedule, dispatch) the declared experiment."""
        checked = self._validated(request, verb)
        if isinstance(checked, Report):
            return checked
        validation, problems, model = checked
        if model.experiment is None:
            return Report(
                intent=verb,
                status="skipped",
                validation=validation,
                problems=problems,
                headline="no experiment is declared in the squals file",
            )
        from squals_action.experiments.engine import from_lifecycle

        parts: dict[str, Any] = {"validation": validation, "problems": problems}
        refused = self._no_islands_here(request, model, verb, parts)
        if refused is not None:
            return refused
        try:
            with self._lifecycle(request, model) as lifecycle:
                engine = from_lifecycle(lifecycle)
                scratch = self._scratch()
                if scratch is not None:
                    engine.state_dir = scratch / "experiments"
                if verb == "experiment-start":
                    return self._experiment_started(request, engine, parts)
                return self._experiment_ticked(engine, self._own_dir(request) / "dealer", parts)
        except AccessDeniedError as exc:
            return _denied(verb, exc, **parts)
        except SqualsError as exc:
            return Report(
                intent=verb,
                status="failure",
                headline=f"{verb}: {exc.one_line()}",
                experiment=exc.one_line(),
                **parts,
            )

    def _experiment_started(self, request: Request, engine: Any, parts: dict[str, Any]) -> Report:
        sha = request.head_sha or request.intent.sha or "HEAD"
        pr = _merged_pr(request.workspace, sha)
        outcome = engine.start(sha, pr=pr)
        doc = outcome.experiment
        split = ", ".join(f"{k} {v:g} %" for k, v in doc.split.items())
        return Report(
            intent="experiment-start",
            status="success",
            headline=outcome.message,
            url=outcome.url,
            experiment=f"{doc.id}: {doc.status} ({split})",
            outputs={"experiment": doc.id},
            **parts,
        )

    def _experiment_ticked(self, engine: Any, dealer_dir: Path, parts: dict[str, Any]) -> Report:
        from squals_action.experiments.costs import running_costs
        from squals_action.experiments.records import placement
        from squals_action.report.costs import variant_cells
        from squals_action.report.experiments import experiment_markdown
        from squals_action.report.lifecycle import markdown as lifecycle_markdown

        before = engine.store.read().experiments()
        # measured before a decision tears the losers down
        costs = variant_cells(running_costs(engine, before.values(), dealer_dir), before)
        outcomes = engine.tick()
        if not outcomes:
            return Report(
                intent="experiment-tick", status="skipped", headline="no running experiment", **parts
            )
        sections: list[tuple[str, str]] = []
        environment = url = None
        outputs: dict[str, str] = {}
        documents = engine.store.read().experiments()  # as the ticks left them: figures, split, ticks
        for o in outcomes:
            doc = documents.get(o.experiment)
            if o.decision is not None and doc is not None:
                where = placement(doc, documents)
                table = experiment_markdown(doc, costs.get(o.experiment), placement=where)
                sections.append((f"Experiment {o.experiment}", table))
            if o.lifecycle is not None:
                promotion = lifecycle_markdown(o.lifecycle, heading_level=4)
                sections.append((f"Promotion of the winner of {o.experiment}", promotion))
            if o.promoted is not None and o.lifecycle is not None:
                environment, url = "prod", o.lifecycle.public_url
                outputs["winner"] = o.promoted
        return Report(
            intent="experiment-tick",
            status="success" if all(o.ok for o in outcomes) else "failure",
            headline="; ".join(f"{o.experiment}: {o.message}" for o in outcomes),
            environment=environment,
            url=url,
            experiment="; ".join(f"{o.experiment}: {o.status}" for o in outcomes),
            outputs=outputs,
            sections=tuple(sections),
            **parts,
        )

    def experiment_start(self, request: Request) -> Report:
        return self._experiments(request, "experiment-start")

    def experiment_tick(self, request: Request) -> Report:
        return self._experiments(request, "experiment-tick")


_MERGE_SUBJECTS = (
    re.compile(r"^Merge pull request #(\d+) "),  # a merge commit
    re.compile(r"\(#(\d+)\)$"),  # a squash or rebase merge: "Title (#12)"
)


def _merged_pr(repo: Path, sha: str) -> int | None:
    """The pull request a push to the default branch merged, from the commit subject GitHub writes."""
    try:
        subject = git_text(repo, "log", "-1", "--format=%s", "--end-of-options", sha, "--", timeout=30)
    except SqualsError:
        return None
    for pattern in _MERGE_SUBJECTS:
        found = pattern.search(subject)
        if found:
            return int(found.group(1))
    return None


def _first_step(start: Callable[[], None] | None) -> Any:
    """The lifecycle's progress view, calling ``start`` at its first step (once, and only if it comes).

    A promotion's first step comes after its refusals (no island, not healthy, prod locked by another PR), so
    what ``start`` opens (the ``prod`` deployment) exists only for a promotion that really began.
    """
    from squals_action.lifecycle.steps import Progress

    class FirstStep(Progress):
        def step(self, text: str) -> None:
            nonlocal start
            if start is not None:
                begin, start = start, None
                begin()

    return FirstStep()


def _denied(verb: str, exc: AccessDeniedError, **parts: Any) -> Report:
    """A push of the state branch refused with 403: the token is read-only, so the run stops at what it
    could do (validation, gates, the job summary) and says why; a 401 (a wrong token) stays a failure."""
    if exc.status != 403:
        raise exc
    return Report(
        intent=verb,
        status="neutral",
        headline=f"{verb} not carried out: this run's token may not push the state branch, so it is "
        f"read-only (a fork's or Dependabot's run, or no `contents: write`): {exc.one_line()}",
        **parts,
    )
