"""Talking to CloudFormation, for every stack the aws provider makes (islands, the front door, shared
resources): one client per region with bounded retries and timeouts, every call's AWS or transport error as
one line, waiters bounded in delay and attempts, and the first failed resource event of a stack's latest
operation to say why. boto3 and botocore are imported on first use, never at CLI start-up.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from squals_action import aws_api
from squals_action.providers.aws_stacks import AwsError

T = TypeVar("T")


def _is_missing(exc: Exception) -> bool:
    """True for CloudFormation's "Stack with id X does not exist" (a ValidationError)."""
    return "does not exist" in str(exc)


class CloudFormationCalls:
    """CloudFormation's clients, calls, waiters and failure reasons, with their limits (class attributes
    a test or a caller may lower on an instance)."""

    #: Seconds between two waiter polls, and how long a create/update/delete may take in all.
    wait_delay: int = 5
    wait_timeout: float = 3600.0
    #: Attempts per API call in all, first one included (botocore's standard retry mode: exponential
    #: back-off with jitter on throttling, 5xx and transport errors).
    max_attempts: int = aws_api.MAX_ATTEMPTS
    connect_timeout: float = aws_api.CONNECT_TIMEOUT
    read_timeout: float = aws_api.READ_TIMEOUT
    #: One client per region, made on first use (the provider's ``__init__`` starts it empty).
    _clients: dict[str, Any]

    def client(self, region: str) -> Any:
        """A CloudFormation client with standard retries and timeouts (``AWS_ENDPOINT_URL`` honoured)."""
        if region not in self._clients:
            self._clients[region] = aws_api.client(
                "cloudformation",
                region,
                max_attempts=self.max_attempts,
                connect_timeout=self.connect_timeout,
                read_timeout=self.read_timeout,
            )
        return self._clients[region]

    def _call(self, what: str, fn: Callable[..., T], **kwargs: Any) -> T:
        """One API call; AWS and transport errors become one-line :class:`AwsError`."""
        return aws_api.call(AwsError, what, fn, **kwargs)

    def _describe(self, cfn: Any, stack: str) -> dict[str, Any] | None:
        """The stack called (or with id) ``stack``; None when CloudFormation does not know it."""
        try:
            stacks = self._call(f"describe {stack}", cfn.describe_stacks, StackName=stack)["Stacks"]
        except AwsError as exc:
            if _is_missing(exc):
                return None
            raise
        if not stacks or stacks[0].get("StackStatus") == "DELETE_COMPLETE":
            return None
        found: dict[str, Any] = stacks[0]
        return found

    def _wait(self, cfn: Any, waiter: str, stack_id: str, doing: str) -> None:
        """Wait with a boto3 waiter; a terminal failure or the time limit becomes an :class:`AwsError`
        quoting the stack events' first failure."""
        from botocore.exceptions import BotoCoreError, ClientError, WaiterError

        delay = max(1, int(self.wait_delay))
        attempts = max(1, int(self.wait_timeout // delay))
        try:
            cfn.get_waiter(waiter).wait(
                StackName=stack_id, WaiterConfig={"Delay": delay, "MaxAttempts": attempts}
            )
        except (ClientError, BotoCoreError) as exc:
            if not isinstance(exc, WaiterError):
                raise AwsError(f"{doing}: waiting for stack {stack_id}: {exc}") from exc
            stack = self._describe(cfn, stack_id)
            status = stack.get("StackStatus", "?") if stack else "gone"
            reason = self.failure_reason(cfn, stack_id) or (stack or {}).get("StackStatusReason") or ""
            timed_out = "Max attempts exceeded" in str(exc)
            head = f"still {status} after {delay * attempts}s" if timed_out else f"ended {status}"
            name = stack.get("StackName", stack_id) if stack else stack_id
            raise AwsError(f"{doing}: stack {name} {head}" + (f": {reason}" if reason else "")) from exc

    def failure_reason(self, cfn: Any, stack_id: str) -> str:
        """The first failed resource event of the stack's latest operation, as ``Logical (Type) STATUS:
        reason``; "" when there is none."""
        failures: list[dict[str, Any]] = []
        try:
            pages = cfn.get_paginator("describe_stack_events").paginate(StackName=stack_id)
            for event in (e for page in pages for e in page.get("StackEvents", [])):
                status = str(event.get("ResourceStatus", ""))
                if (
                    event.get("ResourceType") == "AWS::CloudFormation::Stack"
                    and event.get("ResourceStatusReason") == "User Initiated"
                ):
                    break  # newest first: this is where the latest operation began
                if status.endswith("_FAILED"):
                    failures.append(event)
        except Exception:  # the reason is a courtesy: the status is already known
            return ""
        real = [e for e in failures if "cancelled" not in str(e.get("ResourceStatusReason", "")).lower()]
        chosen = (real or failures)[-1:] if (real or failures) else []
        if not chosen:
            return ""
        event = chosen[0]
        reason = " ".join(str(event.get("ResourceStatusReason", "")).split())
        return (
            f"{event.get('LogicalResourceId')} ({event.get('ResourceType')}) "
            f"{event.get('ResourceStatus')}: {reason}"
        )

    def _delete_and_wait(self, cfn: Any, stack_id: str, doing: str) -> None:
        self._call(doing, cfn.delete_stack, StackName=stack_id)
        self._wait(cfn, "stack_delete_complete", stack_id, doing)
