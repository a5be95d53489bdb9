"""The ``aws`` provider: each environment is a CloudFormation stack, ``squals-<project>-<env>``.

The template (``provider.template``, read from the commit being deployed) is parsed and checked with cfn-lint
before any AWS call. The stack is created or updated and waited for with boto3's waiters (bounded delay and
attempts); the environment's URL is the stack's ``Url`` output, and ``provision`` returns once
``<Url><app.health>`` answers. Stacks carry the tags ``squals:project``, ``squals:environment``,
``squals:commit`` and ``squals:digest``; ``list`` and ``down`` find the project's stacks by those tags, so
nothing is kept on disk. boto3 is imported inside the methods (never at CLI start-up); it honours
``AWS_ENDPOINT_URL`` (and ``AWS_ENDPOINT_URL_CLOUDFORMATION``) natively, which the tests use to point it at
a local moto server.
"""

from __future__ import annotations

import copy
import os
import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar, NamedTuple

from squals_action.gitcmd import repo_top, resolve_commit
from squals_action.manifest import model
from squals_action.providers import aws_chaos, aws_priority, aws_template
from squals_action.providers.aws_cloudformation import CloudFormationCalls
from squals_action.providers.aws_stacks import (
    DEAD,
    SERVING,
    TAG_APP,
    TAG_COMMIT,
    TAG_DIGEST,
    TAG_ENV,
    TAG_PROJECT,
    AwsError,
    stack_tags,
)
from squals_action.providers.interface import (
    DestroyOutcome,
    EnvironmentHandle,
    Health,
    Killed,
    Provider,
    ProviderError,
    check_env_name,
    shared_env,
)
from squals_action.providers.shared_aws import AwsShared, island_parameters

TAG_HEALTH = "squals:health-path"
#: What AWS accepts in a tag value; a health path outside it is not tagged (``/`` is checked instead).
TAG_VALUE = re.compile(r"^[A-Za-z0-9 _.:/=+\-@]{1,256}$")
NO_UPDATES = "No updates are to be performed"


class _Plan(NamedTuple):
    """What a provision decided before its first AWS call."""

    env: str
    sha: str
    project: str
    region: str
    config: model.Provider
    template: aws_template.Template
    parameters: Mapping[str, str]


