"""The experiment's side effects: start (islands + Dealer), tick (measure, decide, act), stop.

* **start** claims ``experiments/<id>.json`` on the state branch (status ``starting``; a second experiment of
  the project while one is active is refused), provisions one island ``exp-<variant>`` per variant from the
  variant's own squals file at the experiment's commit, starts the experiment's Dealer (``split`` as weights,
  sticky per ``unit``, seeded with the experiment id) and records ``running``: two commits.
* **tick** reads the Dealer's tallies (and Prometheus for declared metrics), runs the pure
  :func:`~squals_action.experiments.decide.decide`, gives excluded variants no more traffic, and records the
  observations and the decision in one commit. The commit is a compare-and-swap on the document's status, so
  two ticks racing cannot both act on one decision.
* a **winner** is promoted to prod through the lifecycle engine itself: ``Lifecycle.deploy`` then
  ``Lifecycle.promote`` of the winner's squals file at the experiment's commit (gates already ran on the PR;
  hooks, exit tests, the blue/green bake and the postprod bookkeeping are the lifecycle's). Then every island
  and the experiment's Dealer are stopped and the document says ``decided``. A failed promotion is recorded
  as ``promotion-failed`` (islands kept) and the next tick tries the promotion again.
* ``no-difference`` and ``guardrail-stop`` end the experiment with prod unchanged; **stop** ends it by hand.

The lifecycle promotes environments named ``pr-N`` only, so the winner is deployed as ``pr-N`` with the
experiment's pull request (``--pr``, or the merged PR the action found); without one, experiments number
their winners ``pr-1000001``, ``pr-1000002``... (:data:`SYNTHETIC_PR_BASE`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from squals_action.errors import SqualsError
from squals_action.experiments.interface import (
    Decision,
    ExperimentError,
    MetricError,
    MetricSource,
    Observation,
)
from squals_action.manifest.model import Experiment, Manifest
from squals_action.providers.interface import EnvironmentHandle, Provider, check_env_name
from squals_action.state.interface import (
    Documents,
    ExperimentState,
    StateStore,
    Transition,
    check_name,
    utc_now,
)

if TYPE_CHECKING:
    from squals_action.lifecycle.engine import Lifecycle, Outcome

#: Statuses of an experiment that still owns islands and a Dealer.
ACTIVE = frozenset({"starting", "running", "promoting", "promotion-failed", "ending"})
#: Statuses a tick acts on (``ending``: a decision to end was recorded, the cleanup may not have finished).
TICKABLE = frozenset({"running", "promotion-failed", "ending"})
#: Winners of experiments without a pull request are deployed as pr-(this + n).
SYNTHETIC_PR_BASE = 1_000_000
#: A ``starting`` claim older than this (seconds) is taken over: its process is presumed dead.
STARTING_TTL = 900.0
#: How many past ticks the document keeps in ``extra.ticks``.
MAX_TICKS_KEPT = 100

Promoter = Callable[[Manifest], AbstractContextManager["Lifecycle"]]


# ------------------------------------------------------------------------------------------- the spec


def spec_json(spec: Experiment) -> dict[str, Any]:
    """The experiment section as plain JSON (what the digest covers, kept in the document for the record)."""
    return {
        "variants": {name: v.squals for name, v in sorted(spec.variants.items())},
        "control": spec.control,
        "split": {k: float(v) for k, v in sorted(spec.split.items())},
        "unit": {"kind": spec.unit.kind, "name": spec.unit.name},
        "objective": {
            "metric": spec.objective.metric,
            "direction": spec.objective.direction,
            "numerator": spec.objective.numerator,
            "denominator": spec.objective.denominator,
        },
        "guardrails": [
            {"metric": g.metric, "max_increase": g.max_increase, "max": g.max} for g in spec.guardrails
        ],
        "min_duration": {"seconds": spec.min_duration.seconds, "activations": spec.min_duration.activations},
        "significance": {"alpha": spec.significance.alpha, "method": spec.significance.method},
        "metrics": {
            name: {"source": m.source, "query": m.query, "url": m.url}
            for name, m in sorted(spec.metrics.items())
        },
    }


def spec_digest(spec: Experiment) -> str:
    """sha256 of the canonical spec: a tick refuses to judge with a spec other than the one started."""
    text = json.dumps(spec_json(spec), sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def island_name(variant: str) -> str:
    """The environment name of a variant's island."""
    return check_env_name(f"exp-{variant}")


