"""The front door on AWS: the long-lived ALB listener users reach, declared once in ``provider.front_door``.

Either a stack ``squals-<project>-front-door`` built from the declared template (cfn-lint first, as the
island templates; it must output ``ListenerArn`` and may output ``Url``), created on first need and then
reused as it is, or an existing listener named by ARN, only described. The stack carries the tags
``squals:project`` and ``squals:role=front-door`` but no ``squals:environment``, so the provider's
``list``/``down`` (and every teardown) never see it: it goes only through :meth:`FrontDoorStack.delete`.

An existing front-door stack is never updated from here: its listener's routing is squals' (one
``modify_listener`` per change, see ``dealer.alb``) and a stack update would put the template's default
action back over the traffic in force. To change the front door, delete it explicitly and let the next
need create it again, or update the stack yourself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from squals_action import aws_api
from squals_action.dealer.alb import (
    AlbError,
    AlbTraffic,
    TallyReader,
    listener_region,
    listener_url,
    target_group_of,
)
from squals_action.dealer.interface import NotMeasured, VariantTally
from squals_action.gitcmd import resolve_commit
from squals_action.manifest import model
from squals_action.providers import aws_template
from squals_action.providers.aws_stacks import (
    FRONT_DOOR,
    AwsError,
    StackTemplate,
    front_door_stack,
    stack_outputs,
)
from squals_action.providers.interface import DestroyOutcome, ProviderError

if TYPE_CHECKING:
    from collections.abc import Mapping

    from squals_action.providers.aws import AwsProvider


@dataclass(frozen=True)
class FrontDoor:
    """A front door that exists: its listener, public URL, region and stack (``None``: a named listener)."""

    listener_arn: str
    url: str
    region: str
    stack_name: str | None = None

    def traffic(
        self,
        *,
        unit: model.StickyUnit | None = None,
        upstreams: Mapping[str, str] | None = None,
        reader: TallyReader | None = None,
    ) -> AlbTraffic:
        """The ALB Dealer on this front door's listener."""
        return AlbTraffic(self.listener_arn, url=self.url, upstreams=upstreams, unit=unit, reader=reader)


class FrontDoorStack:
    """The front door of the project an :class:`AwsProvider` manages, as ``section.front_door`` declares.

    ``section`` is the provider section of the squals file that declares it: a command bound to a commit
    passes that commit's, and the front door follows it entirely (the provider is bound to it,
    :meth:`AwsProvider.bound`): its template, parameters or listener, and its region, are the commit's; by
    default the provider's own (the file the command was opened with: a ``down --front-door``, the costs).
    """

    def __init__(self, provider: AwsProvider, section: model.Provider | None = None) -> None:
        self.provider = provider if section is None or section == provider.config else provider.bound(section)
        section = self.provider.config
        declared = section.front_door
        if declared is None:
            raise ProviderError(
                f"{section.location}: provider.front_door is not declared: the ALB Dealer needs one "
                "(front_door: {template: infra/front-door.yml} or front_door: {listener_arn: arn:...})"
            )
        self.declared = declared
        self.stack = front_door_stack(self.provider)

    @property
    def stack_name(self) -> str:
        return self.stack.name

    def _elbv2(self, region: str) -> Any:
        return aws_api.client(
            "elbv2",
            region,
            max_attempts=self.provider.max_attempts,
            connect_timeout=self.provider.connect_timeout,
            read_timeout=self.provider.read_timeout,
        )

    # ------------------------------------------------------------------------------------------- reading

    def get(self) -> FrontDoor | None:
        """The front door as it is now, or ``None`` when its stack does not exist (or holds nothing)."""
        if self.declared.listener_arn:
            return self._named_listener(self.declared.listener_arn)
        stack = self.stack.get()
        return self._from_stack(stack, self.provider.region()) if stack is not None else None

    def _named_listener(self, arn: str) -> FrontDoor:
        where = f"{self.declared.location}: provider.front_door.listener_arn"
        try:
            region = listener_region(arn)
            stacks_region = self.provider.region()
            if region != stacks_region:
                raise AlbError(f"the listener is in {region} but the islands' stacks go to {stacks_region}")
            url = listener_url(self._elbv2(region), arn)
        except AlbError as exc:
            raise AwsError(f"{where}: {exc.one_line()}") from exc
        return FrontDoor(arn, url, region)

    def _from_stack(self, stack: Mapping[str, Any], region: str) -> FrontDoor:
        outputs = stack_outputs(stack)
        arn = outputs.get(aws_template.LISTENER_OUTPUT)
        if not arn:
            raise AwsError(
                f"stack {self.stack_name} has no output {aws_template.LISTENER_OUTPUT!r}: "
                f"{aws_template.OUTPUT_USES[aws_template.LISTENER_OUTPUT]}"
            )
        url = outputs.get(aws_template.URL_OUTPUT, "").rstrip("/")
        if not url:
            try:
                url = listener_url(self._elbv2(region), arn)
            except AlbError as exc:
                raise AwsError(
                    f"stack {self.stack_name}: output {aws_template.LISTENER_OUTPUT}: {exc}"
                ) from exc
        return FrontDoor(arn, url, region, self.stack_name)

    # ------------------------------------------------------------------------------------------ creating

    def ensure(self, manifest: model.Manifest, commit: str) -> FrontDoor:
        """The front door, its stack created from the template as it is in ``commit`` if it does not exist
        yet (a failed earlier create is replaced; an existing one is reused unchanged). ``manifest`` is the
        squals file that declared the section (the template resolves against its folder)."""
        if self.declared.listener_arn:
            return self._named_listener(self.declared.listener_arn)
        provider = self.provider
        found = self.get()
        if found is not None:
            return found
        sha = resolve_commit(provider.top, commit, error=ProviderError)
        if not self.declared.template:
            raise ProviderError(
                f"{self.declared.location}: provider.front_door: expected a template or a listener_arn"
            )
        spec = StackTemplate(
            ref=self.declared.template,
            where=f"{self.declared.location}: provider.front_door.template",
            parameter_where=f"{self.declared.location}: front-door parameter",
            parameters=self.declared.parameters,
            section="provider.front_door.parameters",
            outputs=(aws_template.LISTENER_OUTPUT,),
        )
        return self._from_stack(self.stack.create(spec, manifest, sha), provider.region())

    # ------------------------------------------------------------------------------------------ deleting

    def delete(self) -> DestroyOutcome:
        """Delete the front-door stack and wait (the explicit request; nothing else deletes it). A named
        listener is not squals' to delete: that is an error."""
        if self.declared.listener_arn:
            raise ProviderError(
                f"{self.declared.location}: provider.front_door names an existing listener "
                f"({self.declared.listener_arn}); squals never deletes it"
            )
        return self.stack.delete(FRONT_DOOR)


