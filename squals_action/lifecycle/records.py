"""The lifecycle's environments as state documents: ``environments/<name>.json`` into an ``Env`` and back.

The state store keeps documents other concerns own too (an experiment's islands); :func:`env_from_state`
returns ``None`` for those, so the lifecycle's fleet only ever holds environments its machine knows.
"""

from __future__ import annotations

from typing import Any

from squals_action.lifecycle.machine import Check, Env, Event, Status
from squals_action.state.interface import Documents, EnvironmentState, utc_now


def env_from_state(doc: EnvironmentState) -> Env | None:
    """The lifecycle's view of a state document; ``None`` for environments other concerns own."""
    try:
        status = Status(doc.status)
    except ValueError:
        return None
    extra = dict(doc.extra)
    previous, last = extra.get("previous"), extra.get("last_event")
    return Env(
        name=doc.name,
        status=status,
        share=doc.traffic_share,
        pr=doc.pr,
        commit=doc.commit,
        url=doc.url,
        handle=dict(doc.handle) if doc.handle else None,
        reason=extra.get("reason"),
        checks=tuple(Check.from_doc(c) for c in extra.get("checks", ())),
        previous=Status(previous) if previous else None,
        last_event=Event(last) if last else None,
        dirty=bool(extra.get("dirty", False)),
    )


def state_from_env(env: Env, old: EnvironmentState | None, provider_kind: str) -> EnvironmentState:
    """The document that records ``env``, keeping what ``old`` holds beyond the lifecycle's fields."""
    now = utc_now()
    extra: dict[str, Any] = dict(old.extra) if old is not None else {}
    extra.update(
        {
            "reason": env.reason,
            "checks": [c.to_doc() for c in env.checks],
            "previous": env.previous.value if env.previous else None,
            "last_event": env.last_event.value if env.last_event else None,
        }
    )
    if env.dirty:  # deployed from uncommitted files: said only where true
        extra["dirty"] = True
    else:
        extra.pop("dirty", None)
    return EnvironmentState(
        name=env.name,
        status=env.status.value,
        version=f"{env.commit[:12]}+dirty" if env.commit and env.dirty else None,
        commit=env.commit,
        provider=provider_kind,
        handle=dict(env.handle) if env.handle else {},
        url=env.url,
        traffic_share=env.share,
        pr=env.pr,
        created_at=old.created_at if old is not None and old.created_at else now,
        updated_at=now,
        extra=extra,
    )


def fleet_of(docs: Documents | Any) -> dict[str, Env]:
    """Every lifecycle environment in a snapshot or working copy."""
    fleet: dict[str, Env] = {}
    for name, doc in docs.environments().items():
        env = env_from_state(doc)
        if env is not None:
            fleet[name] = env
    return fleet
