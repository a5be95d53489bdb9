"""An experiment's start once its files passed the checks (:func:`~squals_action.experiments.ready.checked`),
with the provider bound to its start commit: :meth:`.ExperimentEngine.start` hands it over here.

Every variant's island is checked as its provisioning would before anything is made
(:func:`~squals_action.experiments.ready.check_islands`), then three commits: the claim (``starting``), the
write-ahead (``experiment-routing``: the islands and what gives the splitter back, on AWS the listener's
routing as it is, before anything moves it, so a start killed while the traffic moves leaves a stop all it
needs) and ``running`` once the splitter is open. A variant that is not ready stops the start before any
traffic moves: its islands are destroyed, the start recorded ``failed``; what could not be stopped is named
with the command that ends the experiment.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from squals_action.errors import SqualsError, one_line
from squals_action.experiments import records
from squals_action.experiments.interface import ExperimentError
from squals_action.experiments.islands import stop_all
from squals_action.experiments.layered import check_prod_dealer
from squals_action.experiments.layering import layered
from squals_action.experiments.outcomes import StartOutcome
from squals_action.experiments.promotion import Promoter
from squals_action.experiments.ready import check_islands, ready_islands
from squals_action.experiments.records import extra_str
from squals_action.experiments.spec import default_experiment_id, spec_digest
from squals_action.experiments.splitters import Split, new_split
from squals_action.manifest.model import Experiment, Manifest, StickyUnit
from squals_action.providers.interface import EnvironmentHandle, Provider
from squals_action.state.interface import Documents, ExperimentState, StateStore, Transition, check_name


class Engine(Protocol):
    """What a start uses of :class:`~squals_action.experiments.engine.ExperimentEngine` (structurally: the
    engine imports this module, never the reverse)."""

    @property
    def store(self) -> StateStore: ...

    @property
    def promoter(self) -> Promoter: ...

    @property
    def token(self) -> str: ...

    @property
    def clock(self) -> Callable[[], datetime]: ...

    @property
    def log(self) -> Callable[[str], None]: ...

    def dealer_dir(self, experiment_id: str) -> Path: ...

    def prod_dealer(self) -> Path: ...

    def split_of(self, doc: ExperimentState, unit: StickyUnit | None = None) -> Split: ...

    def transition(
        self, event: str, summary: str, experiment_id: str, step: str, pr: int | None = None
    ) -> Transition: ...

    def finish(
        self,
        eid: str,
        status: str,
        decision: Mapping[str, Any],
        event: str,
        summary: str,
        *,
        step: str,
        expect: Sequence[str] = ...,
    ) -> None: ...


def run_start(
    engine: Engine,
    provider: Provider,
    started: Manifest,
    spec: Experiment,
    sha: str,
    squals_file: str,
    pr: int | None,
    experiment_id: str | None,
) -> StartOutcome:
    """Check every variant's island, claim, make the islands ready with ``provider`` (bound to the start
    commit), write ahead what gives the splitter back, open it, record ``running``; a failure stops what
    this start provisioned and records it."""
    eid = check_name("experiment", experiment_id or default_experiment_id(started, sha))
    request = records.StartRequest(
        eid=eid,
        spec=spec,
        digest=spec_digest(spec),
        commit=sha,
        pr=pr,
        now=engine.clock(),
        token=engine.token,
        squals_file=squals_file,
        dealer=str(engine.prod_dealer()) if layered(spec) else None,
    )
    if request.dealer is not None:
        check_prod_dealer(Path(request.dealer), spec)
    # each variant's island is the experiment's own: refused here, before anything is made, when a live
    # record holds one (prod on an earlier winner's island...), and again by the claim, atomically; not
    # when the claim will find the experiment past its start (a re-run of the same push: its winner may be
    # held by pr-N already) or refuse it (it ran already)
    now = engine.store.read()
    mine = now.experiment(eid)
    names = records.claimed_names(mine, eid, spec)
    if mine is None or mine.status == "starting":
        records.refuse_held(names, records.holders(now, but=eid))
    check_islands(provider, spec, started, eid=eid, names=names, sha=sha)
    split = new_split(provider, started, sha, engine.dealer_dir(eid), engine.log)
    claim = _claim(engine, request)
    if claim.existing is not None:
        doc = claim.existing
        url = extra_str(doc, "url")
        return StartOutcome(
            experiment=doc, url=url, message=f"experiment {eid} is already {doc.status}", started=False
        )
    assert claim.state is not None
    if request.dealer is not None:  # its slot, chosen by the claim
        split = engine.split_of(claim.state, spec.unit)
    handles: dict[str, EnvironmentHandle] = {}
    opening = False
    try:
        names = records.island_names_of(claim.state)
        ready_islands(
            engine.promoter,
            provider,
            spec,
            started,
            eid=eid,
            names=names,
            sha=sha,
            log=engine.log,
            handles=handles,
        )
        split.prepare(handles, dict(claim.state.extra.get("traffic") or {}), engine.log)
        _write_ahead(engine, eid, records.places(handles, split.record()), pr)
        opening = True
        url = split.open(eid, spec, handles, engine.log)
    except BaseException as exc:  # an interrupt or a bug too: nothing this start made is left running
        # its own islands, just made under names the claim found held by no one
        kept = stop_all(provider, handles.values(), split, engine.log, held={})
        if not isinstance(exc, SqualsError | OSError):
            raise
        why = f"start failed: {one_line(exc)}"
        routed = "the splitter could not open" if opening else "no traffic was routed"
        if kept:  # left "starting": a stop finds the islands (written ahead, else by name) and the splitter
            raise ExperimentError(
                f"experiment {eid}: {why}; {routed}, but not destroyed: {', '.join(kept)}: "
                f"run `squals experiment stop {eid}`"
            ) from exc
        engine.finish(
            eid,
            "failed",
            {"status": "failed", "reason": why},
            "experiment-failed",
            why,
            step="start-failed",
        )
        raise ExperimentError(f"experiment {eid}: {why}; {routed} and its islands were stopped") from exc
    started_at = engine.clock()
    places = {**records.places(handles, split.record()), "url": url}
    try:
        result = engine.store.transact(
            lambda docs: records.mark_running(docs, eid, engine.token, places, started_at),
            engine.transition("experiment-running", f"experiment {eid} runs at {url}", eid, "running", pr),
        )
    except SqualsError:
        stop_all(provider, handles.values(), split, engine.log, held={})
        raise
    final = result.snapshot.experiment(eid)
    assert final is not None
    where = records.placement(final, result.snapshot.experiments())
    return StartOutcome(
        experiment=final,
        url=url,
        message=f"experiment {eid} runs: {len(spec.variants)} variants behind {url}"
        + (f" ({where})" if where else ""),
        started=True,
    )


def _write_ahead(engine: Engine, eid: str, places: Mapping[str, Any], pr: int | None) -> None:
    """The islands and what gives the splitter back, on the state branch before the traffic moves."""
    summary = f"experiment {eid}: ready, traffic moves next"
    transition = engine.transition("experiment-routing", summary, eid, "routing", pr)
    engine.store.transact(lambda docs: records.mark_routing(docs, eid, engine.token, places), transition)


def _claim(engine: Engine, request: records.StartRequest) -> records.Claim:
    """Claim the experiment in one commit; a replay of this run's claim reads what it recorded."""
    eid = request.eid
    out: list[records.Claim] = []

    def fn(docs: Documents) -> Documents | None:
        got = records.claim(docs, request)
        out[:] = [got]
        return docs if got.state is not None else None

    result = engine.store.transact(
        fn,
        engine.transition(
            "experiment-start",
            f"start experiment {eid} at {request.commit[:12]}",
            eid,
            "start",
            request.pr,
        ),
    )
    if not out:  # replayed: this run already claimed it
        doc = result.snapshot.experiment(eid)
        if doc is None:
            raise ExperimentError(f"experiment {eid}: the start was recorded but its document is gone")
        if doc.status == "starting":
            return records.Claim(state=doc, existing=None)
        return records.Claim(state=None, existing=doc)
    return out[0]
