"""Costs on ``aws``: Cost Explorer grouped by the tags squals puts on every stack, traffic from CloudWatch.

One ``GetCostAndUsage`` (paged) over the period, filtered on ``squals:app = <name>`` and grouped by the tags
``squals:environment`` and ``squals:shared``: a group with an environment is that island's direct cost, one
with a shared resource that resource's cost, one with neither is *untagged* (cost of the app's resources that
carry no squals tag of their own). Cost Explorer only sees tags activated as cost allocation tags in the
billing console (once per account; see docs/providers.md), and it answers from us-east-1 whatever the
stacks' region.

Traffic is each island's ``RequestCount`` on the front door's load balancer over the same period (CloudWatch,
one ``GetMetricData`` round); without a front door there is no traffic data and the shared costs stay
unallocated.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from squals_action import aws_api
from squals_action.costs.interface import CostReport, CostsError
from squals_action.providers.aws import AwsProvider
from squals_action.providers.aws_stacks import TAG_APP, TAG_ENV, TAG_SHARED

#: Cost Explorer's one endpoint.
CE_REGION = "us-east-1"
METRIC = "UnblendedCost"
MAX_PAGES = 100


def _tag_value(key: str) -> tuple[str, str]:
    """``squals:environment$pr-1`` -> (``squals:environment``, ``pr-1``); an untagged group has "" after $."""
    tag, _, value = key.partition("$")
    return tag, value


def cost_and_usage(project: str, start: date, end: date) -> tuple[dict[tuple[str, str], float], str]:
    """(environment, shared) -> amount over ``[start, end)``, and the currency."""
    ce = aws_api.client("ce", CE_REGION)
    request: dict[str, Any] = {
        "TimePeriod": {"Start": start.isoformat(), "End": end.isoformat()},
        "Granularity": "DAILY",
        "Metrics": [METRIC],
        "Filter": {"Tags": {"Key": TAG_APP, "Values": [project], "MatchOptions": ["EQUALS"]}},
        "GroupBy": [{"Type": "TAG", "Key": TAG_ENV}, {"Type": "TAG", "Key": TAG_SHARED}],
    }
    amounts: dict[tuple[str, str], float] = {}
    unit = "USD"
    for _ in range(MAX_PAGES):
        page = aws_api.call(CostsError, "Cost Explorer GetCostAndUsage", ce.get_cost_and_usage, **request)
        for period in page.get("ResultsByTime", []):
            for group in period.get("Groups", []):
                tags = dict(_tag_value(k) for k in group.get("Keys", []))
                metric = group.get("Metrics", {}).get(METRIC, {})
                key = (tags.get(TAG_ENV, ""), tags.get(TAG_SHARED, ""))
                amounts[key] = amounts.get(key, 0.0) + float(metric.get("Amount", 0.0))
                unit = str(metric.get("Unit", unit))
        token = page.get("NextPageToken")
        if not token:
            return amounts, unit
        request["NextPageToken"] = token
    raise CostsError(f"Cost Explorer GetCostAndUsage: still paging after {MAX_PAGES} pages")


def island_traffic(provider: AwsProvider, start: date, end: date) -> tuple[dict[str, int | None], str | None]:
    """Requests per island over ``[start, end)`` on the front door; a note when there is no data."""
    from squals_action.providers.aws_front_door import FrontDoorStack
    from squals_action.providers.cloudwatch import CloudWatch
    from squals_action.providers.cloudwatch_window import Window

    groups = {
        h.env: str(h.data["target_group_arn"]) for h in provider.list() if h.data.get("target_group_arn")
    }
    if provider.config.front_door is None:
        return {}, "no traffic data: the squals file declares no front door"
    door = FrontDoorStack(provider).get()
    if door is None or not groups:
        return {}, "no traffic data: no front door or no island with a target group"
    window = Window(_midnight(start), _midnight(end))
    figures = CloudWatch(provider.region()).target_group_kpis(
        groups, door.listener_arn, window, kpis=("activations",)
    )
    traffic: dict[str, int | None] = {}
    for env, figure in figures.items():
        value = figure.get("activations")
        traffic[env] = int(value) if value is not None else None
    return traffic, None


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)


def aws_costs(provider: AwsProvider, days: int, *, today: date | None = None) -> CostReport:
    """The app's cost over the last ``days`` days (today included, as far as Cost Explorer has it)."""
    end = (today or datetime.now(UTC).date()) + timedelta(days=1)
    start = end - timedelta(days=days)
    amounts, unit = cost_and_usage(provider.project, start, end)
    environments: dict[str, float | None] = {}
    shared: dict[str, float] = {}
    untagged = 0.0
    for (env, resource), amount in amounts.items():
        if env:
            environments[env] = (environments.get(env) or 0.0) + amount
        elif resource:
            shared[resource] = shared.get(resource, 0.0) + amount
        else:
            untagged += amount
    traffic, note = island_traffic(provider, start, end)
    notes = [note] if note else []
    if not amounts:
        notes.append(
            "Cost Explorer has no cost for this app: are squals:app, squals:environment and squals:shared "
            "activated as cost allocation tags?"
        )
    return CostReport(
        measure=unit,
        period=f"{start.isoformat()} to {(end - timedelta(days=1)).isoformat()}",
        environments=environments,
        shared=shared,
        traffic=traffic,
        untagged=untagged,
        notes=tuple(notes),
    )
