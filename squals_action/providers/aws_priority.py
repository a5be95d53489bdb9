"""``SqualsRulePriority``: a listener rule priority squals fills in, unique on the front door's listener.

An island's preview rule sits on the front door's listener, and ALB rule priorities (1-50,000) are unique
per listener: a winner's island stays on as prod with its rule, so a number chosen per environment name
(``exp-green``) is still taken when the next experiment's ``green`` starts. squals chooses instead:

* ``pr-N`` takes ``N`` for N up to 40,000 (``aws_template.PR_MAX``): the rule shows its pull request;
* every other island (an experiment's ``exp-<variant>-<tag>``, ``pr-N`` above 40,000) takes a number of
  40,001-50,000 (``aws_template.POOL``) that no rule on the listener holds and no other stack of the
  project was given: the first free one from a hash of its name on, so two islands made at the same
  moment (layered experiments starting together) rarely look at the same number;
* an island whose stack exists keeps the number its stack was given, on every update.

The number is recorded where the rest of an island is: the stack's own parameter, which CloudFormation
gives back (so nothing is kept on disk), and the island's handle (``data.rule_priority``), so the state's
documents show it. The listener, not the state branch, decides what is free: it also holds the rules of a
stack no record knows any more (a start whose clean-up failed), of an island from before this parameter
(``PreviewPriority``) and of whatever else shares the listener.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any

from squals_action import aws_api
from squals_action.manifest import model
from squals_action.providers.aws_stacks import (
    DEAD,
    AwsError,
    StackCalls,
    front_door_stack,
    stack_outputs,
)
from squals_action.providers.aws_template import (
    LISTENER_OUTPUT,
    POOL,
    RULE_PRIORITY,
    first_candidate,
    pull_request_number,
)
from squals_action.providers.interface import ProviderError


def given(stack: Mapping[str, Any]) -> int | None:
    """The priority a described stack was given (its ``SqualsRulePriority``), if any."""
    for parameter in stack.get("Parameters") or []:
        if parameter.get("ParameterKey") == RULE_PRIORITY:
            value = str(parameter.get("ParameterValue", ""))
            return int(value) if value.isdigit() else None
    return None


def choose(env: str, own: Mapping[str, Any] | None, taken: Callable[[], Collection[int]]) -> int:
    """``env``'s priority: what its stack (``own``, as described; one left failed holds no rule) was given,
    else ``N`` of ``pr-N``, else the first number of the pool from :func:`first_candidate` on that is not
    in ``taken()`` (asked only then)."""
    kept = given(own) if own is not None and str(own.get("StackStatus")) not in DEAD else None
    if kept is not None:
        return kept
    number = pull_request_number(env)
    if number is not None:
        return number
    held = set(taken())
    start = first_candidate(env) - POOL.start
    for step in range(len(POOL)):
        candidate = POOL[(start + step) % len(POOL)]
        if candidate not in held:
            return candidate
    raise ProviderError(
        f"{env}: no listener rule priority is free for {RULE_PRIORITY}: the {len(POOL)} numbers "
        f"{POOL.start}-{POOL[-1]} are all held on the front door's listener or by the project's stacks"
    )


def held_by_stacks(stacks: Iterable[Mapping[str, Any]], *, but: str) -> set[int]:
    """The priorities the project's stacks were given, but stack ``but``'s (a name)."""
    return {n for s in stacks if s.get("StackName") != but and (n := given(s)) is not None}


def listener_arn(provider: StackCalls, door: model.FrontDoor | None) -> str | None:
    """The listener the islands' rules are on: the one the front door names, or its stack's
    ``ListenerArn`` output; ``None`` without a front door (declared, or made yet)."""
    if door is None:
        return None
    if door.listener_arn:
        return door.listener_arn
    stack = front_door_stack(provider).get()
    return stack_outputs(stack).get(LISTENER_OUTPUT) if stack is not None else None


def held_on_listener(arn: str, region: str) -> set[int]:
    """The priorities of the listener's rules (its default rule has none), every page."""
    elbv2 = aws_api.client("elbv2", region)
    pages = aws_api.call(
        AwsError,
        f"describe the rules of listener {arn}",
        lambda: list(elbv2.get_paginator("describe_rules").paginate(ListenerArn=arn)),
    )
    return {
        int(rule["Priority"])
        for page in pages
        for rule in page.get("Rules", [])
        if str(rule.get("Priority", "")).isdigit()
    }
