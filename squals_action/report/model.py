"""What one run has to say: the data behind the PR comment, the job summary, the check run and the outputs.

The core (validation, gates, lifecycle, experiments) fills a :class:`Report`; the composers render it. Text in
it (messages, log tails, names) may come from users and is escaped by the renderers, never here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

Status = Literal["success", "failure", "skipped", "running", "refused", "locked", "neutral"]
STATUSES: tuple[Status, ...] = ("success", "failure", "skipped", "running", "refused", "locked", "neutral")
Level = Literal["failure", "warning", "notice"]


@dataclass(frozen=True)
class Problem:
    """One finding to annotate: a validation error at ``file:line:col``, a failing gate, a vulnerability."""

    message: str
    file: str | None = None
    line: int | None = None
    col: int | None = None
    level: Level = "failure"
    title: str | None = None


@dataclass(frozen=True)
class Step:
    """One row of the status table: validation, a gate, an exit test. ``detail`` is a log tail or message."""

    name: str
    status: Status
    duration: float | None = None
    detail: str = ""
    kind: str = ""
    url: str | None = None  # a page showing this step (a check run of ``gates.checks``)


@dataclass(frozen=True)
class Report:
    """The outcome of one intent. Empty fields mean "this run did not touch that part" (see :meth:`over`)."""

    intent: str
    status: Status
    headline: str
    environment: str | None = None
    url: str | None = None
    validation: Step | None = None
    gates: tuple[Step, ...] = ()
    exit_tests: tuple[Step, ...] = ()
    rollout: str | None = None
    experiment: str | None = None
    problems: tuple[Problem, ...] = ()
    notes: tuple[str, ...] = ()
    lock_holder: str | None = None
    outputs: Mapping[str, str] = field(default_factory=dict)
    #: Extra collapsed sections: (plain-text title, markdown body built by our own code with escaping).
    sections: tuple[tuple[str, str], ...] = ()

    def over(self, previous: Report | None) -> Report:
        """This report with the parts it left empty taken from ``previous``.

        A promote run knows nothing of the gates; the PR's comment should still show the gates of the preview
        that built the island, so the sticky comment merges each run over the last one.
        """
        if previous is None:
            return self
        gone = self.intent == "teardown"  # the island is gone: its URL and tests are history
        return replace(
            self,
            environment=self.environment or previous.environment,
            url=self.url or (None if gone else previous.url),
            validation=self.validation or previous.validation,
            gates=self.gates or previous.gates,
            exit_tests=self.exit_tests or (() if gone else previous.exit_tests),
            rollout=self.rollout or previous.rollout,
            experiment=self.experiment or previous.experiment,
        )

    def to_json(self) -> dict[str, Any]:
        """A compact JSON form (no problems, outputs or sections: those belong to one run only)."""
        data = asdict(self)
        data.pop("problems")
        data.pop("outputs")
        data.pop("sections")
        for step_list in ("gates", "exit_tests"):
            for step in data[step_list]:
                step["detail"] = step["detail"][-2000:]
        if data["validation"]:
            data["validation"]["detail"] = data["validation"]["detail"][-2000:]
        return data

    @classmethod
    def from_json(cls, data: Any) -> Report | None:
        """Rebuild a report from :meth:`to_json`; anything not shaped right gives None (it is a hint)."""
        try:
            if not isinstance(data, Mapping):
                return None
            status = data["status"]
            if status not in STATUSES:
                return None
            return cls(
                intent=str(data["intent"]),
                status=status,
                headline=str(data["headline"]),
                environment=_opt_str(data.get("environment")),
                url=_opt_str(data.get("url")),
                validation=_step(data.get("validation")),
                gates=_steps(data.get("gates")),
                exit_tests=_steps(data.get("exit_tests")),
                rollout=_opt_str(data.get("rollout")),
                experiment=_opt_str(data.get("experiment")),
                notes=tuple(str(n) for n in data.get("notes") or ()),
                lock_holder=_opt_str(data.get("lock_holder")),
            )
        except (KeyError, TypeError, ValueError):
            return None

    def dumps(self) -> str:
        return json.dumps(self.to_json(), separators=(",", ":"), sort_keys=True)


def _opt_str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _steps(value: Any) -> tuple[Step, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(s for s in (_step(x) for x in value) if s is not None)


def _step(value: Any) -> Step | None:
    if not isinstance(value, Mapping) or value.get("status") not in STATUSES:
        return None
    duration = value.get("duration")
    return Step(
        name=str(value.get("name", "")),
        status=value["status"],
        duration=float(duration) if isinstance(duration, int | float) else None,
        detail=str(value.get("detail", "")),
        kind=str(value.get("kind", "")),
        url=_opt_str(value.get("url")),
    )