def default_experiment_id(manifest: Manifest, commit: str) -> str:
    """One experiment per project and commit unless named otherwise (a re-run finds the same one)."""
    return check_name("experiment", f"{manifest.name}-{commit[:12]}")


# ----------------------------------------------------------------------------------------- observing


def observe(
    spec: Experiment, sources: Sequence[MetricSource], variants: Sequence[str], now: datetime
) -> dict[str, Observation]:
    """One :class:`Observation` per variant from the sources (first source that knows a metric wins)."""
    objective = spec.objective
    wanted = [objective.numerator, objective.denominator, "activations", "errors"]
    wanted += [g.metric for g in spec.guardrails if g.metric not in wanted]
    values: dict[str, dict[str, float]] = {v: {} for v in variants}
    missing: dict[str, dict[str, str]] = {v: {} for v in variants}
    for metric in wanted:
        source = next((s for s in sources if s.knows(metric)), None)
        if source is None:
            for v in variants:
                missing[v][metric] = "no metric source measures it"
            continue
        try:
            reading = source.read([metric], variants)
        except MetricError as exc:
            for v in variants:
                missing[v][metric] = exc.one_line()
            continue
        for v in variants:
            if metric in reading.values.get(v, {}):
                values[v][metric] = reading.values[v][metric]
            elif metric in reading.missing.get(v, {}):
                missing[v][metric] = reading.missing[v][metric]
    out: dict[str, Observation] = {}
    for v in variants:
        got = values[v]
        extra = {k: x for k, x in got.items() if k not in (objective.numerator, objective.denominator)}
        out[v] = Observation(
            variant=v,
            units=int(got.get(objective.denominator, 0)),
            conversions=round(got.get(objective.numerator, 0)),
            activations=int(got.get("activations", 0)),
            errors=int(got.get("errors", 0)),
            collected_at=now,
            metrics=extra,
            missing=missing[v],
        )
    return out


# ------------------------------------------------------------------------------------------- results


@dataclass(frozen=True)
class StartOutcome:
    experiment: ExperimentState
    url: str | None
    message: str
    started: bool


@dataclass(frozen=True)
class TickOutcome:
    """What one tick did to one experiment; ``ok`` is False when it could not measure or promote."""

    experiment: str
    status: str
    ok: bool
    message: str
    decision: Decision | None = None
    promoted: str | None = None
    lifecycle: Outcome | None = None


@dataclass(frozen=True)
class _Claim:
    state: ExperimentState | None
    existing: ExperimentState | None