class FrontDoorTraffic:
    """The traffic protocol on the project's front door, found (or created) when first needed.

    A route (a promote, a rollback) ensures the front door from its template at ``commit``; everything
    else only looks it up, so a deploy, a teardown or a status never creates one. Nothing runs between
    two commands: a fresh process reads the listener's weights back from AWS.
    """

    def __init__(
        self,
        stack: FrontDoorStack,
        manifest: model.Manifest,
        *,
        commit: str = "HEAD",
        unit: model.StickyUnit | None = None,
        reader: TallyReader | None = None,
    ) -> None:
        self.stack = stack
        self.manifest = manifest
        self.commit = commit
        self.unit = unit
        self.reader = reader
        self._alb: AlbTraffic | None = None
        self.door: FrontDoor | None = None

    def _found(self, *, create: bool) -> AlbTraffic | None:
        if self._alb is None:
            door = self.stack.ensure(self.manifest, self.commit) if create else self.stack.get()
            if door is None:
                return None
            self.door = door
            self._alb = door.traffic(unit=self.unit, reader=self.reader)
        return self._alb

    def url(self) -> str | None:
        alb = self._found(create=False)
        return alb.url() if alb is not None else None

    def upstream(self, url: str | None, handle: Mapping[str, Any] | None) -> str | None:
        return target_group_of(handle)

    def route(self, upstreams: Mapping[str, str], weights: Mapping[str, float]) -> str:
        alb = self._found(create=True)
        assert alb is not None  # ensure() returns the front door or raises
        return alb.route(upstreams, weights)

    def routing(self) -> Mapping[str, float]:
        alb = self._found(create=False)
        return alb.routing() if alb is not None else {}

    def drain(self, names: list[str], timeout: float = 30.0) -> str:
        alb = self._found(create=False)
        if alb is None:
            return "no front door yet: nothing was routed, nothing to drain"
        return alb.drain(names, timeout)

    def tallies(self) -> Mapping[str, VariantTally]:
        alb = self._found(create=False)
        if alb is None:
            raise NotMeasured(f"no data: the front door stack {self.stack.stack_name} does not exist yet")
        return alb.tallies()

    def stop(self) -> bool:
        """Nothing of squals runs for a front door; the listener keeps its routing."""
        return False

    def close(self) -> str | None:
        alb = self._found(create=False)
        return alb.close() if alb is not None else None
