"""What one run has to say: the data behind the PR comment, the job summary, the check run and the outputs.

The core (validation, gates, lifecycle, experiments) fills a :class:`Report`; the composers render it. Text in
it (messages, log tails, names) may come from users and is escaped by the renderers, never here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

Status = Literal["success", "failure", "skipped", "running", "refused", "locked", "neutral"]
STATUSES: tuple[Status, ...] = ("success", "failure", "skipped", "running", "refused", "locked", "neutral")
Level = Literal["failure", "warning", "notice"]
#: Bounds on a report rebuilt from JSON (the hidden copy in a PR comment, which is input like any other):
#: rows per table, characters per text, and the longest duration believed (a year).
MAX_ROWS = 200
MAX_NOTES = 50
MAX_TEXT = 4000
MAX_DURATION = 366 * 24 * 3600.0
_REPORT_KEYS = frozenset(
    {
        "intent",
        "status",
        "headline",
        "environment",
        "url",
        "validation",
        "gates",
        "exit_tests",
        "rollout",
        "experiment",
        "notes",
        "lock_holder",
    }
)
_STEP_KEYS = frozenset({"name", "status", "duration", "detail", "kind", "url"})


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
        """Rebuild a report from :meth:`to_json`, checked like untrusted input: known keys only, statuses
        from :data:`STATUSES`, texts and lists bounded, durations finite. Anything else gives None."""
        try:
            if not isinstance(data, Mapping) or not _REPORT_KEYS.issuperset(data):
                return None
            status = data["status"]
            notes = data.get("notes") or []
            if status not in STATUSES or not isinstance(notes, list) or len(notes) > MAX_NOTES:
                return None
            return cls(
                intent=_text(data["intent"]),
                status=status,
                headline=_text(data["headline"]),
                environment=_opt_text(data.get("environment")),
                url=_opt_text(data.get("url")),
                validation=None if data.get("validation") is None else _step(data["validation"]),
                gates=_steps(data.get("gates")),
                exit_tests=_steps(data.get("exit_tests")),
                rollout=_opt_text(data.get("rollout")),
                experiment=_opt_text(data.get("experiment")),
                notes=tuple(_text(n) for n in notes),
                lock_holder=_opt_text(data.get("lock_holder")),
            )
        except (KeyError, TypeError, ValueError, OverflowError):
            return None


def _text(value: Any) -> str:
    if not isinstance(value, str) or len(value) > MAX_TEXT:
        raise ValueError("not a bounded string")
    return value


def _opt_text(value: Any) -> str | None:
    return None if value is None else _text(value)


def _steps(value: Any) -> tuple[Step, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) > MAX_ROWS:
        raise ValueError("not a bounded list of steps")
    return tuple(_step(x) for x in value)


def _step(value: Any) -> Step:
    if not isinstance(value, Mapping) or not _STEP_KEYS.issuperset(value):
        raise ValueError("not a step")
    if value.get("status") not in STATUSES:
        raise ValueError("not a step")
    duration = value.get("duration")
    if duration is not None and (
        isinstance(duration, bool)
        or not isinstance(duration, int | float)
        or not math.isfinite(duration)
        or not 0 <= duration <= MAX_DURATION
    ):
        raise ValueError("not a duration")
    return Step(
        name=_text(value.get("name", "")),
        status=value["status"],
        duration=None if duration is None else float(duration),
        detail=_text(value.get("detail", "")),
        kind=_text(value.get("kind", "")),
        url=_opt_text(value.get("url")),
    )
