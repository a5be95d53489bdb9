"""The experiment's side effects: start (islands + splitter), tick (measure, decide, act), stop.

* **start** checks every variant at the experiment's commit (its files validated, its scripts there), claims
  ``experiments/<id>.json`` on the state branch (status ``starting``; a second experiment of the project
  while one is active is refused unless both are layered: then the claim gives it its slot), makes each
  variant's island ``exp-<variant>`` ready from the variant's own squals file at that commit as a pull
  request's island is (hooks, provisioning, exit tests: see :mod:`~squals_action.experiments.ready`), then
  splits the traffic among them (``split`` as weights, sticky per ``unit``: the experiment's own Dealer, its
  slot on prod's Dealer (:mod:`~squals_action.experiments.layered`), or on AWS the front door's listener, see
  :mod:`~squals_action.experiments.splitters`) and records ``running``: three commits, the second written
  ahead of any traffic move (``experiment-routing``: the islands; on AWS the listener's routing to give back).
  A variant that is not ready stops the start: its islands are destroyed, the start recorded ``failed``.
  The side effects after the checks are :func:`~squals_action.experiments.starting.run_start`'s.
* **tick** reads the squals file as it was at the start commit (the spec judged is the spec started), reads
  the metric sources (the Dealer's tallies, or CloudWatch on AWS; Prometheus for declared metrics), runs the
  pure :func:`~squals_action.experiments.decide.decide`, gives excluded variants no more traffic, and records
  the observations and the decision in one commit. The commit is a compare-and-swap on the document's status,
  so two ticks racing cannot both act on one decision. On AWS a tick needs the state branch and AWS only.
* a **winner** is promoted to prod through the lifecycle engine itself: ``Lifecycle.deploy`` adopting the
  winner's own island as ``pr-N`` (its hooks and exit tests run against it; nothing is provisioned again),
  then ``Lifecycle.promote`` (the blue/green bake, the traffic switch and the postprod bookkeeping are the
  lifecycle's). Then the other islands and the experiment's splitter are stopped and the document says
  ``decided``. A failed promotion is recorded as ``promotion-failed`` (islands kept) and the next tick tries
  the promotion again.
* every step after the start (tick, promotion, end, **stop**) reads the start commit from the document and,
  on aws, binds the provider (and the winner's lifecycle) to that commit's provider section, as the start
  did: never to the file the command was opened with.
* ``no-difference``, ``guardrail-stop`` and ``halted-srm`` end the experiment with prod unchanged (on AWS the
  listener gets its routing from before the start back); **stop** ends it by hand, from the document
  alone (a start killed at any point included), and records ``stopped`` only once the splitter was given
  back and every island destroyed (:func:`~squals_action.experiments.islands.stop_recorded`: else it says
  what was kept and the next stop tries again); a stop of an experiment that ended already changes nothing
  and says so.

The lifecycle promotes environments named ``pr-N`` only, so the winner is deployed as ``pr-N`` with the
experiment's pull request (``--pr``, or the merged PR the action found); without one, experiments number
their winners ``pr-1000001``, ``pr-1000002``... (:data:`.records.SYNTHETIC_PR_BASE`).
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from squals_action import gitcmd
from squals_action.experiments import records
from squals_action.experiments.decide import decide
from squals_action.experiments.interface import BadDataError, Decision, ExperimentError
from squals_action.experiments.islands import exclude_newly, stop_all, stop_recorded
from squals_action.experiments.layered import layered_split_of
from squals_action.experiments.layering import refuse_on_aws
from squals_action.experiments.observe import observe
from squals_action.experiments.outcomes import StartOutcome, TickOutcome, no_data
from squals_action.experiments.promotion import Promoter, lifecycle_promoter, promote
from squals_action.experiments.ready import checked
from squals_action.experiments.records import (
    ACTIVE,
    SYNTHETIC_PR_BASE,
    TICKABLE,
    extra_str,
    handles_of,
    island_names_of,
    pr_of,
)
from squals_action.experiments.sources import SourceContext, build_sources
from squals_action.experiments.spec import spec_digest, start_at
from squals_action.experiments.splitters import Split
from squals_action.experiments.starting import run_start
from squals_action.lifecycle.parts import provider_at, provider_with
from squals_action.lifecycle.project import dealer_dir as prod_dealer_dir
from squals_action.lifecycle.source import Source, worktree
from squals_action.lifecycle.traffic import DealerTraffic
from squals_action.manifest.model import Experiment, Manifest, StickyUnit
from squals_action.own_files import own_dir
from squals_action.providers.interface import Provider
from squals_action.state.interface import (
    Documents,
    ExperimentState,
    StateStore,
    Transition,
    check_name,
    utc_now,
)

if TYPE_CHECKING:
    from squals_action.lifecycle.engine import Lifecycle


@dataclass
class ExperimentEngine:
    """One project's experiments: its declaring squals file, state store, provider and promotion path."""

    repo: Path
    manifest: Manifest
    store: StateStore
    provider: Provider
    promoter: Promoter
    state_dir: Path | None = None
    run_id: str | None = None
    actor: str | None = None
    attempt: int = 1
    clock: Callable[[], datetime] = utc_now
    log: Callable[[str], None] = field(default=lambda text: None)
    prometheus_url: str | None = None
    #: The project's Dealer (prod's), where layered experiments are placed; default ``<repo>/.squals/dealer``.
    project_dealer: Path | None = None

    def __post_init__(self) -> None:
        #: who claims a start: this run (or this terminal) and a nonce, so a racing twin is told apart
        self.token = f"run {self.run_id or 'local'}/{self.attempt} ({secrets.token_hex(4)})"

    # ---- places -----------------------------------------------------------------------------------

    def _root(self) -> Path:
        return self.state_dir or own_dir(self.repo) / "experiments"

    def dealer_dir(self, experiment_id: str) -> Path:
        return self._root() / check_name("experiment", experiment_id) / "dealer"

    def prod_dealer(self) -> Path:
        """Where layered experiments are placed: prod's Dealer, the one the lifecycle switches."""
        return (self.project_dealer or prod_dealer_dir(self.repo)).resolve()

    def split_of(self, doc: ExperimentState, unit: StickyUnit | None = None) -> Split:
        """The splitter the document recorded (the local Dealer in this engine's place when none was)."""
        return layered_split_of(doc, unit or StickyUnit(), self.dealer_dir(doc.id))

    def _in_repo(self, path: str) -> str:
        """A squals file's path relative to the repository (as a commit holds it)."""
        if not Path(path).is_absolute():
            return path
        return os.path.relpath(Path(path).resolve(), self.repo.resolve())

    def _squals_file(self) -> str:
        """The declaring file's path in the repository: its folder (``base_dir``, absolute when loaded) and
        name, since ``path`` is the name problems show (relative to the working directory)."""
        folder, path = self.manifest.base_dir, Path(self.manifest.path)
        return self._in_repo(str(Path(folder, path.name) if os.path.isabs(folder) else path))

    def transition(
        self, event: str, summary: str, experiment_id: str, step: str, pr: int | None = None
    ) -> Transition:
        """The state commit's metadata for one step of an experiment (its replay key: run, attempt, step)."""
        key = f"{self.run_id}/{self.attempt}/{experiment_id}/{step}" if self.run_id else None
        return Transition(
            event,
            summary,
            environment=None,
            pr=pr,
            run_id=self.run_id,
            actor=self.actor,
            attempt=self.attempt,
            key=key,
        )

    # ---- start ------------------------------------------------------------------------------------

    def start(
        self, commit: str = "HEAD", *, pr: int | None = None, experiment_id: str | None = None
    ) -> StartOutcome:
        """Check every variant at ``commit``, make each variant's island ready, then split the traffic among
        them and record the running experiment (the order: :mod:`~squals_action.experiments.ready`).

        The islands and the front door are those of the squals file at ``commit`` (on aws the provider is
        bound to its provider section, as a deploy's is to its commit's), not of the file this engine was
        opened with."""
        sha = gitcmd.resolve_commit(self.repo, commit, error=ExperimentError)
        squals_file = self._squals_file()
        with worktree(self.repo, sha) as tree:
            started, spec = checked(tree, squals_file, sha, app_here=self.provider.kind == "local")
            refuse_on_aws(spec, self.provider.kind)
            provider = provider_with(started.provider, self.provider)
            return run_start(self, provider, started, spec, sha, squals_file, pr, experiment_id)

    # ---- tick -------------------------------------------------------------------------------------

    def tick(self, experiment_id: str | None = None) -> list[TickOutcome]:
        """Advance every running experiment (or the one named): one commit each, more when it ends."""
        docs = self.store.read().experiments()
        if experiment_id is not None:
            doc = docs.get(experiment_id)
            if doc is None:
                raise ExperimentError(f"no experiment {experiment_id!r} on the state branch")
            targets = [doc]
        else:
            targets = [d for d in docs.values() if d.status in (*TICKABLE, "promoting")]
        return [self._tick_one(doc) for doc in targets]

    def _tick_one(self, doc: ExperimentState) -> TickOutcome:
        if doc.status == "promoting":  # a tick that decided is promoting the winner, or died doing it
            busy = self._promoted_by(doc)
            if busy is not None:
                return TickOutcome(
                    experiment=doc.id,
                    status=doc.status,
                    ok=True,
                    message=f"experiment {doc.id} is being promoted by another run ({busy})",
                )
        elif doc.status not in TICKABLE:
            return TickOutcome(
                experiment=doc.id,
                status=doc.status,
                ok=True,
                message=f"experiment {doc.id} is {doc.status}: nothing to advance",
            )
        at_start = self._start_of(doc)
        if at_start is None:
            return self._refused(doc, "its document names no start commit or squals file")
        with at_start as start:
            return self._advance(doc, start)

    def _start_of(self, doc: ExperimentState) -> AbstractContextManager[Source] | None:
        """The squals file of the experiment's start commit, from its document alone (a fresh process on
        a fresh clone finds it), for the time of one step; ``None`` when the document names none."""
        commit, squals_file = extra_str(doc, "commit"), extra_str(doc, "squals_file")
        if commit is None or squals_file is None:
            return None
        return start_at(self.repo, commit, self._in_repo(squals_file))

    @contextlib.contextmanager
    def provider_of(self, doc: ExperimentState) -> Iterator[Provider]:
        """The provider ``doc``'s islands were made with, for the time of one step: bound to its start
        commit's provider section, as the start did (a document naming none, which no start writes, gets
        this engine's: there is nothing else to go by). A start file that no longer validates is a
        ``ManifestError``."""
        with self._start_of(doc) or contextlib.nullcontext() as start:
            yield provider_at(start, self.provider) if start is not None else self.provider

    def _promoted_by(self, doc: ExperimentState) -> str | None:
        """Who holds a lock the winner's promotion takes (``None``: no live run does, so the tick that
        decided died and this one promotes again; a stale lock then stops it, naming `squals unlock`)."""
        snapshot = self.store.read()
        for env in (f"pr-{pr_of(doc) or SYNTHETIC_PR_BASE}", "prod"):
            lock = snapshot.lock(env)
            if lock is not None and (lock.holder is None or lock.holder.liveness() != "dead"):
                return f"{env} is locked by {lock.who()}"
        return None

    def _refused(self, doc: ExperimentState, why: str) -> TickOutcome:
        return TickOutcome(
            experiment=doc.id, status=doc.status, ok=False, message=f"experiment {doc.id}: {why}"
        )

    def _advance(self, doc: ExperimentState, start: Source) -> TickOutcome:
        """One tick judged with the squals file as it was at the experiment's start commit (``start``),
        whose provider section its islands are stopped and its winner promoted with, as they were made."""
        eid = doc.id
        started = start.manifest
        spec = started.experiment
        if spec is None or spec_digest(spec) != doc.spec_digest:
            return self._refused(
                doc,
                f"{started.shown} does not hold the experiment it started with "
                f"({doc.spec_digest[:19]}); stop it (`squals experiment stop {eid}`) and start a new one",
            )
        split = self.split_of(doc, spec.unit)
        if doc.status in ("promotion-failed", "promoting"):
            winner = str((doc.decision or {}).get("winner") or "")
            if winner not in spec.variants:
                return self._refused(doc, "no winner recorded to promote")
            return self._promote(doc, spec, start, winner, None, split)
        if doc.status == "ending":  # the run that decided died before stopping everything: finish its job
            return self._end(doc, None, split, start)
        why = split.unavailable()
        if why is not None:
            return self._refused(doc, f"{why}; nothing was measured")
        try:
            judged = self._measure(doc, spec, split)
        except BadDataError as exc:  # decides nothing, records nothing: the document stays as it was
            return TickOutcome(experiment=eid, status=doc.status, ok=False, message=exc.one_line())
        recorded = self._record_tick(doc, judged)
        if recorded is None:
            return TickOutcome(
                experiment=eid,
                status=doc.status,
                ok=True,
                message=f"experiment {eid} was advanced by another run meanwhile",
            )
        decision = judged.decision
        self.log(f"{eid}: {decision.summary()}")
        if decision.status == "continue":
            return TickOutcome(
                experiment=eid,
                status="running",
                ok=True,
                message=decision.summary() + no_data(spec, judged.observations),
                decision=decision,
            )
        if decision.status == "winner":
            assert decision.winner is not None
            return self._promote(recorded, spec, start, decision.winner, decision, split)
        return self._end(recorded, decision, split, start)

    def _measure(self, doc: ExperimentState, spec: Experiment, split: Split) -> records.Judgement:
        """Read every metric source, decide, and take traffic off newly excluded variants (users first)."""
        now = self.clock()
        with split.measuring() as (tallies, aws):
            context = SourceContext(
                spec=spec, tallies=tallies, env=os.environ, prometheus_url=self.prometheus_url, aws=aws
            )
            with build_sources(context) as sources:
                observations = observe(spec, sources, list(doc.variants), now)
        excluded_before = [str(v) for v in doc.extra.get("excluded", [])]
        decision = decide(observations, spec, doc.started_at or now, now, excluded_before)
        exclude_newly(split, doc, decision, self.log)
        return records.Judgement(observations=observations, decision=decision, at=now)

    def _record_tick(self, doc: ExperimentState, judged: records.Judgement) -> ExperimentState | None:
        """One commit with the tick; ``None`` when another run advanced the experiment meanwhile."""
        recorded: list[ExperimentState] = []

        def fn(docs: Documents) -> Documents | None:
            new = records.record_tick(docs, doc, judged)
            recorded[:] = [new] if new is not None else []
            return docs if new is not None else None

        step = f"tick-{len(doc.extra.get('ticks', []))}"
        summary = f"experiment {doc.id}: {judged.decision.summary()}"
        self.store.transact(fn, self.transition("experiment-tick", summary, doc.id, step, pr_of(doc)))
        return recorded[0] if recorded else None

    # ---- promotion and the end --------------------------------------------------------------------

    def _end(
        self, doc: ExperimentState, decision: Decision | None, split: Split, start: Source
    ) -> TickOutcome:
        """No winner (no difference, or every variant breached a guardrail): stop it all (with the provider
        of the start commit's squals file), prod unchanged; recorded as ended only once nothing was kept."""
        recorded = dict(doc.decision or {}) if decision is None else decision.to_json()
        status = str(recorded.get("status", "no-difference"))
        outcome = status if status in ("guardrail-stop", "halted-srm", "winner") else "no-difference"
        provider = provider_at(start, self.provider)
        kept = stop_all(provider, handles_of(doc), split, self.log, held=self._held(doc))
        summary = decision.summary() if decision is not None else outcome
        if kept:  # not recorded as ended: the document stays `ending`, and the next tick (or a stop) retries
            message = (
                f"{summary}; not ended: {', '.join(kept)} could not be stopped; the next tick "
                f"(or `squals experiment stop {doc.id}`) tries again"
            )
            return TickOutcome(
                experiment=doc.id, status=doc.status, ok=False, message=message, decision=decision
            )
        message = f"{summary}; islands stopped, prod unchanged"
        if outcome == "winner":  # app-side: the variant is a branch of prod's code, nothing to deploy
            winner = recorded.get("winner")
            message = f"{summary}; app-side, nothing to promote: make {winner} the app's default"
        self.finish(
            doc.id, "decided", {**recorded, "outcome": outcome}, f"experiment-{outcome}", message, step="end"
        )
        return TickOutcome(experiment=doc.id, status="decided", ok=True, message=message, decision=decision)

    def _promote(
        self,
        doc: ExperimentState,
        spec: Experiment,
        start: Source,
        winner: str,
        decision: Decision | None,
        split: Split,
    ) -> TickOutcome:
        """The winner's own island through the lifecycle's deploy (adopted as ``pr-N``) and promote, on the
        provider and front door of the start commit's squals file (``start``)."""
        if spec.assignment == "app":  # no island to promote: the experiment ends with its winner named
            return self._end(doc, decision, split, start)
        eid = doc.id
        pr = pr_of(doc) or SYNTHETIC_PR_BASE
        islands = handles_of(doc)
        own = next((h for h in islands if h.env == island_names_of(doc).get(winner)), None)
        self.log(f"{eid}: promote {winner}'s island as pr-{pr} through the lifecycle")
        manifest = spec.variants[winner].manifest or start.manifest
        done = promote(self.promoter, manifest, pr, start, own)
        base = dict(doc.decision or {})
        base.update({"status": "winner", "winner": winner, "environment": f"pr-{pr}"})
        expect = ("promoting", "promotion-failed")
        if done.failure is not None:
            message = f"{winner} won but its promotion failed: {done.failure}; the next tick tries again"
            base.update({"outcome": "promotion-failed", "promotion": done.failure})
            self.finish(
                eid,
                "promotion-failed",
                base,
                "experiment-promotion-failed",
                message,
                step="promote-failed",
                expect=expect,
            )
            return TickOutcome(
                experiment=eid,
                status="promotion-failed",
                ok=False,
                message=message,
                decision=decision,
                lifecycle=done.outcome,
            )
        losers = [h for h in islands if h is not own]
        held = self._held(doc)
        stop_all(provider_at(start, self.provider), losers, split, self.log, held=held, restore=False)
        where = f" on its own island {own.env}" if own is not None else ""
        message = f"{winner} won and is prod (pr-{pr}){where}; the other variants were stopped"
        base.update({"outcome": "promoted", "promotion": done.outcome.message if done.outcome else ""})
        self.finish(eid, "decided", base, "experiment-promoted", message, step="promoted", expect=expect)
        return TickOutcome(
            experiment=eid,
            status="decided",
            ok=True,
            message=message,
            decision=decision,
            promoted=winner,
            lifecycle=done.outcome,
        )

    def _held(self, doc: ExperimentState) -> dict[str, str]:
        """The islands live records other than ``doc`` hold, as the state branch says now: none of them is
        destroyed by ``doc``'s end (the winner's island, prod now, is among them)."""
        return records.holders(self.store.read(), but=doc.id)

    def stop(self, experiment_id: str, reason: str = "") -> ExperimentState:
        """End an experiment by hand: islands and Dealer stopped, nothing promoted, recorded with who. The
        islands are looked for and stopped where they were made (:meth:`provider_of`)."""
        doc = self.store.read().experiment(experiment_id)
        if doc is None:
            raise ExperimentError(f"no experiment {experiment_id!r} on the state branch")
        if doc.status not in ACTIVE:
            self.log(f"experiment {experiment_id} is {doc.status} already: nothing to do")
            return doc
        with self.provider_of(doc) as provider:
            stop_recorded(provider, doc, self.split_of(doc), self.log, held=self._held(doc))
        why = reason or f"stopped by {self.actor or 'hand'}"
        self.finish(
            experiment_id,
            "stopped",
            {**dict(doc.decision or {}), "outcome": "stopped", "reason": why},
            "experiment-stop",
            f"experiment {experiment_id} stopped: {why}",
            step="stop",
            expect=tuple(ACTIVE),
        )
        after = self.store.read().experiment(experiment_id)
        assert after is not None
        return after

    def finish(
        self,
        eid: str,
        status: str,
        decision: Mapping[str, Any],
        event: str,
        summary: str,
        *,
        step: str,
        expect: Sequence[str] = ("starting", "ending", "promoting"),
    ) -> None:
        """Record the end (or a failure) ``status`` in one commit, only from a status in ``expect``."""
        now = self.clock()
        doc = self.store.read().experiment(eid)
        self.store.transact(
            lambda docs: records.finish(docs, eid, status, decision, now, expect),
            self.transition(event, summary, eid, step, pr_of(doc) if doc else None),
        )

    # ---- reading ----------------------------------------------------------------------------------

    def experiments(self) -> dict[str, ExperimentState]:
        return self.store.read().experiments()


def from_lifecycle(lifecycle: Lifecycle, *, log: Callable[[str], None] | None = None) -> ExperimentEngine:
    """The experiments of the project a lifecycle drives: same repository, store, provider and identity.

    The winner is promoted by a copy of that lifecycle holding the winner's squals file, so the promotion
    is the lifecycle's own ``deploy`` + ``promote`` (its locks, hooks, exit tests, bake and traffic switch).
    """
    return ExperimentEngine(
        repo=lifecycle.repo,
        manifest=lifecycle.manifest,
        store=lifecycle.store,
        provider=lifecycle.provider,
        promoter=lifecycle_promoter(lifecycle),
        project_dealer=lifecycle.traffic.state_dir if isinstance(lifecycle.traffic, DealerTraffic) else None,
        run_id=lifecycle.run_id,
        actor=lifecycle.actor,
        attempt=lifecycle.attempt,
        log=log or (lambda text: None),
    )
