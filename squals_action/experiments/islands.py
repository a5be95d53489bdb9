"""The experiment's running parts: one island per variant and the splitter in front of them
(:mod:`~squals_action.experiments.splitters`).

A start makes the islands ready one by one (:mod:`~squals_action.experiments.ready`) before the splitter
opens; they are stopped together at the end, whatever the end was. Stopping never raises (the record of
the end goes on): it logs and returns what could not be destroyed; only a stop by hand
(:func:`stop_recorded`) refuses to be recorded until everything was given back.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from squals_action.errors import SqualsError, one_line
from squals_action.experiments.interface import Decision, ExperimentError
from squals_action.experiments.records import handles_of, island_names_of
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
    provider: Provider,
    handles: Iterable[EnvironmentHandle],
    split: Split,
    log: Log,
    *,
    held: Mapping[str, str],
    restore: bool = True,
) -> list[str]:
    """Release the splitter (``restore``: traffic back as before the start), then destroy the islands but
    those a live record holds (``held``: island -> who, :func:`~.records.holders`; an island that became
    prod is the lifecycle's now); failures are logged, not raised (the record goes on). Returns what was
    not stopped, with why."""
    kept: list[str] = []
    try:
        split.release(restore=restore, log=log)
    except (SqualsError, OSError) as exc:
        log(f"the splitter was not released: {one_line(exc)}")
        kept.append(f"its splitter ({one_line(exc)})")
    for handle in list(handles):
        if handle.env in held:
            log(f"{handle.env}: kept, {held[handle.env]} holds it")
            continue
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


def stop_recorded(
    provider: Provider, doc: ExperimentState, split: Split, log: Log, *, held: Mapping[str, str]
) -> None:
    """Stop what ``doc`` recorded: its splitter given back, then its islands (found by the names its claim
    recorded when the start died before it recorded them), never one a live record holds (``held``). What
    was kept raises :class:`ExperimentError`: nothing may be recorded as stopped then, and the document
    keeps what the next stop needs to finish the job."""
    handles = handles_of(doc)
    if not handles:
        found = (provider.get(name) for name in island_names_of(doc).values())
        handles = [h for h in found if h is not None]
    kept = stop_all(provider, handles, split, log, held=held)
    if kept:
        raise ExperimentError(
            f"experiment {doc.id} is not stopped: {', '.join(kept)} could not be stopped; "
            f"run `squals experiment stop {doc.id}` again"
        )