# ------------------------------------------------------------------------------------------ the engine


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

    def __post_init__(self) -> None:
        import secrets

        # who claims a start: this run (or this terminal) and a nonce, so a racing twin is told apart
        self._token = f"run {self.run_id or 'local'}/{self.attempt} ({secrets.token_hex(4)})"

    # ---- places -----------------------------------------------------------------------------------

    def _root(self) -> Path:
        return self.state_dir or self.repo / ".squals" / "experiments"

    def dealer_dir(self, experiment_id: str) -> Path:
        return self._root() / check_name("experiment", experiment_id) / "dealer"

    def _spec(self) -> Experiment:
        spec = self.manifest.experiment
        if spec is None:
            raise ExperimentError(
                f"{self.manifest.path}: no experiment is declared (add an `experiment:` section)"
            )
        return spec

    def _transition(
        self, event: str, summary: str, experiment_id: str, step: str, pr: int | None = None
    ) -> Transition:
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
        """Provision the variants' islands and the Dealer, and record the running experiment."""
        from squals_action.gitcmd import resolve_commit

        spec = self._spec()
        sha = resolve_commit(self.repo, commit)
        eid = check_name("experiment", experiment_id or default_experiment_id(self.manifest, sha))
        digest = spec_digest(spec)
        now = self.clock()
        claim = self._claim(eid, spec, digest, sha, pr, now)
        if claim.existing is not None:
            doc = claim.existing
            url = _extra_str(doc, "url")
            return StartOutcome(doc, url, f"experiment {eid} is already {doc.status}", False)
        assert claim.state is not None
        handles: dict[str, EnvironmentHandle] = {}
        dealer_dir = self.dealer_dir(eid)
        try:
            for name, variant in spec.variants.items():
                vm = variant.manifest or self.manifest
                self.log(f"provision {island_name(name)} ({variant.squals}) from {sha[:12]}")
                handles[name] = self.provider.provision(
                    island_name(name),
                    sha,
                    vm,
                    extra_env={
                        "SQUALS_EXPERIMENT": eid,
                        "SQUALS_VARIANT": name,
                        "SQUALS_PROJECT": self.manifest.name,
                    },
                )
            client = self._start_dealer(eid, spec, {n: h.url for n, h in handles.items()}, dealer_dir)
        except SqualsError as exc:
            self._cleanup(handles.values(), dealer_dir)
            why = f"start failed: {exc.one_line()}"
            self._finish(
                eid,
                "failed",
                {"status": "failed", "reason": why},
                "experiment-failed",
                why,
                step="start-failed",
            )
            raise ExperimentError(f"experiment {eid}: {why}; nothing was left running") from exc
        url = client.url
        client.close()
        started_at = self.clock()

        def running(docs: Documents) -> Documents:
            cur = docs.experiment(eid)
            if cur is None or cur.status != "starting" or cur.extra.get("claimed_by") != self._token:
                raise ExperimentError(
                    f"experiment {eid} changed while it was starting ({cur.status if cur else 'gone'})"
                )
            extra = dict(cur.extra)
            extra.update(
                {
                    "islands": {n: h.to_json() for n, h in handles.items()},
                    "dealer_dir": str(dealer_dir),
                    "url": url,
                }
            )
            docs.put_experiment(
                ExperimentState(
                    id=eid,
                    spec_digest=cur.spec_digest,
                    variants=cur.variants,
                    status="running",
                    split=cur.split,
                    observations={},
                    decision=None,
                    started_at=started_at,
                    updated_at=started_at,
                    extra=extra,
                )
            )
            return docs

        try:
            result = self.store.transact(
                running,
                self._transition("experiment-running", f"experiment {eid} runs at {url}", eid, "running", pr),
            )
        except SqualsError:
            self._cleanup(handles.values(), dealer_dir)
            raise
        final = result.snapshot.experiment(eid)
        assert final is not None
        return StartOutcome(final, url, f"experiment {eid} runs: {len(handles)} variants behind {url}", True)

    def _claim(
        self, eid: str, spec: Experiment, digest: str, sha: str, pr: int | None, now: datetime
    ) -> _Claim:
        out: list[_Claim] = []
        token = self._token

        def fn(docs: Documents) -> Documents | None:
            experiments = docs.experiments()
            mine = experiments.get(eid)
            if mine is not None and mine.status in ("running", "promoting", "promotion-failed", "ending"):
                out[:] = [_Claim(None, mine)]
                return None
            if mine is not None and mine.status not in ACTIVE:
                raise ExperimentError(
                    f"experiment {eid} already ran ({mine.status}); start another with a new --id"
                )
            if mine is not None and mine.updated_at is not None:
                holder = mine.extra.get("claimed_by")
                age = (now - mine.updated_at).total_seconds()
                if holder != token and age < STARTING_TTL:
                    raise ExperimentError(
                        f"experiment {eid} is being started by {holder} since "
                        f"{mine.updated_at:%Y-%m-%dT%H:%M:%SZ}; try again after it finished"
                    )
            for other in experiments.values():
                if other.id != eid and other.status in ACTIVE:
                    raise ExperimentError(
                        f"experiment {other.id} is {other.status}: one experiment at a time; "
                        f"stop it first (`squals experiment stop {other.id}`)"
                    )
            numbers = [
                int(e.extra.get("pr", 0)) for e in experiments.values() if isinstance(e.extra.get("pr"), int)
            ]
            synthetic = max([n for n in numbers if n > SYNTHETIC_PR_BASE] + [SYNTHETIC_PR_BASE]) + 1
            state = ExperimentState(
                id=eid,
                spec_digest=digest,
                variants=tuple(spec.variants),
                status="starting",
                split={k: float(v) for k, v in spec.split.items()},
                started_at=now,
                updated_at=now,
                extra={
                    "commit": sha,
                    "pr": pr if pr is not None else synthetic,
                    "pr_given": pr is not None,
                    "claimed_by": token,
                    "control": spec.control,
                    "squals_file": self.manifest.path,
                    "spec": spec_json(spec),
                    "excluded": [],
                    "ticks": [],
                },
            )
            docs.put_experiment(state)
            out[:] = [_Claim(state, None)]
            return docs

        result = self.store.transact(
            fn,
            self._transition("experiment-start", f"start experiment {eid} at {sha[:12]}", eid, "start", pr),
        )
        if not out:  # replayed: this run already claimed it
            doc = result.snapshot.experiment(eid)
            if doc is None:
                raise ExperimentError(f"experiment {eid}: the start was recorded but its document is gone")
            return _Claim(doc, None) if doc.status == "starting" else _Claim(None, doc)
        return out[0]

    def _start_dealer(
        self, eid: str, spec: Experiment, upstreams: Mapping[str, str], dealer_dir: Path
    ) -> Any:
        from squals_action.dealer.daemon import start_dealer, stop_dealer
        from squals_action.dealer.interface import DealerConfig

        stop_dealer(dealer_dir)  # a leftover of a crashed start of this same experiment
        self.log(f"start the experiment's Dealer ({', '.join(f'{k} {v:g}' for k, v in spec.split.items())})")
        return start_dealer(
            DealerConfig(
                upstreams=dict(upstreams),
                weights={k: float(v) for k, v in spec.split.items()},
                unit_kind=spec.unit.kind,
                unit_name=spec.unit.name,
                seed=eid,
            ),
            dealer_dir,
        )

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
            targets = [d for d in docs.values() if d.status in TICKABLE]
        return [self._tick_one(doc) for doc in targets]

    def _tick_one(self, doc: ExperimentState) -> TickOutcome:
        eid = doc.id
        if doc.status not in TICKABLE:
            return TickOutcome(eid, doc.status, True, f"experiment {eid} is {doc.status}: nothing to advance")
        spec = self.manifest.experiment
        if spec is None or spec_digest(spec) != doc.spec_digest:
            return TickOutcome(
                eid,
                doc.status,
                False,
                f"the squals file's experiment is not the one experiment {eid} started with "
                f"({doc.spec_digest[:19]}); stop it (`squals experiment stop {eid}`) and start a new one",
            )
        if doc.status == "promotion-failed":
            winner = str((doc.decision or {}).get("winner") or "")
            if winner not in spec.variants:
                return TickOutcome(eid, doc.status, False, f"experiment {eid}: no winner recorded to promote")
            return self._promote(doc, spec, winner, None)
        from squals_action.dealer.daemon import connect_dealer, dealer_status

        dealer_dir = Path(_extra_str(doc, "dealer_dir") or self.dealer_dir(eid))
        if doc.status == "ending":  # the run that decided died before stopping everything: finish its job
            return self._end(doc, None, dealer_dir)
        if dealer_status(dealer_dir).state != "running":
            return TickOutcome(
                eid,
                doc.status,
                False,
                f"experiment {eid}: its Dealer is not running in {dealer_dir} (the local provider keeps "
                f"it on the machine that started the experiment); nothing was measured",
            )
        from squals_action.experiments.dealer_metrics import DealerMetrics
        from squals_action.experiments.prometheus import PrometheusSource

        client = connect_dealer(dealer_dir)
        prometheus = PrometheusSource(spec.metrics, default_url=self.prometheus_url)
        now = self.clock()
        try:
            sources: list[MetricSource] = [DealerMetrics(client.tallies), prometheus]
            observations = observe(spec, sources, list(doc.variants), now)
            from squals_action.experiments.decide import decide

            decision = decide(observations, spec, doc.started_at or now, now)
            previously = {str(x) for x in doc.extra.get("excluded", [])}
            newly = [x for x in decision.excluded if x not in previously]
            if newly:  # users first: the switch before the record
                weights = {
                    v: (0.0 if v in decision.excluded else float(doc.split.get(v, 0.0))) for v in doc.variants
                }
                self.log(f"guardrail: no more traffic for {', '.join(newly)}")
                client.set_weights(weights)
        finally:
            client.close()
            prometheus.close()
        next_status = {"continue": "running", "winner": "promoting"}.get(decision.status, "ending")
        recorded = self._record_tick(doc, decision, observations, now, next_status)
        if recorded is None:
            return TickOutcome(
                eid, doc.status, True, f"experiment {eid} was advanced by another run meanwhile"
            )
        self.log(f"{eid}: {decision.summary()}")
        if decision.status == "continue":
            return TickOutcome(eid, "running", True, decision.summary(), decision)
        if decision.status == "winner":
            assert decision.winner is not None
            return self._promote(recorded, spec, decision.winner, decision)
        return self._end(recorded, decision, dealer_dir)

    def _end(self, doc: ExperimentState, decision: Decision | None, dealer_dir: Path) -> TickOutcome:
        """No winner (no difference, or every variant breached a guardrail): stop it all, prod unchanged."""
        recorded = dict(doc.decision or {}) if decision is None else decision.to_json()
        status = str(recorded.get("status", "no-difference"))
        outcome = "guardrail-stop" if status == "guardrail-stop" else "no-difference"
        self._cleanup(_handles(doc), dealer_dir)
        summary = decision.summary() if decision is not None else outcome
        message = f"{summary}; islands stopped, prod unchanged"
        self._finish(
            doc.id, "decided", {**recorded, "outcome": outcome}, f"experiment-{outcome}", message, step="end"
        )
        return TickOutcome(doc.id, "decided", True, message, decision)

    def _record_tick(
        self,
        doc: ExperimentState,
        decision: Decision,
        observations: Mapping[str, Observation],
        now: datetime,
        next_status: str,
    ) -> ExperimentState | None:
        eid = doc.id
        recorded: list[ExperimentState] = []

        def fn(docs: Documents) -> Documents | None:
            current = docs.experiment(eid)
            if current is None or current.status != doc.status:
                return None  # another tick moved it: compare-and-swap on the status
            extra = dict(current.extra)
            ticks = list(extra.get("ticks", []))
            ticks.append(
                {
                    "at": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "status": decision.status,
                    "units": {v: o.units for v, o in observations.items()},
                    "conversions": {v: o.conversions for v, o in observations.items()},
                    "p_values": {k: round(v, 6) for k, v in decision.p_values.items()},
                }
            )
            extra["ticks"] = ticks[-MAX_TICKS_KEPT:]
            extra["excluded"] = sorted(set(extra.get("excluded", [])) | set(decision.excluded))
            new = ExperimentState(
                id=eid,
                spec_digest=current.spec_digest,
                variants=current.variants,
                status=next_status,
                split=current.split,
                observations={v: o.to_json() for v, o in observations.items()},
                decision=decision.to_json(),
                started_at=current.started_at,
                updated_at=now,
                extra=extra,
            )
            docs.put_experiment(new)
            recorded[:] = [new]
            return docs

        count = len(doc.extra.get("ticks", []))
        self.store.transact(
            fn,
            self._transition(
                "experiment-tick", f"experiment {eid}: {decision.summary()}", eid, f"tick-{count}", _pr(doc)
            ),
        )
        return recorded[0] if recorded else None

    # ---- promotion and the end --------------------------------------------------------------------

    def _promote(
        self, doc: ExperimentState, spec: Experiment, winner: str, decision: Decision | None
    ) -> TickOutcome:
        eid = doc.id
        variant = spec.variants[winner]
        vm = variant.manifest or self.manifest
        pr = _pr(doc) or SYNTHETIC_PR_BASE
        commit = _extra_str(doc, "commit") or "HEAD"
        self.log(f"{eid}: promote {winner} as pr-{pr} through the lifecycle")
        outcome: Outcome | None = None
        failure: str | None = None
        try:
            with self.promoter(vm) as lifecycle:
                outcome = _scoped(lifecycle, "deploy").deploy(pr, commit)
                if outcome.ok:
                    outcome = _scoped(lifecycle, "promote").promote(pr)
                if not outcome.ok:
                    failure = outcome.message
        except SqualsError as exc:
            failure = exc.one_line()
        base = dict(doc.decision or {})
        base.update({"status": "winner", "winner": winner, "environment": f"pr-{pr}"})
        if failure is not None:
            message = f"{winner} won but its promotion failed: {failure}; the next tick tries again"
            base.update({"outcome": "promotion-failed", "promotion": failure})
            self._finish(
                eid,
                "promotion-failed",
                base,
                "experiment-promotion-failed",
                message,
                step="promote-failed",
                expect=("promoting", "promotion-failed"),
            )
            return TickOutcome(eid, "promotion-failed", False, message, decision, None, outcome)
        dealer_dir = Path(_extra_str(doc, "dealer_dir") or self.dealer_dir(eid))
        self._cleanup(_handles(doc), dealer_dir)
        message = f"{winner} won and is prod (pr-{pr}); the other variants were stopped"
        base.update({"outcome": "promoted", "promotion": outcome.message if outcome else ""})
        self._finish(
            eid,
            "decided",
            base,
            "experiment-promoted",
            message,
            step="promoted",
            expect=("promoting", "promotion-failed"),
        )
        return TickOutcome(eid, "decided", True, message, decision, winner, outcome)

    def stop(self, experiment_id: str, reason: str = "") -> ExperimentState:
        """End an experiment by hand: islands and Dealer stopped, nothing promoted, recorded with who."""
        doc = self.store.read().experiment(experiment_id)
        if doc is None:
            raise ExperimentError(f"no experiment {experiment_id!r} on the state branch")
        if doc.status not in ACTIVE:
            return doc
        dealer_dir = Path(_extra_str(doc, "dealer_dir") or self.dealer_dir(experiment_id))
        handles = _handles(doc)
        if not handles:  # a start that died before recording its islands: find them by name
            found = (self.provider.get(island_name(v)) for v in doc.variants)
            handles = [h for h in found if h is not None]
        self._cleanup(handles, dealer_dir)
        why = reason or f"stopped by {self.actor or 'hand'}"
        self._finish(
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

    def _finish(
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
        now = self.clock()

        def fn(docs: Documents) -> Documents | None:
            current = docs.experiment(eid)
            if current is None or current.status not in expect:
                return None
            docs.put_experiment(
                ExperimentState(
                    id=eid,
                    spec_digest=current.spec_digest,
                    variants=current.variants,
                    status=status,
                    split=current.split,
                    observations=current.observations,
                    decision=dict(decision),
                    started_at=current.started_at,
                    updated_at=now,
                    extra=current.extra,
                )
            )
            return docs

        doc = self.store.read().experiment(eid)
        self.store.transact(fn, self._transition(event, summary, eid, step, _pr(doc) if doc else None))

    def _cleanup(self, handles: Iterable[EnvironmentHandle], dealer_dir: Path) -> None:
        """Stop the Dealer and destroy the islands; failures are logged, not raised (the record goes on)."""
        from squals_action.dealer.daemon import stop_dealer

        with contextlib.suppress(SqualsError):
            stop_dealer(dealer_dir)  # graceful: in-flight requests finish, tallies are written
        for handle in list(handles):
            try:
                outcome = self.provider.destroy(handle)
                self.log(f"{handle.env}: {'destroyed' if outcome.ok else outcome.detail}")
            except SqualsError as exc:
                self.log(f"{handle.env}: not destroyed: {exc.one_line()}")

    # ---- reading ----------------------------------------------------------------------------------

    def experiments(self) -> dict[str, ExperimentState]:
        return self.store.read().experiments()


def _scoped(lifecycle: Lifecycle, step: str) -> Lifecycle:
    """The lifecycle with a run id of its own for ``step``.

    Workaround: the store's lock helpers key their idempotency on event + run + attempt only, so a deploy
    and a promote in one run would see the second ``lock`` (and ``unlock``) as a replay of the first. The
    lifecycle never does both in one run; a tick that promotes does, so each step gets ``<run>-<step>``.
    """
    import dataclasses

    if lifecycle.run_id is None:
        return lifecycle
    return dataclasses.replace(lifecycle, run_id=f"{lifecycle.run_id}-{step}")


def _extra_str(doc: ExperimentState, key: str) -> str | None:
    value = doc.extra.get(key)
    return value if isinstance(value, str) else None


def _pr(doc: ExperimentState) -> int | None:
    value = doc.extra.get("pr")
    return value if isinstance(value, int) else None


def _handles(doc: ExperimentState) -> list[EnvironmentHandle]:
    out = []
    for raw in dict(doc.extra.get("islands") or {}).values():
        with contextlib.suppress(SqualsError):
            out.append(EnvironmentHandle.from_json(raw))
    return out


def from_lifecycle(lifecycle: Lifecycle, *, log: Callable[[str], None] | None = None) -> ExperimentEngine:
    """The experiments of the project a lifecycle drives: same repository, store, provider and identity.

    The winner is promoted by a copy of that lifecycle holding the winner's squals file, so the promotion
    is the lifecycle's own ``deploy`` + ``promote`` (its locks, hooks, exit tests, bake and traffic switch).
    """
    import dataclasses

    def promoter(manifest: Manifest) -> AbstractContextManager[Lifecycle]:
        return contextlib.nullcontext(dataclasses.replace(lifecycle, manifest=manifest, gates=None))

    return ExperimentEngine(
        repo=lifecycle.repo,
        manifest=lifecycle.manifest,
        store=lifecycle.store,
        provider=lifecycle.provider,
        promoter=promoter,
        run_id=lifecycle.run_id,
        actor=lifecycle.actor,
        attempt=lifecycle.attempt,
        log=log or (lambda text: None),
    )
