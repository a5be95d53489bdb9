"""CloudFormation facts every stack squals makes shares, and the project-level stacks that outlive islands.

Island stacks carry ``squals:environment``; a project-level stack (the front door, a shared resource) carries
``squals:role`` instead, so the provider's ``list``/``down`` (and every teardown) never see it: a
:class:`ProjectStack` is created once from its template as it is in a commit, then reused as it is, and
deleted only on request. Every stack is tagged ``squals:project`` and ``squals:app`` (the same name: the
squals file's ``name``), which Cost Explorer groups costs by.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from squals_action.manifest import model
from squals_action.providers import aws_template
from squals_action.providers.interface import DestroyOutcome, ProviderError

T = TypeVar("T")

TAG_PROJECT = "squals:project"
TAG_APP = "squals:app"
TAG_ENV = "squals:environment"
TAG_SHARED = "squals:shared"
TAG_ROLE = "squals:role"
TAG_COMMIT = "squals:commit"
TAG_DIGEST = "squals:digest"
#: The front door's stack name suffix and ``squals:role``.
FRONT_DOOR = "front-door"

#: Statuses in which the stack's resources are in place (after an update rollback: the previous ones).
SERVING = frozenset(
    {
        "CREATE_COMPLETE",
        "UPDATE_COMPLETE",
        "UPDATE_ROLLBACK_COMPLETE",
        "IMPORT_COMPLETE",
        "IMPORT_ROLLBACK_COMPLETE",
    }
)
#: Statuses of a stack that holds nothing useful and may simply be deleted before a fresh create.
DEAD = frozenset({"ROLLBACK_COMPLETE", "ROLLBACK_FAILED", "CREATE_FAILED", "DELETE_FAILED"})


class AwsError(ProviderError):
    """A CloudFormation call failed or a stack ended in a failed state; the message quotes AWS's reason."""


def stack_tags(stack: Mapping[str, Any]) -> dict[str, str]:
    """A described stack's tags as a mapping."""
    return {str(t.get("Key")): str(t.get("Value")) for t in stack.get("Tags") or []}


def stack_outputs(stack: Mapping[str, Any]) -> dict[str, str]:
    """A described stack's outputs as a mapping."""
    return {str(o.get("OutputKey")): str(o.get("OutputValue", "")) for o in stack.get("Outputs") or []}


class StackCalls(Protocol):
    """What a :class:`ProjectStack` needs of the AWS provider (its clients, calls and waiters)."""

    @property
    def project(self) -> str: ...

    @property
    def top(self) -> Path: ...

    def region(self) -> str: ...

    def client(self, region: str) -> Any: ...

    def _call(self, what: str, fn: Callable[..., T], **kwargs: Any) -> T: ...

    def _describe(self, cfn: Any, stack: str) -> dict[str, Any] | None: ...

    def _wait(self, cfn: Any, waiter: str, stack_id: str, doing: str) -> None: ...

    def _delete_and_wait(self, cfn: Any, stack_id: str, doing: str) -> None: ...

    def failure_reason(self, cfn: Any, stack_id: str) -> str: ...


@dataclass(frozen=True, kw_only=True)
class StackTemplate:
    """Where a project-level stack's template is declared and what it must output."""

    ref: str
    #: ``file:line:col: key`` of the template reference, and how to name a parameter in messages.
    where: str
    parameter_where: str
    parameters: Mapping[str, str]
    section: str
    outputs: tuple[str, ...] = ()


