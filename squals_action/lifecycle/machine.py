"""The environment state machine as pure transitions: no I/O, so every (status, event) pair can be tested.

An environment is named after the pull request that produced it (``pr-7``) and keeps that name for life.
Its *status* says what it is now: an island being prepared, provisioned, verified or failed; the BLUE
candidate with a traffic share; ``prod`` (GREEN, live); ``postprod`` (the previous prod, hot at 0 %); or
retired. A stable name means the Dealer's per-variant tallies, the provider's handle and the state document
follow the environment through promotion and rollback: only the status and the share move.

Two levels:

* :func:`step`: one environment's status and one event, from the table :data:`TRANSITIONS`; anything not
  in the table is an :class:`InvalidTransition`.
* :func:`apply`: a whole :data:`Fleet` (every environment of a project) and an event aimed at one
  environment; it moves every environment the event concerns (a completed promotion moves BLUE to prod,
  prod to postprod, and retires the old postprod), recomputes the shares, then checks :func:`invariants`.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from squals_action.errors import SqualsError


class Status(enum.StrEnum):
    """What one environment is now."""

    ABSENT = "absent"  # never deployed (no document)
    PREPARING = "preparing"  # before_preprod hooks running; nothing provisioned yet
    ABORTED = "aborted"  # a before_preprod hook failed; nothing was provisioned
    PROVISIONING = "provisioning"  # the provider is starting the island
    PROVISIONED = "provisioned"  # island up; after_preprod hooks running
    VERIFYING = "verifying"  # after_preprod hooks passed; exit tests running
    READY = "ready"  # island verified; may be promoted
    FAILED = "failed"  # a hook, an exit test, the provider or the bake failed; kept for inspection
    BLUE = "blue"  # promotion candidate with a traffic share, baking
    BAKED = "baked"  # bake passed; promote hooks running
    PROD = "prod"  # GREEN: the live environment
    POSTPROD = "postprod"  # the previous prod, hot at 0 % so rollback is one switch
    RETIRED = "retired"  # destroyed


class Event(enum.StrEnum):
    """What happened to an environment (recorded as the ``Squals-Event`` of the transition's commit)."""

    DEPLOY = "deploy"  # a deploy of a commit starts (before_preprod hooks)
    HOOKS_OK = "hooks-ok"
    HOOKS_FAILED = "hooks-failed"
    PROVISION = "provision"  # the provider returned a healthy island
    PROVISION_FAILED = "provision-failed"
    EXIT_TESTS_OK = "exit-tests-ok"
    EXIT_TESTS_FAILED = "exit-tests-failed"
    PROMOTE_START = "promote-start"  # BLUE gets its share
    BAKE_OK = "bake-ok"
    STEP = "step"  # a progressive rollout's next step: BLUE gets a larger share and bakes again
    CHAOS = "chaos"  # a chaos test of the promotion passed: its outcome recorded, BLUE at its share again
    BAKE_BREACH = "bake-breach"  # KPI breach, alarm or failing in-flight test: all traffic back to GREEN
    BAKE_INCONCLUSIVE = "bake-inconclusive"  # no data (too few requests, a KPI unmeasured): back to GREEN
    PROMOTE_HOOK_FAILED = "promote-hook-failed"  # GREEN gets its full share back
    ABORT = "abort"  # a promotion interrupted (Ctrl-C, crash found later): GREEN gets its full share back
    COMPLETE = "complete"  # BLUE takes 100 %; prod -> postprod; postprod -> retired
    ROLLBACK = "rollback"  # prod <-> postprod, one traffic switch
    TEARDOWN = "teardown"  # the PR closed: destroy its island
    DOWN = "down"  # stop everything the project started


S, E = Status, Event

#: Statuses from which a (re)deploy may start: a new push replaces a ready or failed island, and a deploy
#: that died half-way (found by the next deploy, which holds the island's lock) is started over.
_REDEPLOYABLE = (
    S.ABSENT,
    S.PREPARING,
    S.ABORTED,
    S.PROVISIONING,
    S.PROVISIONED,
    S.VERIFYING,
    S.FAILED,
    S.READY,
    S.RETIRED,
)
#: Island statuses a teardown may destroy (in-progress ones too, to clean up after a crashed run).
_TEARABLE = (S.PREPARING, S.ABORTED, S.PROVISIONING, S.PROVISIONED, S.VERIFYING, S.READY, S.FAILED)

TRANSITIONS: Mapping[tuple[Status, Event], Status] = {
    **{(s, E.DEPLOY): S.PREPARING for s in _REDEPLOYABLE},
    (S.PREPARING, E.HOOKS_OK): S.PROVISIONING,
    (S.PREPARING, E.HOOKS_FAILED): S.ABORTED,
    (S.PROVISIONING, E.PROVISION): S.PROVISIONED,
    (S.PROVISIONING, E.PROVISION_FAILED): S.FAILED,
    (S.PROVISIONED, E.HOOKS_OK): S.VERIFYING,
    (S.PROVISIONED, E.HOOKS_FAILED): S.FAILED,
    (S.VERIFYING, E.EXIT_TESTS_OK): S.READY,
    (S.VERIFYING, E.EXIT_TESTS_FAILED): S.FAILED,
    (S.READY, E.PROMOTE_START): S.BLUE,
    (S.POSTPROD, E.PROMOTE_START): S.BLUE,  # roll forward again to what was rolled back
    (S.BLUE, E.BAKE_OK): S.BAKED,
    (S.BLUE, E.STEP): S.BLUE,
    (S.BLUE, E.CHAOS): S.BLUE,
    (S.BLUE, E.BAKE_BREACH): S.FAILED,
    (S.BLUE, E.BAKE_INCONCLUSIVE): S.READY,  # nothing was proved either way: promotable again
    (S.BLUE, E.ABORT): S.READY,
    (S.BAKED, E.ABORT): S.READY,
    (S.BAKED, E.PROMOTE_HOOK_FAILED): S.READY,
    (S.BAKED, E.COMPLETE): S.PROD,
    (S.PROD, E.COMPLETE): S.POSTPROD,
    (S.POSTPROD, E.COMPLETE): S.RETIRED,
    (S.PROD, E.HOOKS_OK): S.PROD,  # after_postprod hooks: recorded, prod unchanged
    (S.PROD, E.HOOKS_FAILED): S.PROD,  # after_postprod failure is reported; the new prod stays
    (S.PROD, E.ROLLBACK): S.POSTPROD,
    (S.POSTPROD, E.ROLLBACK): S.PROD,
    **{(s, E.TEARDOWN): S.RETIRED for s in _TEARABLE},
    (S.RETIRED, E.TEARDOWN): S.RETIRED,  # idempotent: a second close event changes nothing
    **{(s, E.DOWN): S.RETIRED for s in Status if s is not S.ABSENT},
}

#: Statuses whose environment is expected to have a running process (a provider handle).
RUNNING: frozenset[Status] = frozenset(
    {S.PROVISIONED, S.VERIFYING, S.READY, S.FAILED, S.BLUE, S.BAKED, S.PROD, S.POSTPROD}
)
#: Statuses that take part in the Dealer's traffic split.
ROUTED: frozenset[Status] = frozenset({S.BLUE, S.BAKED, S.PROD, S.POSTPROD})


class InvalidTransition(SqualsError):
    """An event that makes no sense in an environment's status (a bug, a race, or a user's mistake)."""

    def __init__(self, name: str, status: Status, event: Event, hint: str = "") -> None:
        self.name, self.status, self.event = name, status, event
        text = f"{name} is {status.value}: cannot {event.value}"
        super().__init__(f"{text} ({hint})" if hint else text)


#: Why a user-visible event is refused in a status, so the message helps instead of just refusing.
_HINTS: Mapping[tuple[Status, Event], str] = {
    (S.PROD, E.TEARDOWN): "it is serving prod; it is retired by a later promotion, or by `squals down`",
    (S.POSTPROD, E.TEARDOWN): "it is postprod, the rollback target; the next promotion retires it",
    (S.BLUE, E.TEARDOWN): "a promotion is in progress",
    (S.BAKED, E.TEARDOWN): "a promotion is in progress",
    (S.FAILED, E.PROMOTE_START): "its deploy failed; push a fix and deploy again",
    (S.PROD, E.PROMOTE_START): "it is already prod",
    (S.BLUE, E.PROMOTE_START): "a promotion is already in progress",
    (S.BAKED, E.PROMOTE_START): "a promotion is already in progress",
    (S.BLUE, E.DEPLOY): "a promotion is in progress",
    (S.BAKED, E.DEPLOY): "a promotion is in progress",
    (S.PROD, E.DEPLOY): "it is serving prod; deploy the change from a new pull request",
    (S.POSTPROD, E.DEPLOY): "it is the rollback target; deploy the change from a new pull request",
}


def step(name: str, status: Status, event: Event) -> Status:
    """The status after ``event``; raises :class:`InvalidTransition` for pairs outside the table."""
    try:
        return TRANSITIONS[(status, event)]
    except KeyError:
        if status is S.ABSENT and event is not E.DEPLOY:
            raise InvalidTransition(name, status, event, "it was never deployed") from None
        raise InvalidTransition(name, status, event, _HINTS.get((status, event), "")) from None


@dataclass(frozen=True, kw_only=True)
class Check:
    """One hook, exit test, in-flight test or KPI reading, kept on the environment for the report.

    ``no_data`` marks a reading that had nothing to judge: it is reported as "no data", never as passed.
    ``detail`` is one line; ``output`` the last lines a failed command or app printed, kept line by line.
    """

    kind: str  # "hook", "exit-test", "inflight-test", "kpi", "provider"
    stage: str  # hook stage, "exit", "bake", "provision"
    name: str
    ok: bool
    detail: str = ""
    duration: float = 0.0
    no_data: bool = False
    output: str = ""

    def to_doc(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "stage": self.stage,
            "name": self.name,
            "ok": self.ok,
            "detail": self.detail,
            "duration": round(self.duration, 3),
            **({"no_data": True} if self.no_data else {}),
            **({"output": self.output} if self.output else {}),
        }

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> Check:
        return cls(
            kind=str(doc["kind"]),
            stage=str(doc["stage"]),
            name=str(doc["name"]),
            ok=bool(doc["ok"]),
            detail=str(doc.get("detail", "")),
            duration=float(doc.get("duration", 0.0)),
            no_data=bool(doc.get("no_data", False)),
            output=str(doc.get("output", "")),
        )


@dataclass(frozen=True, kw_only=True)
class Env:
    """One environment as the lifecycle sees it; stored as the state document ``environments/<name>.json``."""

    name: str
    status: Status = S.ABSENT
    share: float = 0.0
    pr: int | None = None
    commit: str | None = None
    url: str | None = None
    handle: Mapping[str, Any] | None = None
    reason: str | None = None
    checks: tuple[Check, ...] = ()
    previous: Status | None = None  # the status before the last transition, for the report
    last_event: Event | None = None
    #: deployed from uncommitted files (``--allow-dirty``): the working tree as it was on top of ``commit``
    dirty: bool = False

    def to_doc(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status.value,
            "share": self.share,
            "pr": self.pr,
            "commit": self.commit,
            "url": self.url,
            "handle": dict(self.handle) if self.handle is not None else None,
            "reason": self.reason,
            "checks": [c.to_doc() for c in self.checks],
            "previous": self.previous.value if self.previous is not None else None,
            "last_event": self.last_event.value if self.last_event is not None else None,
            **({"dirty": True} if self.dirty else {}),
        }

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> Env:
        previous = doc.get("previous")
        last = doc.get("last_event")
        handle = doc.get("handle")
        return cls(
            name=str(doc["name"]),
            status=Status(doc.get("status", "absent")),
            share=float(doc.get("share", 0.0)),
            pr=int(doc["pr"]) if doc.get("pr") is not None else None,
            commit=doc.get("commit"),
            url=doc.get("url"),
            handle=dict(handle) if isinstance(handle, Mapping) else None,
            reason=doc.get("reason"),
            checks=tuple(Check.from_doc(c) for c in doc.get("checks", ())),
            previous=Status(previous) if previous else None,
            last_event=Event(last) if last else None,
            dirty=bool(doc.get("dirty", False)),
        )


Fleet = Mapping[str, Env]


class FleetInvariantError(SqualsError):
    """The fleet would break a rule that must always hold (two prods, shares not adding up)."""


def role(fleet: Fleet, *statuses: Status) -> Env | None:
    """The one environment in any of ``statuses`` (prod, postprod, the BLUE candidate), or ``None``."""
    found = [e for e in fleet.values() if e.status in statuses]
    return found[0] if found else None


def prod(fleet: Fleet) -> Env | None:
    return role(fleet, S.PROD)


def postprod(fleet: Fleet) -> Env | None:
    return role(fleet, S.POSTPROD)


def candidate(fleet: Fleet) -> Env | None:
    return role(fleet, S.BLUE, S.BAKED)


def weights(fleet: Fleet) -> dict[str, float]:
    """The Dealer's weights: every routed environment with its share (postprod stays registered at 0 %)."""
    return {e.name: e.share for e in sorted(fleet.values(), key=lambda e: e.name) if e.status in ROUTED}


def invariants(fleet: Fleet) -> list[str]:
    """Every broken rule, as sentences; empty when the fleet is sound."""
    problems: list[str] = []
    for label, statuses in (
        ("prod", (S.PROD,)),
        ("postprod", (S.POSTPROD,)),
        ("candidate", (S.BLUE, S.BAKED)),
    ):
        names = sorted(e.name for e in fleet.values() if e.status in statuses)
        if len(names) > 1:
            problems.append(f"more than one {label}: {', '.join(names)}")
    for env in fleet.values():
        if env.share < 0 or env.share > 100:
            problems.append(f"{env.name} has share {env.share} outside 0..100")
        if env.share > 0 and env.status not in (S.PROD, S.BLUE, S.BAKED):
            problems.append(f"{env.name} is {env.status.value} but has {env.share} % of the traffic")
        if env.status is S.RETIRED and env.handle is not None:
            problems.append(f"{env.name} is retired but still has a provider handle")
    total = sum(e.share for e in fleet.values())
    routed_live = any(e.status in (S.PROD, S.BLUE, S.BAKED) for e in fleet.values())
    if routed_live and abs(total - 100.0) > 1e-6:
        problems.append(f"traffic shares add up to {total} %, not 100 %")
    if not routed_live and total != 0:
        problems.append(f"{total} % of the traffic goes nowhere: no prod and no candidate")
    return problems


def apply(
    fleet: Fleet,
    event: Event,
    name: str,
    *,
    blue_share: float = 0.0,
    reason: str | None = None,
    checks: tuple[Check, ...] | None = None,
    **updates: Any,
) -> dict[str, Env]:
    """The fleet after ``event`` on environment ``name``: statuses, shares, and the fields in ``updates``.

    ``blue_share`` is used by :attr:`Event.PROMOTE_START` (a first promotion, with no prod, takes 100 %)
    and :attr:`Event.STEP` (the next step's share).
    ``checks`` replaces the environment's check list when given (a new deploy starts a fresh list).
    Raises :class:`InvalidTransition` or :class:`FleetInvariantError`; the input is never changed.
    """
    out: dict[str, Env] = dict(fleet)
    env = out.get(name) or Env(name=name)
    new_status = step(name, env.status, event)

    def moved(e: Env, status: Status, **extra: Any) -> Env:
        return replace(e, status=status, previous=e.status, last_event=event, **extra)

    green = prod(out)
    if event is E.PROMOTE_START:
        busy = candidate(out)
        if busy is not None:
            raise InvalidTransition(name, env.status, event, f"{busy.name} is already being promoted")
        if green is None:
            share = 100.0
        else:
            if not 0 < blue_share < 100:
                raise FleetInvariantError(f"blue share must be between 0 and 100 exclusive, not {blue_share}")
            share = blue_share
            out[green.name] = replace(green, share=100.0 - share)
        out[name] = moved(env, new_status, share=share)
    elif event is E.STEP:
        if green is None or not 0 < blue_share < 100:
            raise InvalidTransition(
                name,
                env.status,
                event,
                f"a step needs a GREEN and a share strictly between 0 and 100, not {blue_share:g}",
            )
        out[green.name] = replace(green, share=100.0 - blue_share)
        out[name] = moved(env, new_status, share=blue_share)
    elif event in (E.BAKE_BREACH, E.BAKE_INCONCLUSIVE, E.PROMOTE_HOOK_FAILED, E.ABORT):
        out[name] = moved(env, new_status, share=0.0)
        if green is not None:
            out[green.name] = replace(green, share=100.0)
    elif event is E.COMPLETE:
        if env.status is not S.BAKED:
            raise InvalidTransition(name, env.status, event, "only the baked candidate completes a promotion")
        old_post = postprod(out)
        if old_post is not None and old_post.name != name:
            out[old_post.name] = moved(old_post, S.RETIRED, share=0.0, handle=None)
        if green is not None:
            out[green.name] = moved(green, S.POSTPROD, share=0.0)
        out[name] = moved(env, new_status, share=100.0)
    elif event is E.ROLLBACK:
        post = postprod(out)
        if green is None or post is None:
            raise InvalidTransition(name, env.status, event, "rollback needs both a prod and a postprod")
        if candidate(out) is not None:
            raise InvalidTransition(
                name, env.status, event, "a promotion is in progress; it returns to GREEN itself"
            )
        out[green.name] = moved(green, S.POSTPROD, share=0.0)
        out[post.name] = moved(post, S.PROD, share=100.0)
    elif event in (E.TEARDOWN, E.DOWN):
        out[name] = moved(env, new_status, share=0.0, handle=None)
    else:
        out[name] = moved(env, new_status)
    if reason is not None or event in (E.DEPLOY, E.PROMOTE_START, E.ROLLBACK):
        out[name] = replace(out[name], reason=reason)
    if checks is not None:
        out[name] = replace(out[name], checks=checks)
    if updates:
        out[name] = replace(out[name], **updates)
    problems = invariants(out)
    if problems:
        raise FleetInvariantError(
            f"{event.value} on {name} would leave the fleet unsound: {'; '.join(problems)}"
        )
    return out


def down_all(fleet: Fleet) -> dict[str, Env]:
    """Every environment retired with no traffic: what ``squals down`` records after stopping everything."""
    out: dict[str, Env] = {}
    for env in fleet.values():
        if env.status is S.RETIRED:
            out[env.name] = env
        else:
            out[env.name] = replace(
                env, status=S.RETIRED, previous=env.status, last_event=E.DOWN, share=0.0, handle=None
            )
    return out


def table_markdown() -> str:
    """The transition table as markdown (one row per status), kept in ``docs/lifecycle.md`` by a test."""
    lines = ["| status | event → next status |", "| :-- | :-- |"]
    for status in Status:
        moves = [f"{e.value} → {TRANSITIONS[(status, e)].value}" for e in Event if (status, e) in TRANSITIONS]
        lines.append(f"| `{status.value}` | {'; '.join(moves)} |")
    return "\n".join(lines)
