"""The experiment's running parts: one island per variant and the splitter in front of them
(:mod:`~squals_action.experiments.splitters`).

A start makes the islands ready one by one (:mod:`~squals_action.experiments.ready`) before the splitter
opens; they are stopped together at the end, whatever the end was. Stopping never raises (the record of
the end goes on): it logs and returns what could not be destroyed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from squals_action.errors import SqualsError, one_line
from squals_action.experiments.interface import Decision
from squals_action.experiments.splitters import Split
from squals_action.providers.interface import EnvironmentHandle, Provider
from squals_action.state.interface import ExperimentState

Log = Callable[[str], None]


def exclude_newly(split: Split, doc: ExperimentState, decision: Decision, log: Log) -> None:
    """No more traffic for variants a guardrail excluded in this decision (users first: before the record)."""
    previously = {str(x) for x in doc.extra.get("excluded", [])}
    newly = [x for x in decision.excluded if x not in previously]
    if newly:
        weights = {v: (0.0 if v in decision.excluded else float(doc.split.get(v, 0.0))) for v in doc.variants}
        log(f"guardrail: no more traffic for {', '.join(newly)}")
        split.set_weights(weights, log)


def stop_all(
    provider: Provider, handles: Iterable[EnvironmentHandle], split: Split, log: Log, *, restore: bool = True
) -> list[str]:
    """Release the splitter (``restore``: traffic back as before the start), then destroy the islands;
    failures are logged, not raised (the record goes on). Returns what was not stopped, with why."""
    kept: list[str] = []
    try:
        split.release(restore=restore, log=log)
    except (SqualsError, OSError) as exc:
        log(f"the splitter was not released: {one_line(exc)}")
        kept.append(f"its splitter ({one_line(exc)})")
    for handle in list(handles):
        try:
            outcome = provider.destroy(handle)
        except (SqualsError, OSError) as exc:
            log(f"{handle.env}: not destroyed: {one_line(exc)}")
            kept.append(f"{handle.env} ({one_line(exc)})")
            continue
        log(f"{handle.env}: {'destroyed' if outcome.ok else outcome.detail}")
        if not outcome.ok:
            kept.append(f"{handle.env} ({outcome.detail})")
    return kept
