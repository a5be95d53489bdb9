"""What each step writes to ``experiments/<id>.json``: the claim, running, a tick, the end.

Every function here is a pure change of the documents inside one state transaction; the engine runs them
with ``StateStore.transact`` and does the side effects (islands, the Dealer, the promotion) around them.
Each write checks the status it expects (a compare-and-swap on the document), so two runs racing cannot
both act on one decision.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from squals_action.dealer.layers import Slot
from squals_action.errors import SqualsError
from squals_action.experiments.interface import Decision, ExperimentError, Observation
from squals_action.experiments.layering import LAYERS, describe, slot_for, slot_of
from squals_action.experiments.spec import island_names, legacy_island_name, spec_json
from squals_action.lifecycle.machine import Status
from squals_action.manifest.model import Experiment
from squals_action.providers.interface import EnvironmentHandle
from squals_action.state.interface import Documents, ExperimentState, Snapshot

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


@dataclass(frozen=True, kw_only=True)
class StartRequest:
    """Who starts which experiment from what: everything the claim writes into the document."""

    eid: str
    spec: Experiment
    digest: str
    commit: str
    pr: int | None
    now: datetime
    token: str
    squals_file: str
    #: The project's Dealer directory when the experiment is layered (placed beside others on prod's Dealer).
    dealer: str | None = None


@dataclass(frozen=True, kw_only=True)
class Claim:
    """The outcome of a claim: ``state`` when this run claimed it, ``existing`` when it already runs."""

    state: ExperimentState | None
    existing: ExperimentState | None


def claim(docs: Documents, req: StartRequest) -> Claim:
    """Claim ``req.eid`` as ``starting`` in ``docs``; refuse a second active experiment or a live claim."""
    eid = req.eid
    experiments = docs.experiments()
    mine = experiments.get(eid)
    if mine is not None and mine.status in ("running", "promoting", "promotion-failed", "ending"):
        return Claim(state=None, existing=mine)
    if mine is not None and mine.status not in ACTIVE:
        raise ExperimentError(f"experiment {eid} already ran ({mine.status}); start another with a new --id")
    if mine is not None and mine.updated_at is not None:
        holder = mine.extra.get("claimed_by")
        age = (req.now - mine.updated_at).total_seconds()
        if holder != req.token and age < STARTING_TTL:
            raise ExperimentError(
                f"experiment {eid} is being started by {holder} since "
                f"{mine.updated_at:%Y-%m-%dT%H:%M:%SZ}; try again after it finished"
            )
    others = [o for o in experiments.values() if o.id != eid and o.status in ACTIVE]
    slots = [slot_of(o) for o in others]
    for other, slot in zip(others, slots, strict=True):
        if req.dealer is None or slot is None:
            raise ExperimentError(
                f"experiment {other.id} is {other.status}: one experiment at a time{_beside(req, slot)}; "
                f"stop it first (`squals experiment stop {other.id}`)"
            )
    names = claimed_names(mine, eid, req.spec)
    refuse_held(names, holders(docs, but=eid))
    numbers = [int(e.extra.get("pr", 0)) for e in experiments.values() if isinstance(e.extra.get("pr"), int)]
    synthetic = max([n for n in numbers if n > SYNTHETIC_PR_BASE] + [SYNTHETIC_PR_BASE]) + 1
    spec = req.spec
    placed: dict[str, Any] = {}
    if req.dealer is not None:  # chosen in this transaction: a racing start cannot take the same range
        slot = slot_for(eid, spec, [s for s in slots if s is not None])
        placed = {"traffic": {"kind": LAYERS, "dealer_dir": req.dealer, "slot": slot.to_json()}}
    elif mine is not None and isinstance(mine.extra.get("traffic"), dict):
        # a killed start's write-ahead, taken over: the listener's routing from before it moved it
        placed = {"traffic": dict(mine.extra["traffic"])}
    state = ExperimentState(
        id=eid,
        spec_digest=req.digest,
        variants=tuple(spec.variants),
        status="starting",
        split={k: float(v) for k, v in spec.split.items()},
        started_at=req.now,
        updated_at=req.now,
        extra={
            "commit": req.commit,
            "pr": req.pr if req.pr is not None else synthetic,
            "pr_given": req.pr is not None,
            "claimed_by": req.token,
            "control": spec.control,
            "squals_file": req.squals_file,
            "spec": spec_json(spec),
            "island_names": names,
            "excluded": [],
            "ticks": [],
            **placed,
        },
    )
    docs.put_experiment(state)
    return Claim(state=state, existing=None)


def _beside(req: StartRequest, slot: Slot | None) -> str:
    """Why two experiments cannot run side by side: one of them takes every unit of its own Dealer."""
    if req.dealer is None and slot is not None:
        return (
            f" without experiment.layer/share/assignment (it runs in {describe(slot)}; this one would take "
            "every unit: give it a layer or a share)"
        )
    if req.dealer is not None:
        return " beside one without experiment.layer/share/assignment (it has every unit on its own Dealer)"
    return ""


def _starting(docs: Documents, eid: str, token: str) -> ExperimentState:
    """The experiment this start (``token``) claimed, still ``starting``; else it changed meanwhile."""
    cur = docs.experiment(eid)
    if cur is None or cur.status != "starting" or cur.extra.get("claimed_by") != token:
        raise ExperimentError(
            f"experiment {eid} changed while it was starting ({cur.status if cur else 'gone'})"
        )
    return cur


def mark_routing(docs: Documents, eid: str, token: str, places: Mapping[str, Any]) -> Documents:
    """Still ``starting``, with the islands and the splitter as they are before any traffic moves
    (``places``: on aws the listener's routing to give back): written ahead, so a start killed while it
    moves the traffic leaves a stop what it needs to undo it."""
    cur = _starting(docs, eid, token)
    docs.put_experiment(dataclasses.replace(cur, extra={**cur.extra, **places}))
    return docs


def places(handles: Mapping[str, EnvironmentHandle], splitter: Mapping[str, Any]) -> dict[str, Any]:
    """Where the experiment runs, as its document keeps it: the islands and the splitter's record."""
    return {"islands": {n: h.to_json() for n, h in handles.items()}, **splitter}


def mark_running(
    docs: Documents, eid: str, token: str, places: Mapping[str, Any], started_at: datetime
) -> Documents:
    """``starting`` -> ``running`` with the islands, the Dealer's directory and URL (``places``)."""
    cur = _starting(docs, eid, token)
    extra = dict(cur.extra)
    extra.update(places)
    docs.put_experiment(
        dataclasses.replace(
            cur,
            status="running",
            observations={},
            decision=None,
            started_at=started_at,
            updated_at=started_at,
            extra=extra,
        )
    )
    return docs


@dataclass(frozen=True, kw_only=True)
class Judgement:
    """What one tick measured and concluded, and when."""

    observations: Mapping[str, Observation]
    decision: Decision
    at: datetime

    @property
    def next_status(self) -> str:
        """``running`` while it continues, ``promoting`` a winner, else ``ending`` (the cleanup is next)."""
        return {"continue": "running", "winner": "promoting"}.get(self.decision.status, "ending")


def record_tick(docs: Documents, doc: ExperimentState, judged: Judgement) -> ExperimentState | None:
    """Record one tick's observations and decision; ``None`` if another tick moved ``doc`` meanwhile."""
    current = docs.experiment(doc.id)
    if current is None or current.status != doc.status:
        return None  # another tick moved it: compare-and-swap on the status
    extra = dict(current.extra)
    ticks = list(extra.get("ticks", []))
    ticks.append(
        {
            "at": judged.at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "status": judged.decision.status,
            "units": {v: o.units for v, o in judged.observations.items()},
            "conversions": {v: o.conversions for v, o in judged.observations.items()},
            # the objective's value per variant (any kind): what the report charts over the ticks
            "objective": {v: float(f"{f.rate:.6g}") for v, f in judged.decision.figures.items()},
            "p_values": {k: round(v, 6) for k, v in judged.decision.p_values.items()},
        }
    )
    extra["ticks"] = ticks[-MAX_TICKS_KEPT:]
    stats = {v: o.stats_json() for v, o in judged.observations.items() if o.stats}
    if stats:
        extra["stats"] = stats
    extra["excluded"] = sorted(set(extra.get("excluded", [])) | set(judged.decision.excluded))
    new = dataclasses.replace(
        current,
        status=judged.next_status,
        observations={v: o.to_json() for v, o in judged.observations.items()},
        decision=judged.decision.to_json(),
        updated_at=judged.at,
        extra=extra,
    )
    docs.put_experiment(new)
    return new


def finish(
    docs: Documents,
    eid: str,
    status: str,
    decision: Mapping[str, Any],
    now: datetime,
    expect: Collection[str],
) -> Documents | None:
    """Set the final (or failed) ``status`` and ``decision``; nothing when the status is not one expected."""
    current = docs.experiment(eid)
    if current is None or current.status not in expect:
        return None
    docs.put_experiment(dataclasses.replace(current, status=status, decision=dict(decision), updated_at=now))
    return docs


def extra_str(doc: ExperimentState, key: str) -> str | None:
    """A string the document keeps under ``extra`` (``url``, ``commit``, ``dealer_dir``), else ``None``."""
    value = doc.extra.get(key)
    return value if isinstance(value, str) else None


def pr_of(doc: ExperimentState) -> int | None:
    """The pull request the experiment's winner is deployed as (given or synthetic)."""
    value = doc.extra.get("pr")
    return value if isinstance(value, int) else None


def claimed_names(mine: ExperimentState | None, eid: str, spec: Experiment) -> dict[str, str]:
    """The islands a start of ``eid`` claims: its own new names, or those of the killed start it takes over
    (``mine``, still ``starting``). App-side variants get names too, never provisioned."""
    return island_names_of(mine) if mine is not None else island_names(eid, spec.variants)


def island_names_of(doc: ExperimentState) -> dict[str, str]:
    """Each variant's island as the claim recorded it; a document claimed before ``island_names`` were
    recorded named them ``exp-<variant>`` (never recomputed with today's rule: they run under those)."""
    recorded = doc.extra.get("island_names")
    if isinstance(recorded, dict):
        return {str(k): str(v) for k, v in recorded.items()}
    return {v: legacy_island_name(v) for v in doc.variants}


def holders(docs: Documents | Snapshot, *, but: str | None = None) -> dict[str, str]:
    """Every island a live record holds -> who holds it: an environment's document not retired (prod, the
    postprod, a pull request's island, a winner adopted as ``pr-N``: its handle names the island it runs on)
    and every active experiment but ``but`` (its islands, recorded or claimed)."""
    held: dict[str, str] = {}
    for name, env in docs.environments().items():
        island = (env.handle or {}).get("env")
        if isinstance(island, str) and env.status != Status.RETIRED:
            held.setdefault(island, f"{name} ({env.status})")
    for eid, doc in docs.experiments().items():
        if eid != but and doc.status in ACTIVE:
            islands = [*island_names_of(doc).values(), *(h.env for h in handles_of(doc))]
            for island in islands:
                held.setdefault(island, f"experiment {eid} ({doc.status})")
    return held


def refuse_held(names: Mapping[str, str], held: Mapping[str, str]) -> None:
    """A start never provisions onto an island a live record holds: one line naming the holder."""
    for variant, island in names.items():
        if island in held:
            raise ExperimentError(
                f"experiment start refused: variant {variant}'s island {island} is held by {held[island]}; "
                "nothing was started"
            )


def handles_of(doc: ExperimentState) -> list[EnvironmentHandle]:
    """The islands the document recorded (unreadable entries skipped: stop finds those by name)."""
    out = []
    for raw in dict(doc.extra.get("islands") or {}).values():
        with contextlib.suppress(SqualsError):
            out.append(EnvironmentHandle.from_json(raw))
    return out


def placement(doc: ExperimentState, docs: Mapping[str, ExperimentState]) -> str | None:
    """Where a layered experiment splits and which active experiments share traffic with it (``None``: it
    has a Dealer or a front door to itself): ``layer main 0-50 %, islands; shares its units with exp-ui
    (layer ui 0-100 %, app-side); no unit in common with exp-b (layer main 50-80 %, islands)``."""
    slot = slot_of(doc)
    if slot is None:
        return None
    if doc.status not in ACTIVE:
        return describe(slot)
    shared: list[str] = []
    apart: list[str] = []
    for other in sorted(docs.values(), key=lambda d: d.id):
        theirs = slot_of(other) if other.id != doc.id and other.status in ACTIVE else None
        if theirs is not None:
            (apart if theirs.layer == slot.layer else shared).append(f"{other.id} ({describe(theirs)})")
    parts = [describe(slot)]
    parts += [f"shares its units with {', '.join(shared)}"] if shared else []
    parts += [f"no unit in common with {', '.join(apart)}"] if apart else []
    return "; ".join(parts if len(parts) > 1 else [*parts, "alone on prod's Dealer"])
