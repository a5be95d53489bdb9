"""Costs measured where each environment is: with the provider it was deployed with, not the working file's.

An island deployed from a commit whose squals file says ``region: us-east-1`` is in us-east-1 even when the
working file now says eu-west-1: its cost and traffic are read with the provider of its commit. The islands
are grouped by what their providers measure (:func:`~squals_action.costs.cost_scope`), one measurement per
group. The *home* group, the first placed island's that could be measured (prod's first), gives the shared
resources, the untagged cost and every island no record places; the working file's provider measures only
when no island is placed. Every other placed island takes its own figures from its group's reports; one
whose provider cannot be opened or measured is "no data" with the reason, never a zero.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Hashable, Mapping
from contextlib import AbstractContextManager
from pathlib import Path

from squals_action.costs.interface import CostReport
from squals_action.errors import SqualsError
from squals_action.providers.interface import Provider

#: Opens the provider an island was deployed with, for the time of its measurement.
Opener = Callable[[], AbstractContextManager[Provider]]


def measure_placed(
    working: Opener, islands: Mapping[str, Opener], *, dealer_dir: Path, days: int
) -> tuple[CostReport, ...]:
    """The home group's reports with every island of ``islands`` (the home's first) figured by its own
    provider (see the module docstring); the working file's provider's failure is the command's."""
    from squals_action.costs import cost_scope, measure_costs

    measured: dict[Hashable, tuple[CostReport, ...] | str] = {}
    results: dict[str, tuple[CostReport, ...] | str] = {}
    for island, opener in islands.items():
        try:
            with opener() as provider:
                scope = cost_scope(provider)
                if scope not in measured:
                    try:
                        measured[scope] = measure_costs(provider, dealer_dir=dealer_dir, days=days)
                    except SqualsError as exc:  # the answer for every island of that group
                        measured[scope] = exc.one_line()
        except SqualsError as exc:  # its commit's squals file no longer loads...
            results[island] = exc.one_line()
            continue
        results[island] = measured[scope]
    home = next((r for r in results.values() if not isinstance(r, str)), None)
    if home is None:
        with working() as provider:
            home = measure_costs(provider, dealer_dir=dealer_dir, days=days)
    elsewhere = {island: r for island, r in results.items() if r is not home}
    return tuple(_placed(report, elsewhere) for report in home)


def _placed(home: CostReport, owners: Mapping[str, tuple[CostReport, ...] | str]) -> CostReport:
    """``home`` with each island of ``owners`` (those measured elsewhere) figured from its own reports: the
    one of the same measure, or "no data" saying why."""
    environments = {e: v for e, v in home.environments.items() if e not in owners}
    traffic = {e: v for e, v in home.traffic.items() if e not in owners}
    notes = list(home.notes)
    for island, reports in owners.items():
        found = [r for r in reports if r.measure == home.measure] if not isinstance(reports, str) else []
        if not found:
            why = reports if isinstance(reports, str) else f"where it is, costs are not in {home.measure}"
            environments[island] = None
            notes.append(f"{island}: no data: {why}")
            continue
        own = found[0]
        if island in own.environments:
            environments[island] = own.environments[island]
        if island in own.traffic:
            traffic[island] = own.traffic[island]
        notes.extend(f"{island}: {note}" for note in own.notes if note not in home.notes)
    return dataclasses.replace(home, environments=environments, traffic=traffic, notes=tuple(notes))
