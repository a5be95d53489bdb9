"""The environment and experiment documents of the state branch, typed, with their JSON form.

``extra`` keeps fields this version does not know about, so an older squals never drops what a newer one
wrote; past their identity, fields are keyword-only. The lock document is in
:mod:`squals_action.state.locks`, beside the refusal it causes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import KW_ONLY, dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any

from squals_action.state.clock import format_time, parse_optional_time
from squals_action.state.layout import ENVIRONMENTS_DIR, EXPERIMENTS_DIR, SCHEMA_VERSION, JsonObject


def _tail(extra: Mapping[str, Any], **times: datetime | None) -> JsonObject:
    """The optional end every document shares: its times, those that are set, and the ``extra`` it keeps."""
    doc: JsonObject = {key: format_time(value) for key, value in times.items() if value}
    if extra:
        doc["extra"] = dict(extra)
    return doc


@dataclass(frozen=True)
class EnvironmentState:
    """What runs in one environment (``pr-12``, ``prod``, ``postprod``, a variant island).

    ``traffic_share`` is in percent (10 % is ``10.0``); ``handle`` is whatever the provider needs to find the
    environment again (stack name, process id, port); ``extra`` keeps fields this version does not know about.
    """

    name: str
    status: str
    _: KW_ONLY
    version: str | None = None
    commit: str | None = None
    provider: str | None = None
    handle: Mapping[str, Any] = field(default_factory=dict)
    url: str | None = None
    traffic_share: float = 0.0
    pr: int | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def path(self) -> str:
        return f"{ENVIRONMENTS_DIR}/{self.name}.json"

    def to_json(self) -> JsonObject:
        doc: JsonObject = {"schema_version": SCHEMA_VERSION, "name": self.name, "status": self.status}
        for key in ("version", "commit", "provider", "url", "pr"):
            value = getattr(self, key)
            if value is not None:
                doc[key] = value
        doc["traffic_share"] = float(self.traffic_share)
        if self.handle:
            doc["handle"] = dict(self.handle)
        doc.update(_tail(self.extra, created_at=self.created_at, updated_at=self.updated_at))
        return doc

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> EnvironmentState:
        return cls(
            name=doc["name"],
            status=doc["status"],
            version=doc.get("version"),
            commit=doc.get("commit"),
            provider=doc.get("provider"),
            handle=MappingProxyType(dict(doc.get("handle") or {})),
            url=doc.get("url"),
            traffic_share=float(doc.get("traffic_share", 0.0)),
            pr=doc.get("pr"),
            created_at=parse_optional_time(doc.get("created_at")),
            updated_at=parse_optional_time(doc.get("updated_at")),
            extra=MappingProxyType(dict(doc.get("extra") or {})),
        )


@dataclass(frozen=True)
class ExperimentState:
    """How one experiment stands: its spec digest, variants with their splits and observations, the decision.

    ``observations`` maps variant -> metric -> value (as the experiments concern last measured them);
    ``decision`` is ``None`` while the experiment runs, then e.g. ``{"outcome": "promote", "winner": "b"}``.
    """

    id: str
    spec_digest: str
    variants: tuple[str, ...]
    _: KW_ONLY
    status: str = "running"
    split: Mapping[str, float] = field(default_factory=dict)
    observations: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    decision: Mapping[str, Any] | None = None
    started_at: datetime | None = None
    updated_at: datetime | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def path(self) -> str:
        return f"{EXPERIMENTS_DIR}/{self.id}.json"

    def to_json(self) -> JsonObject:
        doc: JsonObject = {
            "schema_version": SCHEMA_VERSION,
            "id": self.id,
            "spec_digest": self.spec_digest,
            "variants": list(self.variants),
            "status": self.status,
            "split": {k: float(v) for k, v in self.split.items()},
            "observations": {v: {m: x for m, x in ms.items()} for v, ms in self.observations.items()},
        }
        if self.decision is not None:
            doc["decision"] = dict(self.decision)
        doc.update(_tail(self.extra, started_at=self.started_at, updated_at=self.updated_at))
        return doc

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> ExperimentState:
        decision = doc.get("decision")
        return cls(
            id=doc["id"],
            spec_digest=doc["spec_digest"],
            variants=tuple(doc["variants"]),
            status=doc.get("status", "running"),
            split=MappingProxyType({k: float(v) for k, v in (doc.get("split") or {}).items()}),
            observations=MappingProxyType(
                {v: MappingProxyType(dict(ms)) for v, ms in (doc.get("observations") or {}).items()}
            ),
            decision=MappingProxyType(dict(decision)) if isinstance(decision, Mapping) else None,
            started_at=parse_optional_time(doc.get("started_at")),
            updated_at=parse_optional_time(doc.get("updated_at")),
            extra=MappingProxyType(dict(doc.get("extra") or {})),
        )
