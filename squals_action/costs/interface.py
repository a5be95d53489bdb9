"""What a cost report is, and how a shared resource's cost is split between the environments that use it.

A :class:`CostReport` holds one measure (US dollars from AWS Cost Explorer; CPU-seconds or memory-hours of
the local processes) over one period: the direct cost of each environment, the cost of each shared
resource, and each environment's traffic over the period. :func:`allocate` gives each environment the
share of every shared resource's cost that its share of the traffic is; when no environment has traffic
data, the shared cost stays *unallocated* (shown as such, never spread evenly as if measured). Every figure
adds up: direct + allocated + unallocated + untagged is the total.

An environment whose cost could not be measured has ``None``: "no data", never a zero.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from squals_action.errors import SqualsError
from squals_action.sorting import natural_key


class CostsError(SqualsError):
    """Costs could not be read (Cost Explorer refused, the provider has no cost source); one line."""


@dataclass(frozen=True, kw_only=True)
class Allocation:
    """Each environment's share of each shared resource (env -> resource -> amount), and what no traffic
    could be found for (resource -> amount)."""

    shares: Mapping[str, Mapping[str, float]]
    unallocated: Mapping[str, float]


def allocate(shared: Mapping[str, float], traffic: Mapping[str, int | None]) -> Allocation:
    """Split every shared cost in proportion to ``traffic`` (requests per environment over the period);
    environments without traffic data or with none get no share."""
    counted = {env: n for env, n in traffic.items() if n}
    total = sum(counted.values())
    if not total:
        return Allocation(shares={}, unallocated=dict(shared))
    shares = {
        env: {name: cost * requests / total for name, cost in shared.items()}
        for env, requests in sorted(counted.items())
    }
    return Allocation(shares=shares, unallocated={})


@dataclass(frozen=True, kw_only=True)
class CostReport:
    """One measure over one period (see the module docstring)."""

    measure: str
    period: str
    environments: Mapping[str, float | None]
    shared: Mapping[str, float] = field(default_factory=dict)
    traffic: Mapping[str, int | None] = field(default_factory=dict)
    #: cost tagged with the app but neither with an environment nor with a shared resource (AWS)
    untagged: float = 0.0
    notes: tuple[str, ...] = ()

    @property
    def allocation(self) -> Allocation:
        return allocate(self.shared, self.traffic)

    def total(self) -> float:
        """Everything measured: direct costs, shared costs and untagged cost."""
        direct = sum(v for v in self.environments.values() if v is not None)
        return direct + sum(self.shared.values()) + self.untagged

    def with_shares(self, env: str) -> float | None:
        """The environment's direct cost plus its share of the shared costs (``None``: no data)."""
        direct = self.environments.get(env)
        share = sum(self.allocation.shares.get(env, {}).values())
        if direct is None:
            return share if share else None
        return direct + share

    def names(self) -> list[str]:
        """Every environment with a cost or traffic, in natural order (pr-2 before pr-10)."""
        return sorted(set(self.environments) | set(self.traffic), key=natural_key)
