"""Writing what an app and a load balancer would publish to CloudWatch (moto's server, through
``AWS_ENDPOINT_URL`` as the ``aws_cloud`` fixture sets it), for the experiment tests on AWS.

moto compares dimensions in the order they were written, so they are written sorted by name, the order
squals asks in (CloudWatch itself ignores the order).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from squals_action.providers.cloudwatch_figures import load_balancer_dimension, target_group_dimension
from tests.support.aws import REGION, aws_client

#: A listener ARN in the tests' region (its load balancer names the ALB metrics' dimension).
LISTENER_ARN = (
    f"arn:aws:elasticloadbalancing:{REGION}:123456789012:listener/app/shop/50dc6c495c0c9188/f2f7dc8efc522ab2"
)


def tg_arn(name: str) -> str:
    """A target group ARN named after ``name`` (for figures only: no such group needs to exist)."""
    return f"arn:aws:elasticloadbalancing:{REGION}:123456789012:targetgroup/tg-{name}/73e2d6bc24d8a067"


def _client() -> Any:
    """CloudWatch on the moto ``AWS_ENDPOINT_URL`` names (the ``aws_cloud`` fixture sets it)."""
    return aws_client("cloudwatch", os.environ["AWS_ENDPOINT_URL"])


def put_custom(
    metric: str, dimensions: Mapping[str, str], value: float, *, minutes_ago: float, namespace: str = "Shop"
) -> None:
    """One datum of a custom metric the app emits (``PutMetricData``), ``minutes_ago`` in the past."""
    _client().put_metric_data(
        Namespace=namespace,
        MetricData=[
            {
                "MetricName": metric,
                "Dimensions": [{"Name": k, "Value": v} for k, v in sorted(dimensions.items())],
                "Timestamp": datetime.now(UTC) - timedelta(minutes=minutes_ago),
                "Value": value,
            }
        ],
    )


def publish_green_wins(islands: Mapping[str, str]) -> None:
    """What the shop's app publishes when green converts 20 % of its shoppers and control 10 %, so that an
    experiment reading it decides for green; ``islands`` maps each variant to its island (the ``Environment``
    dimension)."""
    for variant, shoppers, checkouts in (("control", 3000, 300), ("green", 2000, 400)):
        dims = {"Environment": islands[variant], "Variant": variant}
        put_custom("Shoppers", dims, shoppers, minutes_ago=6)
        put_custom("Checkouts", dims, checkouts, minutes_ago=5)


def put_alb(
    target_group_arn: str,
    metric: str,
    value: float,
    *,
    minutes_ago: float,
    listener_arn: str = LISTENER_ARN,
) -> None:
    """One datum of what the load balancer publishes for a target group (``AWS/ApplicationELB``)."""
    put_custom(
        metric,
        {
            "LoadBalancer": load_balancer_dimension(listener_arn),
            "TargetGroup": target_group_dimension(target_group_arn),
        },
        value,
        minutes_ago=minutes_ago,
        namespace="AWS/ApplicationELB",
    )


def put_alb_history(
    listener_arn: str, target_group_arn: str, per_minute: Mapping[str, float], *, hours: int = 2
) -> None:
    """What the load balancer publishes for a target group every minute of the ``hours`` before now (each
    metric of ``per_minute`` at its value), so a bake's window moved back in time finds data."""
    dims = [
        {"Name": "LoadBalancer", "Value": load_balancer_dimension(listener_arn)},
        {"Name": "TargetGroup", "Value": target_group_dimension(target_group_arn)},
    ]
    start = datetime.now(UTC).replace(second=30, microsecond=0) - timedelta(hours=hours)
    minutes = [start + timedelta(minutes=i) for i in range(60 * hours)]
    for metric, value in per_minute.items():
        for chunk in range(0, len(minutes), 20):  # 20 data a call, PutMetricData's classic limit
            _client().put_metric_data(
                Namespace="AWS/ApplicationELB",
                MetricData=[
                    {"MetricName": metric, "Dimensions": dims, "Timestamp": when, "Value": value}
                    for when in minutes[chunk : chunk + 20]
                ],
            )


#: A two-variant experiment (control 60 / green 40) whose objective is read from CloudWatch custom metrics
#: per variant island, as the AWS experiment tests write them with put_metric_data.
CLOUDWATCH_EXPERIMENT = """\
experiment:
  variants:
    control: {squals: squals.yml}
    green: {squals: green.yml}
  split: {control: 60, green: 40}
  unit: {kind: cookie, name: shop_visitor}
  objective: {maximize: conversion, numerator: checkouts, denominator: shoppers}
  min_duration: {time: 0s, activations: 0}
  significance: {alpha: 0.05, method: sequential}
  metrics:
    shoppers:
      source: cloudwatch
      query: '["Shop", "Shoppers", "Environment", "$environment", "Variant", "$variant", {"stat": "Sum"}]'
    checkouts:
      source: cloudwatch
      query: '["Shop", "Checkouts", "Environment", "$environment", "Variant", "$variant", {"stat": "Sum"}]'
"""