class ProjectStack:
    """One project-level stack, ``squals-<project>-<suffix>``, tagged ``squals:role=<role>`` (plus
    ``extra_tags``); ``what`` starts the messages about it (``front door``, ``shared cache``)."""

    def __init__(
        self,
        provider: StackCalls,
        *,
        suffix: str,
        role: str,
        what: str,
        extra_tags: Mapping[str, str] | None = None,
    ) -> None:
        self.provider = provider
        self.role = role
        self.what = what
        self.name = aws_template.stack_name(provider.project, suffix)
        self.tags = {
            TAG_PROJECT: provider.project,
            TAG_APP: provider.project,
            TAG_ROLE: role,
            **(extra_tags or {}),
        }

    def get(self) -> dict[str, Any] | None:
        """The stack when it exists and serves; ``None`` otherwise. A stack of that name that is not this
        project's (or not in this role) is an error: it is never touched."""
        stack = self.provider._describe(self.provider.client(self.provider.region()), self.name)
        if stack is None or str(stack.get("StackStatus")) not in SERVING:
            return None
        self.check_ours(stack)
        return stack

    def check_ours(self, stack: Mapping[str, Any]) -> None:
        tags = stack_tags(stack)
        if tags.get(TAG_PROJECT) != self.provider.project or tags.get(TAG_ROLE) != self.role:
            raise AwsError(
                f"a stack named {self.name} exists but is not the {self.what} of project "
                f"{self.provider.project} (tags {TAG_PROJECT}={tags.get(TAG_PROJECT)!r}, "
                f"{TAG_ROLE}={tags.get(TAG_ROLE)!r}); left alone"
            )

    def create(self, spec: StackTemplate, manifest: model.Manifest, sha: str) -> dict[str, Any]:
        """Create the stack from ``spec``'s template as it is in ``sha`` (linted, parameters completed) and
        wait; a stack left failed by an earlier create is deleted first. Returns the described stack."""
        provider = self.provider
        region = provider.region()
        template = aws_template.read_template_at(
            spec.ref, spec.where, manifest, provider.top, sha, region=region, outputs=spec.outputs
        )
        parameters = aws_template.complete_parameters(
            template,
            spec.parameters,
            {"SqualsProject": provider.project},
            where=spec.parameter_where,
            manifest=manifest,
            section=spec.section,
        )
        cfn = provider.client(region)
        stack = provider._describe(cfn, self.name)
        if stack is not None:
            self.check_ours(stack)
            status = str(stack.get("StackStatus"))
            if status not in DEAD:
                raise AwsError(f"{self.what}: stack {self.name} is {status}; try again once it settles")
            provider._delete_and_wait(
                cfn, str(stack["StackId"]), f"{self.what}: removing the failed stack {self.name}"
            )
        fingerprint = aws_template.digest(template, parameters, self.tags)
        created = provider._call(
            f"{self.what}: create stack {self.name}",
            cfn.create_stack,
            StackName=self.name,
            TemplateBody=template.body,
            Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in sorted(parameters.items())],
            Tags=[{"Key": k, "Value": v} for k, v in {**self.tags, TAG_DIGEST: fingerprint}.items()],
            Capabilities=template.capabilities(),
            OnFailure="ROLLBACK",
        )
        stack_id = str(created["StackId"])
        doing = f"{self.what}: creating {self.name} from {template.display}"
        provider._wait(cfn, "stack_create_complete", stack_id, doing)
        final = provider._describe(cfn, stack_id)
        if final is None or str(final.get("StackStatus")) not in SERVING:
            ended = final.get("StackStatus") if final else "gone"
            raise AwsError(
                f"{self.what}: stack {self.name} ended {ended}: {provider.failure_reason(cfn, stack_id)}"
            )
        return final

    def delete(self, outcome_name: str) -> DestroyOutcome:
        """Delete the stack and wait (the explicit request; nothing else deletes it)."""
        provider = self.provider
        cfn = provider.client(provider.region())
        stack = provider._describe(cfn, self.name)
        if stack is None:
            return DestroyOutcome(outcome_name, ok=True, detail=f"stack {self.name} is already gone")
        self.check_ours(stack)
        stack_id = str(stack["StackId"])
        provider._call(f"{self.what}: delete stack {self.name}", cfn.delete_stack, StackName=stack_id)
        try:
            provider._wait(cfn, "stack_delete_complete", stack_id, f"{self.what}: deleting")
        except AwsError as exc:
            return DestroyOutcome(outcome_name, ok=False, detail=exc.one_line())
        note = f"deleted stack {self.name}"
        return DestroyOutcome(outcome_name, ok=True, detail=note, notes=(note,))


def front_door_stack(provider: StackCalls) -> ProjectStack:
    """The project's front-door stack, ``squals-<project>-front-door`` (whether it exists or not)."""
    return ProjectStack(provider, suffix=FRONT_DOOR, role=FRONT_DOOR, what="front door")
