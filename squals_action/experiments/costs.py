"""Each running experiment's variants' island costs so far, measured where its islands are.

An experiment's islands were made with the provider bound to its start commit's provider section (on aws its
region and front door), so they are measured with that provider (:meth:`.ExperimentEngine.provider_of`), not
the one of the squals file the command was opened with; experiments whose providers read the same
(:func:`~squals_action.costs.cost_scope`) share one measurement. Shown per variant (report.costs) by the
action's tick and ``squals experiment status --format markdown``.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from squals_action.errors import SqualsError
from squals_action.state.interface import ExperimentState

if TYPE_CHECKING:
    from squals_action.costs import CostReport
    from squals_action.experiments.engine import ExperimentEngine


def running_costs(
    engine: ExperimentEngine, docs: Iterable[ExperimentState], dealer_dir: Path
) -> dict[str, tuple[CostReport, ...] | str]:
    """Per running experiment of ``docs``, the cost reports of the provider its islands were made with, or
    why there are none (one line: its start file no longer loads, or its cost source cannot answer), which
    :func:`~squals_action.report.costs.variant_cells` shows as "no data", never as a figure."""
    from squals_action.costs import cost_scope, measure_costs

    measured: dict[Hashable, tuple[CostReport, ...] | str] = {}
    costs: dict[str, tuple[CostReport, ...] | str] = {}
    for doc in (d for d in docs if d.status == "running"):
        try:
            with engine.provider_of(doc) as provider:
                scope = cost_scope(provider)
                if scope not in measured:
                    try:
                        measured[scope] = measure_costs(provider, dealer_dir=dealer_dir, days=30)
                    except SqualsError as exc:  # the answer for every experiment of that scope
                        measured[scope] = exc.one_line()
                costs[doc.id] = measured[scope]
        except SqualsError as exc:  # its start commit's file no longer loads, or names no region
            costs[doc.id] = exc.one_line()
    return costs