class AwsProvider(CloudFormationCalls, Provider):
    """Environments as CloudFormation stacks in one region of one account (the calls, waits and failure
    reasons: :class:`~squals_action.providers.aws_cloudformation.CloudFormationCalls`)."""

    kind: ClassVar[str] = "aws"

    def __init__(
        self,
        repo: Path | str,
        config: model.Provider | None = None,
        *,
        state_dir: Path | str | None = None,
        project: str | None = None,
    ) -> None:
        super().__init__(repo, config, state_dir=state_dir)
        self._project = project
        self._top: Path | None = None
        self._clients = {}

    # ------------------------------------------------------------------------------------------ set-up

    @property
    def top(self) -> Path:
        """The repository's top folder (``git rev-parse --show-toplevel``), looked up once."""
        if self._top is None:
            self._top = repo_top(self.repo, error=ProviderError)
        return self._top

    @property
    def project(self) -> str:
        """The project whose stacks this provider manages (the squals file's ``name``).

        Given to the constructor, else learned from the first provision's manifest, else read from the
        squals file that declared ``config`` (its location), else from the repository's ``squals.yml``
        (the file ``squals`` picks by default).
        """
        if self._project is None:
            from squals_action.manifest import discover, load

            declared = Path(self.config.location.file)  # as shown in messages; its folder is known
            if self.config.base_dir:
                declared = Path(self.config.base_dir) / declared.name
            if self.config.location != model.NOWHERE and declared.is_file():
                found = [declared]
            else:
                found = [p for p in discover(self.top) if p.name in ("squals.yml", "squals.yaml")]
            if not found:
                raise ProviderError(
                    f"cannot tell which project's stacks to look at: no squals.yml in {self.top}"
                )
            self._project = load(found[0], self.top).name
        return self._project

    @project.setter
    def project(self, name: str) -> None:
        """Say whose stacks these are (the squals file's ``name``) before anything is provisioned."""
        self._project = name

    def bound(self, section: model.Provider) -> AwsProvider:
        """This provider with ``section`` as its own: a command bound to a commit passes the provider section
        of that commit's squals file, so its islands are built, and held to its front door's
        ``TargetGroupArn``, and its front door is found or created, in its region, as that commit declares.
        Clients, repository and project are shared."""
        bound = copy.copy(self)
        bound.config = section
        return bound

    def region(self) -> str:
        """``provider.region``, else ``AWS_REGION``, else ``AWS_DEFAULT_REGION``."""
        region = self.config.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        if not region:
            raise ProviderError(
                f"{self.config.location}: no AWS region: set provider.region in the squals file "
                "(e.g. region: us-east-1) or the AWS_REGION environment variable"
            )
        return region

    def shared_resources(self) -> AwsShared:
        """Shared resources as project-level stacks (see :mod:`squals_action.providers.shared_aws`)."""
        return AwsShared(self)

    # --------------------------------------------------------------------------------------- provision

    def provision(
        self,
        env_name: str,
        commit: str,
        manifest: model.Manifest,
        *,
        extra_env: Mapping[str, str] = model.EMPTY,
    ) -> EnvironmentHandle:
        """Create or update the environment's stack from ``commit`` and return once ``app.health`` answers.

        The template is read from the commit and linted, the parameters are resolved and the region is
        known before the first AWS call. A failed create is left rolled back as CloudFormation leaves it
        (the next provision or destroy deletes it); a failed update leaves the rolled-back previous
        version. An environment that does not become healthy is deleted (nothing left behind).
        """
        env, sha, project, region, config, template, parameters = self._plan(
            env_name, commit, manifest, extra_env
        )
        shared = self.shared_resources().ensure(manifest, sha)
        name = aws_template.stack_name(project, env)
        cfn = self.client(region)
        stack = self._describe(cfn, name)
        priority = self._rule_priority(env, stack, template)
        if shared or priority is not None:
            parameters = aws_template.stack_parameters(
                template,
                config,
                manifest,
                env=env,
                sha=sha,
                project=project,
                app_env={**manifest.app_env_for(env), **shared_env(shared), **extra_env},
                shared=island_parameters(shared),
                rule_priority=priority,
            )
        tags = {TAG_PROJECT: project, TAG_APP: project, TAG_ENV: env, TAG_COMMIT: sha}
        if TAG_VALUE.match(manifest.app.health):
            tags[TAG_HEALTH] = manifest.app.health
        fingerprint = aws_template.digest(template, parameters, tags)
        request: dict[str, Any] = {
            "StackName": name,
            "TemplateBody": template.body,
            "Parameters": [{"ParameterKey": k, "ParameterValue": v} for k, v in sorted(parameters.items())],
            "Tags": [{"Key": k, "Value": v} for k, v in {**tags, TAG_DIGEST: fingerprint}.items()],
            "Capabilities": template.capabilities(),
        }

        if stack is not None:
            self._check_ours(stack, project, env)
            status = str(stack.get("StackStatus"))
            if status.endswith("_IN_PROGRESS"):
                raise AwsError(f"{env}: stack {name} is busy ({status}); try again once it settles")
            if status in DEAD:
                self._delete_and_wait(cfn, str(stack["StackId"]), f"{env}: removing the failed stack {name}")
                stack = None
        if stack is None:
            created = self._call(
                f"{env}: create stack {name}", cfn.create_stack, OnFailure="ROLLBACK", **request
            )
            stack_id = str(created["StackId"])
            self._wait(
                cfn, "stack_create_complete", stack_id, f"{env}: creating {name} from {template.display}"
            )
        else:
            stack_id = str(stack["StackId"])
            try:
                self._call(f"{env}: update stack {name}", cfn.update_stack, **request)
            except AwsError as exc:
                if NO_UPDATES not in str(exc):
                    raise
            else:
                self._wait(
                    cfn, "stack_update_complete", stack_id, f"{env}: updating {name} from {template.display}"
                )

        final = self._describe(cfn, stack_id)
        if final is None or final.get("StackStatus") not in SERVING:
            ended = final.get("StackStatus") if final else "gone"
            raise AwsError(f"{env}: stack {name} ended {ended}: {self.failure_reason(cfn, stack_id)}")
        handle = self._handle(final, region, manifest.app.health)
        if handle.commit != sha or handle.data.get("digest") != fingerprint:
            raise AwsError(f"{env}: stack {name} does not show this provision's tags (changed meanwhile?)")
        missing = [o for o in aws_template.island_outputs(config) if not handle.data["outputs"].get(o)]
        if missing:
            # Declared but not produced (an output under a false condition): the island is unusable.
            self._delete_and_wait(cfn, stack_id, f"{env}: removing stack {name}, which lacks an output")
            raise AwsError(
                f"{env}: stack {name} has no output {missing[0]!r}: {aws_template.OUTPUT_USES[missing[0]]}; "
                "stack deleted"
            )
        try:
            self._wait_healthy(handle, manifest.app)
        except ProviderError:
            self._delete_and_wait(cfn, stack_id, f"{env}: removing the unhealthy stack {name}")
            raise
        return handle

    def _rule_priority(
        self, env: str, stack: Mapping[str, Any] | None, template: aws_template.Template
    ) -> int | None:
        """``SqualsRulePriority`` for ``env``'s stack (``stack``: as it is now) when the template declares it
        (:mod:`~squals_action.providers.aws_priority`): the listener's rules and the project's other stacks
        are read only when a new number must be chosen."""
        if aws_template.RULE_PRIORITY not in template.parameters:
            return None

        def taken() -> set[int]:
            held = aws_priority.held_by_stacks(self._stacks(), but=aws_template.stack_name(self.project, env))
            listener = aws_priority.listener_arn(self, self.config.front_door)
            return held | (aws_priority.held_on_listener(listener, self.region()) if listener else set())

        return aws_priority.choose(env, stack, taken)

    def check(
        self,
        env_name: str,
        commit: str,
        manifest: model.Manifest,
        *,
        extra_env: Mapping[str, str] = model.EMPTY,
    ) -> None:
        """What :meth:`provision` checks before its first AWS call, with no AWS call: the name, the commit,
        the region, the island's template read from the commit and linted (with the outputs the front door
        needs) and the stack's parameters."""
        self._plan(env_name, commit, manifest, extra_env)

    def _plan(
        self, env_name: str, commit: str, manifest: model.Manifest, extra_env: Mapping[str, str]
    ) -> _Plan:
        """Everything a provision decides before any AWS call: a mistake here costs no stack."""
        env = check_env_name(env_name)
        sha = resolve_commit(self.top, commit, error=ProviderError)
        if self._project is None and manifest.provider == self.config:  # not a variant file's name
            self._project = manifest.name
        project = self.project
        region = self.region()
        config = self.island_config(manifest)
        template = aws_template.read_template(config, manifest, self.top, sha, region=region)
        app_env = {**manifest.app_env_for(env), **extra_env}
        parameters = aws_template.stack_parameters(
            template, config, manifest, env=env, sha=sha, project=project, app_env=app_env
        )
        return _Plan(env, sha, project, region, config, template, parameters)

    def island_config(self, manifest: model.Manifest) -> model.Provider:
        """The provider section an island of ``manifest`` is built from: a variant file's own ``aws``
        template and parameters (resolved against that file's folder, named in its errors), else the
        project's. Region and front door stay the project's: the variants share them."""
        own = manifest.provider
        if own == self.config or own.kind != "aws" or not own.template:
            return self.config
        if own.region and own.region != self.region():
            raise ProviderError(
                f"{own.location}: provider.region {own.region}: expected the project's region "
                f"{self.region()} (the variants share its front door and state)"
            )
        return replace(
            self.config,
            template=own.template,
            parameters=own.parameters,
            location=own.location,
            base_dir=own.base_dir,
        )

    def _check_ours(self, stack: Mapping[str, Any], project: str, env: str) -> None:
        tags = stack_tags(stack)
        if tags.get(TAG_PROJECT) != project or tags.get(TAG_ENV) != env:
            raise AwsError(
                f"{env}: a stack named {stack.get('StackName')} exists but is not squals' environment {env} "
                f"of project {project} (tags {TAG_PROJECT}={tags.get(TAG_PROJECT)!r}, "
                f"{TAG_ENV}={tags.get(TAG_ENV)!r}); left alone"
            )

    def _handle(self, stack: Mapping[str, Any], region: str, health_path: str = "") -> EnvironmentHandle:
        """A handle from what CloudFormation shows; the health path from the tag unless given."""
        tags = stack_tags(stack)
        health_path = health_path or tags.get(TAG_HEALTH, "/")
        outputs = {str(o.get("OutputKey")): str(o.get("OutputValue", "")) for o in stack.get("Outputs") or []}
        data: dict[str, Any] = {
            "stack_name": str(stack.get("StackName")),
            "stack_id": str(stack.get("StackId")),
            "region": region,
            "project": tags.get(TAG_PROJECT, ""),
            "digest": tags.get(TAG_DIGEST, ""),
            "health_path": health_path,
            "outputs": outputs,
        }
        if outputs.get(aws_template.TARGET_GROUP_OUTPUT):
            data["target_group_arn"] = outputs[aws_template.TARGET_GROUP_OUTPUT]
        priority = aws_priority.given(stack)
        if priority is not None:
            data["rule_priority"] = priority
        return EnvironmentHandle(
            env=tags.get(TAG_ENV, str(stack.get("StackName"))),
            commit=tags.get(TAG_COMMIT, ""),
            url=outputs.get(aws_template.URL_OUTPUT, "").rstrip("/"),
            kind=self.kind,
            data=MappingProxyType(data),
        )

    def _wait_healthy(self, handle: EnvironmentHandle, app: model.App) -> None:
        deadline = time.monotonic() + app.health_timeout
        pause = 0.1
        while True:
            left = deadline - time.monotonic()
            status, error = http_get(handle.url + app.health, timeout=max(0.1, min(5.0, left)))
            if status is not None and 200 <= status < 400:
                return
            why = f"last answer HTTP {status}" if status is not None else f"last attempt: {error}"
            if time.monotonic() + pause >= deadline:
                raise ProviderError(
                    f"{handle.env}: the stack is up but {handle.url}{app.health} did not answer 2xx/3xx "
                    f"within {app.health_timeout:g}s ({why}); {app.location}: app.health; stack deleted"
                )
            time.sleep(pause)
            pause = min(pause * 2, 5.0)

    # ------------------------------------------------------------------------------------------ health

    def health(self, handle: EnvironmentHandle, *, timeout: float = 2.0) -> Health:
        """``down`` when the stack is gone or failed, ``unhealthy`` while it changes or when the URL does
        not answer 2xx/3xx, else ``up``. Never raises."""
        try:
            cfn = self.client(self._handle_region(handle))
            stack = self._describe(cfn, str(handle.data.get("stack_name") or handle.data.get("stack_id")))
        except ProviderError as exc:
            return Health("unhealthy", f"cannot ask CloudFormation: {exc.one_line()}")
        if stack is None:
            return Health("down", f"stack {handle.data.get('stack_name')} does not exist")
        status = str(stack.get("StackStatus"))
        if status in DEAD or status.startswith("DELETE_"):
            return Health("down", f"stack {stack.get('StackName')} is {status}")
        if status not in SERVING:
            return Health("unhealthy", f"stack {stack.get('StackName')} is {status}")
        url = handle.url + str(handle.data.get("health_path") or "/")
        code, error = http_get(url, timeout=timeout)
        if code is None:
            return Health("unhealthy", f"{url}: {error}")
        return Health("up" if 200 <= code < 400 else "unhealthy", f"{url}: HTTP {code}", code)

    def _handle_region(self, handle: EnvironmentHandle) -> str:
        region = handle.data.get("region")
        return str(region) if region else self.region()

    # ------------------------------------------------------------------------------------------- chaos

    def kill(self, handle: EnvironmentHandle) -> Killed:
        """Every target of the island's target group deregistered (``providers/aws_chaos.py``)."""
        return aws_chaos.deregister_all(handle)

    def revive(
        self,
        handle: EnvironmentHandle,
        killed: Killed,
        manifest: model.Manifest,
        *,
        extra_env: Mapping[str, str] = model.EMPTY,
    ) -> EnvironmentHandle:
        """The deregistered targets registered again."""
        return aws_chaos.register(handle, killed)

    # ----------------------------------------------------------------------------------------- destroy

    def destroy(self, handle: EnvironmentHandle) -> DestroyOutcome:
        """Delete the stack and wait; harmless when it is gone, and a newer provision of the same
        environment (another stack id or digest) is left alone."""
        outcome, stack_id = self._start_delete(handle)
        if stack_id is None:
            return outcome
        return self._finish_delete(handle, stack_id)

    def _start_delete(self, handle: EnvironmentHandle) -> tuple[DestroyOutcome, str | None]:
        if handle.kind != self.kind:
            raise ProviderError(f"{handle.env}: a {handle.kind!r} environment cannot be destroyed by 'aws'")
        check_env_name(handle.env)
        name = str(handle.data.get("stack_name") or "")
        if not name:
            raise ProviderError(f"{handle.env}: the handle names no stack")
        cfn = self.client(self._handle_region(handle))
        stack = self._describe(cfn, name)
        if stack is None:
            return DestroyOutcome(handle.env, ok=True, detail=f"stack {name} is already gone"), None
        recorded_id, recorded_digest = handle.data.get("stack_id"), handle.data.get("digest")
        if (recorded_id and recorded_id != stack.get("StackId")) or (
            recorded_digest and recorded_digest != stack_tags(stack).get(TAG_DIGEST)
        ):
            note = f"a newer provision of {handle.env} owns stack {name}; kept"
            return DestroyOutcome(handle.env, ok=True, detail=note, notes=(note,)), None
        stack_id = str(stack["StackId"])
        self._call(f"{handle.env}: delete stack {name}", cfn.delete_stack, StackName=stack_id)
        return DestroyOutcome(handle.env, ok=True), stack_id

    def _finish_delete(self, handle: EnvironmentHandle, stack_id: str) -> DestroyOutcome:
        cfn = self.client(self._handle_region(handle))
        try:
            self._wait(cfn, "stack_delete_complete", stack_id, f"{handle.env}: deleting")
        except AwsError as exc:
            return DestroyOutcome(handle.env, ok=False, detail=exc.one_line())
        note = f"deleted stack {handle.data.get('stack_name')}"
        return DestroyOutcome(handle.env, ok=True, detail=note, notes=(note,))

    # -------------------------------------------------------------------------------------- list, down

    def _stacks(self) -> Iterator[dict[str, Any]]:
        cfn = self.client(self.region())
        pages = self._call("list stacks", lambda: list(cfn.get_paginator("describe_stacks").paginate()))
        project = self.project
        for page in pages:
            for stack in page.get("Stacks", []):
                tags = stack_tags(stack)
                if (
                    tags.get(TAG_PROJECT) == project
                    and TAG_ENV in tags
                    and stack.get("StackStatus") != "DELETE_COMPLETE"
                ):
                    yield stack

    def list(self) -> tuple[EnvironmentHandle, ...]:
        """The project's stacks (any status but deleted), found by their ``squals:*`` tags, by name."""
        region = self.region()
        handles = [self._handle(stack, region) for stack in self._stacks()]
        return tuple(sorted(handles, key=lambda h: h.env))

    def get(self, env_name: str) -> EnvironmentHandle | None:
        """The environment's stack, looked up by its name (one call, no listing)."""
        env = check_env_name(env_name)
        region = self.region()
        stack = self._describe(self.client(region), aws_template.stack_name(self.project, env))
        if stack is None or stack_tags(stack).get(TAG_PROJECT) != self.project:
            return None
        return self._handle(stack, region)

    def down(self) -> tuple[DestroyOutcome, ...]:
        """Delete every stack of the project: all deletions are started first, then waited for."""
        started: list[tuple[EnvironmentHandle, str]] = []
        outcomes: list[DestroyOutcome] = []
        for handle in self.list():
            try:
                outcome, stack_id = self._start_delete(handle)
            except ProviderError as exc:
                outcomes.append(DestroyOutcome(handle.env, ok=False, detail=exc.one_line()))
                continue
            if stack_id is None:
                outcomes.append(outcome)
            else:
                started.append((handle, stack_id))
        outcomes.extend(self._finish_delete(handle, stack_id) for handle, stack_id in started)
        return tuple(sorted(outcomes, key=lambda o: o.env))


def http_get(url: str, *, timeout: float) -> tuple[int | None, str]:
    """GET ``url`` once (http and https only: a stack output could say ``file:``); (status, "") or
    (None, why)."""
    import urllib.error
    import urllib.parse
    import urllib.request

    scheme = urllib.parse.urlsplit(url).scheme
    if scheme not in {"http", "https"}:
        return None, f"not an http(s) URL: {url!r}"
    request = urllib.request.Request(url, headers={"User-Agent": "squals"})  # noqa: S310 - scheme checked
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - scheme checked
            response.read(65536)
            return int(response.status), ""
    except urllib.error.HTTPError as exc:
        exc.close()
        return int(exc.code), ""
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return None, f"{type(exc).__name__}: {reason}"
