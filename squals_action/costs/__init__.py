"""What the islands and shared resources cost, and each environment's share of the shared costs.

:func:`measure_costs` picks the cost source of the provider (AWS Cost Explorer on ``aws``, psutil on
``local``); :mod:`squals_action.costs.interface` holds the report and the allocation by traffic.
"""

from __future__ import annotations

from collections.abc import Hashable
from pathlib import Path

from squals_action.costs.interface import Allocation, CostReport, CostsError, allocate
from squals_action.providers.interface import Provider


def measure_costs(provider: Provider, *, dealer_dir: Path, days: int = 30) -> tuple[CostReport, ...]:
    """The reports of ``provider``'s project: one per measure (``days`` is the AWS period; locally the
    period is since each process started)."""
    if provider.kind == "aws":
        from squals_action.costs.aws import aws_costs
        from squals_action.providers.aws import AwsProvider

        assert isinstance(provider, AwsProvider)
        return (aws_costs(provider, days),)
    if provider.kind == "local":
        from squals_action.costs.local import local_costs
        from squals_action.providers.local import LocalProvider

        assert isinstance(provider, LocalProvider)
        return local_costs(provider, dealer_dir)
    raise CostsError(f"no cost source for provider kind {provider.kind!r}")


def cost_scope(provider: Provider) -> Hashable:
    """What :func:`measure_costs` of ``provider`` reads: two providers with one scope get the same reports,
    so one measurement serves both (on aws the project, the region of its islands and front door, and
    whether it declares one; locally the state directory its islands and shared resources are recorded
    in; elsewhere the kind, which has no cost source: the same refusal). Never the provider's ``id()``:
    Python reuses it once a provider opened for one step is released."""
    if provider.kind == "aws":
        from squals_action.providers.aws import AwsProvider

        assert isinstance(provider, AwsProvider)
        return ("aws", provider.project, provider.region(), provider.config.front_door is not None)
    if provider.kind == "local":
        from squals_action.providers.local import LocalProvider

        assert isinstance(provider, LocalProvider)
        return ("local", provider.root.resolve())
    return (provider.kind,)


__all__ = ["Allocation", "CostReport", "CostsError", "allocate", "cost_scope", "measure_costs"]
