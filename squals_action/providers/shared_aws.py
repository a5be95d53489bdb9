"""Shared resources on ``aws``: one CloudFormation stack each, ``squals-<project>-shared-<name>``.

The stack is created from the resource's ``template`` as it is in the commit being deployed when it does not
exist yet, then reused as it is (like the front door: an update could replace a database under every
island). It is tagged ``squals:project``, ``squals:app``, ``squals:role=shared`` and ``squals:shared=<name>``
(CloudFormation passes stack tags on to the resources it creates, so Cost Explorer can group their costs),
never ``squals:environment``: teardown, promotion and ``squals down`` never see it. Its output ``Url`` is
what islands get as ``SQUALS_SHARED_<NAME>_URL``; every output ``X`` also reaches island templates that
declare the parameter ``SqualsShared<Name>X`` (:func:`island_parameters`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any

from squals_action.manifest import model
from squals_action.providers import aws_template
from squals_action.providers.aws_stacks import (
    SERVING,
    TAG_COMMIT,
    TAG_PROJECT,
    TAG_ROLE,
    TAG_SHARED,
    ProjectStack,
    StackCalls,
    StackTemplate,
    stack_outputs,
    stack_tags,
)
from squals_action.providers.interface import (
    DestroyOutcome,
    ProviderError,
    SharedHandle,
    SharedResources,
    SharedStatus,
    unknown_names,
)

ROLE = "shared"


def island_parameters(handles: Iterable[SharedHandle]) -> dict[str, str]:
    """``SqualsShared<Name><Output>`` for every output of every running shared stack (an island template
    takes those it declares)."""
    values: dict[str, str] = {}
    for handle in handles:
        camel = "".join(part.capitalize() for part in re.split(r"[^A-Za-z0-9]+", handle.name) if part)
        for key, value in dict(handle.data.get("outputs") or {}).items():
            values[f"SqualsShared{camel}{key}"] = str(value)
    return values


class AwsShared(SharedResources):
    """The project's shared stacks, through the provider's CloudFormation client, calls and waiters."""

    kind = "aws"

    def __init__(self, provider: StackCalls) -> None:
        self.provider = provider

    def _stack(self, name: str, commit: str = "") -> ProjectStack:
        extra = {TAG_SHARED: name, **({TAG_COMMIT: commit} if commit else {})}
        return ProjectStack(
            self.provider, suffix=f"{ROLE}-{name}", role=ROLE, what=f"shared {name}", extra_tags=extra
        )

    def _listed(self) -> Iterator[dict[str, Any]]:
        provider = self.provider
        cfn = provider.client(provider.region())
        pages = provider._call(
            "list shared stacks", lambda: list(cfn.get_paginator("describe_stacks").paginate())
        )
        for page in pages:
            for stack in page.get("Stacks", []):
                tags = stack_tags(stack)
                if (
                    tags.get(TAG_PROJECT) == provider.project
                    and tags.get(TAG_ROLE) == ROLE
                    and tags.get(TAG_SHARED)
                    and stack.get("StackStatus") != "DELETE_COMPLETE"
                ):
                    yield stack

    @staticmethod
    def _handle(stack: dict[str, Any]) -> SharedHandle:
        tags = stack_tags(stack)
        outputs = stack_outputs(stack)
        return SharedHandle(
            name=tags[TAG_SHARED],
            kind="aws",
            url=outputs.get(aws_template.URL_OUTPUT, ""),
            commit=tags.get(TAG_COMMIT, ""),
            data={
                "stack": str(stack.get("StackName")),
                "status": str(stack.get("StackStatus")),
                "outputs": outputs,
            },
        )

    def ensure(self, manifest: model.Manifest, commit: str) -> tuple[SharedHandle, ...]:
        for resource in manifest.shared.values():
            where = f"{resource.location}: shared.{resource.name}"
            if not resource.template:
                raise ProviderError(f"{where}: expected template (its CloudFormation template) on aws")
            if self._stack(resource.name).get() is not None:
                continue
            spec = StackTemplate(
                ref=resource.template,
                where=f"{where}.template",
                parameter_where=f"{where}: parameter",
                parameters=resource.parameters,
                section=f"shared.{resource.name}.parameters",
                outputs=(aws_template.URL_OUTPUT,),
            )
            self._stack(resource.name, commit).create(spec, manifest, commit)
        return self.running()

    def running(self) -> tuple[SharedHandle, ...]:
        handles = [self._handle(s) for s in self._listed() if str(s.get("StackStatus")) in SERVING]
        return tuple(sorted(handles, key=lambda h: h.name))

    def status(self, manifest: model.Manifest | None) -> tuple[SharedStatus, ...]:
        found = {self._handle(stack).name: stack for stack in self._listed()}
        declared = set(manifest.shared) if manifest is not None else set()
        statuses: list[SharedStatus] = []
        for name in sorted(declared | set(found)):
            stack = found.get(name)
            if stack is None:
                statuses.append(SharedStatus(name=name, state="not started", detail="no stack yet"))
                continue
            handle = self._handle(stack)
            serving = str(stack.get("StackStatus")) in SERVING
            statuses.append(
                SharedStatus(
                    name=name,
                    state="running" if serving else "down",
                    url=handle.url if serving else "",
                    detail=f"stack {handle.data['stack']} {handle.data['status']}",
                )
            )
        return tuple(statuses)

    def remove(self, names: Iterable[str] | None = None) -> tuple[DestroyOutcome, ...]:
        recorded = sorted({self._handle(stack).name for stack in self._listed()})
        wanted = recorded if names is None else sorted(set(names))
        unknown_names(wanted, recorded)
        outcomes: list[DestroyOutcome] = []
        for name in wanted:
            try:
                outcomes.append(self._stack(name).delete(name))
            except ProviderError as exc:
                outcomes.append(DestroyOutcome(name, ok=False, detail=exc.one_line()))
        return tuple(outcomes)
