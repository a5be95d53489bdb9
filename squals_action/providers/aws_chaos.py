"""The ``kill`` chaos test on AWS: BLUE's targets leave its target group, as when every task of it dies.

The island's target group (its stack's ``TargetGroupArn`` output, recorded in the handle) loses every
registered target with one ``DeregisterTargets``; the ALB then has nothing to forward BLUE's share to, and
the bake's watchers (CloudWatch KPIs and alarms) see it as users would. Reviving registers the same targets
again with one ``RegisterTargets``. Stopping an ECS task instead is left to the service's own scheduler,
which would replace it: deregistration is what every island with a target group has in common.
"""

from __future__ import annotations

from typing import Any

from squals_action import aws_api
from squals_action.providers.interface import EnvironmentHandle, Killed, ProviderError


class ChaosError(ProviderError):
    """An ELBv2 call of a chaos test failed; quotes AWS's code and message."""


def _group(handle: EnvironmentHandle) -> tuple[str, str]:
    arn = handle.data.get("target_group_arn")
    region = handle.data.get("region")
    if not isinstance(arn, str) or not arn or not isinstance(region, str):
        raise ChaosError(
            f"{handle.env}: no target group is recorded for it (its island template must output "
            "TargetGroupArn): nothing to deregister"
        )
    return arn, region


def _elbv2(region: str) -> Any:
    return aws_api.client("elbv2", region)


def deregister_all(handle: EnvironmentHandle) -> Killed:
    """Deregister every target of the island's target group; what was removed is kept for :func:`register`."""
    arn, region = _group(handle)
    elbv2 = _elbv2(region)
    found = aws_api.call(
        ChaosError, f"describe the targets of {arn}", elbv2.describe_target_health, TargetGroupArn=arn
    )["TargetHealthDescriptions"]
    targets = [
        {k: v for k, v in d["Target"].items() if k in ("Id", "Port", "AvailabilityZone")} for d in found
    ]
    if not targets:
        raise ChaosError(f"{handle.env}: target group {arn} has no registered target: nothing to kill")
    aws_api.call(
        ChaosError,
        f"deregister the targets of {arn}",
        elbv2.deregister_targets,
        TargetGroupArn=arn,
        Targets=targets,
    )
    ids = ", ".join(str(t["Id"]) for t in targets)
    return Killed(
        f"deregistered {len(targets)} target(s) ({ids}) from {handle.env}'s target group",
        {"target_group_arn": arn, "targets": targets},
    )


def register(handle: EnvironmentHandle, killed: Killed) -> EnvironmentHandle:
    """Register again the targets :func:`deregister_all` removed; the handle does not change."""
    arn, region = _group(handle)
    targets = killed.undo.get("targets")
    if killed.undo.get("target_group_arn") != arn or not isinstance(targets, list):
        raise ChaosError(f"{handle.env}: the chaos kill recorded no targets of {arn} to register again")
    aws_api.call(
        ChaosError,
        f"register the targets of {arn} again",
        _elbv2(region).register_targets,
        TargetGroupArn=arn,
        Targets=targets,
    )
    return handle
