"""Shared costs split by traffic: proportional, never invented where traffic is unknown, always adding up."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from squals_action.costs import CostReport, allocate

names = st.sampled_from(["pr-1", "pr-2", "pr-10", "prod-x", "exp-a"])
amounts = st.floats(min_value=0, max_value=1e6, allow_nan=False)


def test_each_environment_pays_its_share_of_the_requests() -> None:
    split = allocate({"cache": 8.0, "db": 4.0}, {"pr-1": 300, "pr-2": 100, "pr-3": None, "pr-4": 0})
    assert split.shares == {"pr-1": {"cache": 6.0, "db": 3.0}, "pr-2": {"cache": 2.0, "db": 1.0}}
    assert split.unallocated == {}


def test_without_traffic_data_the_shared_cost_stays_unallocated() -> None:
    split = allocate({"cache": 8.0}, {"pr-1": None, "pr-2": 0})
    assert (split.shares, split.unallocated) == ({}, {"cache": 8.0})


@given(
    environments=st.dictionaries(names, st.one_of(st.none(), amounts), max_size=5),
    shared=st.dictionaries(st.sampled_from(["cache", "db", "queue"]), amounts, max_size=3),
    traffic=st.dictionaries(names, st.one_of(st.none(), st.integers(0, 10**9)), max_size=5),
    untagged=amounts,
)
def test_the_parts_add_up_to_the_total(
    environments: dict[str, float | None],
    shared: dict[str, float],
    traffic: dict[str, int | None],
    untagged: float,
) -> None:
    report = CostReport(
        measure="USD",
        period="p",
        environments=environments,
        shared=shared,
        traffic=traffic,
        untagged=untagged,
    )
    parts = sum(report.with_shares(env) or 0.0 for env in report.names())
    parts += sum(report.allocation.unallocated.values()) + untagged
    assert math.isclose(parts, report.total(), rel_tol=1e-9, abs_tol=1e-6)


def test_an_environment_without_data_is_no_data_not_zero() -> None:
    report = CostReport(measure="CPU-seconds", period="p", environments={"pr-1": None, "pr-2": 2.0})
    assert report.with_shares("pr-1") is None and report.with_shares("pr-2") == 2.0
    assert report.names() == ["pr-1", "pr-2"]
    assert CostReport(measure="USD", period="p", environments={"pr-10": 1.0, "pr-2": 1.0}).names() == [
        "pr-2",
        "pr-10",
    ]
