"""The ALB listener as the Dealer: :class:`AlbTraffic` implements the ``Traffic`` protocol through ELBv2.

On AWS the front door's listener splits the traffic, so nothing of squals has to stay up between runs. The
upstreams are target groups (name -> target group ARN, one per island). Every weight change is exactly one
``modify_listener`` whose default action is a weighted ``ForwardConfig`` with target-group stickiness, so a
switch (a promote step, a rollback) happens in one step or not at all. What the listener forwards is read
back from AWS (``routing``), never remembered, so any later process sees the weights in force.

Weights: ALB takes integers 0-999 per target group. :func:`alb_weights` scales the shares to 1000 by the
largest-remainder rule (10 % / 90 % -> 100 / 900; ties go to the name that sorts first), then a positive
share that rounded to 0 gets 1 (taken from the largest), and a share of everything (1000) becomes 999: a
0 % share always gets weight 0 and a 100 % share gets all the traffic.

Stickiness: ALB cannot hash a unit id to a target group as the local Dealer does. A unit is kept on its
target group by the listener's ``TargetGroupStickinessConfig`` (ALB's own ``AWSALBTG`` cookie) and on its
target inside the group by the target group's stickiness attributes: ``app_cookie`` keyed on the cookie
named by ``experiment.unit``, or ALB's ``lb_cookie`` when the unit is a header (ALB cannot key on headers).
Those attributes are set once per target group (read first, written only when they differ), so a weight
change among groups already seen makes no other mutating call.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Mapping
from typing import Any

from squals_action import aws_api
from squals_action.dealer.bucketing import normalise_weights
from squals_action.dealer.interface import DealerError, NotMeasured, VariantTally, percentages
from squals_action.manifest.model import StickyUnit

#: ALB's bounds: a weight per target group, target groups per forward action, stickiness duration.
MAX_WEIGHT = 999
SCALE = 1000
MAX_TARGET_GROUPS = 5
MAX_STICKINESS_SECONDS = 7 * 24 * 3600
#: What a target group without the attribute waits for in-flight requests when it is deregistered.
DEFAULT_DEREGISTRATION_DELAY = 300

#: What the listener answers once ``down`` has taken every environment away.
CLOSED_ACTION = {
    "Type": "fixed-response",
    "FixedResponseConfig": {
        "StatusCode": "503",
        "ContentType": "text/plain",
        "MessageBody": "squals: nothing is deployed here",
    },
}

#: Given the upstreams in force (name -> target group ARN), per-upstream figures (the CloudWatch reader).
TallyReader = Callable[[Mapping[str, str]], Mapping[str, VariantTally]]

_LISTENER_ARN = re.compile(r"^arn:aws[\w-]*:elasticloadbalancing:([a-z0-9-]+):\d{12}:listener/app/.+$")


class AlbError(DealerError):
    """An ELBv2 call failed or the listener cannot do what was asked; quotes AWS's code and message."""


def listener_region(listener_arn: str) -> str:
    """The region an ALB listener ARN names; anything but an ALB listener ARN is an :class:`AlbError`."""
    match = _LISTENER_ARN.match(listener_arn)
    if match is None:
        raise AlbError(
            f"{listener_arn!r} is not an ALB listener ARN "
            "(expected arn:aws:elasticloadbalancing:<region>:<account>:listener/app/<lb>/<id>/<id>)"
        )
    return match.group(1)


def alb_weights(weights: Mapping[str, float]) -> dict[str, int]:
    """Relative weights as ALB's integers 0-999 (rule in the module doc), checked as the local Dealer
    checks them (finite, >= 0, at least one positive: a :class:`DealerError` otherwise)."""
    weights = normalise_weights(weights, tuple(weights))
    total = sum(weights.values())
    exact = {name: SCALE * w / total for name, w in weights.items()}
    ints = {name: math.floor(x) for name, x in exact.items()}
    left = SCALE - sum(ints.values())
    for name in sorted(exact, key=lambda n: (ints[n] - exact[n], n))[:left]:
        ints[name] += 1
    for name in sorted(weights):
        if weights[name] > 0 and ints[name] == 0:
            largest = max(sorted(ints), key=lambda n: ints[n])
            ints[largest] -= 1
            ints[name] = 1
    return {name: min(value, MAX_WEIGHT) for name, value in ints.items()}


class AlbTraffic:
    """The traffic interface on one ALB listener (never created or deleted here: the front door owns it)."""

    def __init__(
        self,
        listener_arn: str,
        *,
        url: str | None = None,
        upstreams: Mapping[str, str] | None = None,
        unit: StickyUnit | None = None,
        stickiness_seconds: int = MAX_STICKINESS_SECONDS,
        reader: TallyReader | None = None,
    ) -> None:
        """``upstreams`` (name -> target group ARN) names what a fresh process reads back before its first
        ``route``; ``reader`` gives the figures of :meth:`tallies` (none: "not measured")."""
        self.listener_arn = listener_arn
        self.region = listener_region(listener_arn)
        if not 1 <= stickiness_seconds <= MAX_STICKINESS_SECONDS:
            raise AlbError(
                f"stickiness of {stickiness_seconds}s: ALB takes 1 to {MAX_STICKINESS_SECONDS} seconds"
            )
        self.stickiness_seconds = stickiness_seconds
        self.unit = unit or StickyUnit()
        self.reader = reader
        self._url = url
        self._names: dict[str, str] = dict(upstreams or {})
        self._zeroed_at: dict[str, float] = {}
        self._client: Any = None

    # ------------------------------------------------------------------------------------------ plumbing

    @property
    def elbv2(self) -> Any:
        """The ELBv2 client (standard retries and timeouts, ``AWS_ENDPOINT_URL`` honoured), built once."""
        if self._client is None:
            self._client = aws_api.client("elbv2", self.region)
        return self._client

    def _call(self, what: str, fn: Callable[..., Any], **kwargs: Any) -> Any:
        return aws_api.call(AlbError, what, fn, **kwargs)

    def _listener(self) -> dict[str, Any]:
        found = self._call(
            f"describe listener {self.listener_arn}",
            self.elbv2.describe_listeners,
            ListenerArns=[self.listener_arn],
        )["Listeners"]
        if not found:
            raise AlbError(f"listener {self.listener_arn} does not exist")
        listener: dict[str, Any] = found[0]
        return listener

    def default_actions(self) -> list[dict[str, Any]]:
        """The listener's default actions as AWS holds them now."""
        return list(self._listener().get("DefaultActions") or [])

    def _forwarded(self) -> dict[str, int]:
        """Target group ARN -> weight of the listener's default forward action (empty if none)."""
        return forwarded_by(self.default_actions())

    def _name_of(self, arn: str) -> str:
        return next((name for name, known in self._names.items() if known == arn), arn)

    # ---------------------------------------------------------------------------------------- the protocol

    def url(self) -> str | None:
        """The front door's public URL (given, else derived from the listener's load balancer)."""
        if self._url is None:
            self._url = listener_url(self.elbv2, self.listener_arn)
        return self._url

    def upstreams(self) -> dict[str, str]:
        """What the listener forwards to, name -> target group ARN (an unknown group is named by its ARN)."""
        return {self._name_of(arn): arn for arn in self._forwarded()}

    def upstream(self, url: str | None, handle: Mapping[str, Any] | None) -> str | None:
        """The island's target group, as its provider handle recorded it."""
        return target_group_of(handle)

    def routing(self) -> Mapping[str, float]:
        """The listener's weights in force, as percentages (read back from AWS)."""
        return percentages({self._name_of(arn): float(w) for arn, w in self._forwarded().items()})

    def route(self, upstreams: Mapping[str, str], weights: Mapping[str, float]) -> str:
        """One ``modify_listener`` forwarding to exactly ``upstreams`` with ``weights`` (rounded as the module
        doc says); target groups not yet sticky on ``unit`` get their attributes first."""
        if not 1 <= len(upstreams) <= MAX_TARGET_GROUPS:
            raise AlbError(
                f"{len(upstreams)} upstreams: an ALB forward action takes 1 to {MAX_TARGET_GROUPS} "
                "target groups"
            )
        integers = alb_weights(normalise_weights(weights, tuple(upstreams)))
        for arn in upstreams.values():
            self.make_sticky(arn)
        action = {
            "Type": "forward",
            "ForwardConfig": {
                "TargetGroups": [
                    {"TargetGroupArn": upstreams[name], "Weight": integers[name]}
                    for name in sorted(upstreams)
                ],
                "TargetGroupStickinessConfig": {"Enabled": True, "DurationSeconds": self.stickiness_seconds},
            },
        }
        self._call(
            f"modify listener {self.listener_arn}",
            self.elbv2.modify_listener,
            ListenerArn=self.listener_arn,
            DefaultActions=[action],
        )
        self._note_zeroed(upstreams, integers)
        self._names.update(upstreams)
        return self.url() or ""

    def _note_zeroed(self, upstreams: Mapping[str, str], integers: Mapping[str, int]) -> None:
        """Remember when a target group stopped getting new requests (for :meth:`drain`); one already at 0
        or dropped before this process counts from now, which only makes the wait longer."""
        now = time.monotonic()
        dropped = set(self._names.values()) - set(upstreams.values())
        for arn in dropped | {upstreams[name] for name, weight in integers.items() if weight == 0}:
            self._zeroed_at.setdefault(arn, now)
        for name, weight in integers.items():
            if weight:
                self._zeroed_at.pop(upstreams[name], None)

    def make_sticky(self, target_group_arn: str) -> bool:
        """Set the target group's stickiness on ``unit`` unless it is already so; ``True`` when it wrote."""
        wanted = self._stickiness_attributes()
        current = self._attributes(target_group_arn)
        if all(current.get(key) == value for key, value in wanted.items()):
            return False
        self._call(
            f"modify target group attributes {target_group_arn}",
            self.elbv2.modify_target_group_attributes,
            TargetGroupArn=target_group_arn,
            Attributes=[{"Key": key, "Value": value} for key, value in wanted.items()],
        )
        return True

    def _stickiness_attributes(self) -> dict[str, str]:
        seconds = str(self.stickiness_seconds)
        if self.unit.kind == "cookie":
            return {
                "stickiness.enabled": "true",
                "stickiness.type": "app_cookie",
                "stickiness.app_cookie.cookie_name": self.unit.name,
                "stickiness.app_cookie.duration_seconds": seconds,
            }
        return {
            "stickiness.enabled": "true",
            "stickiness.type": "lb_cookie",
            "stickiness.lb_cookie.duration_seconds": seconds,
        }

    def _attributes(self, target_group_arn: str) -> dict[str, str]:
        found = self._call(
            f"describe target group attributes {target_group_arn}",
            self.elbv2.describe_target_group_attributes,
            TargetGroupArn=target_group_arn,
        )["Attributes"]
        return {str(a["Key"]): str(a.get("Value", "")) for a in found}

    def drain(self, names: list[str], timeout: float = 30.0) -> str:
        """Wait out the longest deregistration delay of ``names`` since they got weight 0.

        ALB reports no in-flight count per target group; the deregistration delay is the bound the user
        declared for a request to finish. A name still weighted, or a delay longer than ``timeout`` from
        now, is an :class:`AlbError` (nothing waited); a fresh process counts the delay from now.
        """
        if not names:
            return "nothing to drain"
        routed = {self._name_of(arn): w for arn, w in self._forwarded().items()}
        busy = sorted(n for n in names if routed.get(n))
        if busy:
            raise AlbError(
                f"cannot drain {busy[0]}: listener {self.listener_arn} still forwards new requests to it"
            )
        unknown = sorted(n for n in names if n not in self._names)
        if unknown:
            raise AlbError(f"cannot drain {unknown[0]}: no target group known by that name")
        now = time.monotonic()
        waits: dict[str, float] = {}
        for name in names:
            arn = self._names[name]
            delay = float(
                self._attributes(arn).get(
                    "deregistration_delay.timeout_seconds", DEFAULT_DEREGISTRATION_DELAY
                )
            )
            waits[name] = max(0.0, delay - (now - self._zeroed_at.get(arn, now)))
        longest = max(waits, key=lambda n: waits[n])
        if waits[longest] > timeout:
            raise AlbError(
                f"cannot drain {longest} within {timeout:g}s: its target group's deregistration delay leaves "
                f"{waits[longest]:.0f}s for requests in flight (lower deregistration_delay.timeout_seconds)"
            )
        time.sleep(waits[longest])
        return (
            f"waited {waits[longest]:.1f}s: the deregistration delay of {', '.join(sorted(names))} "
            "has passed since they got weight 0"
        )

    def tallies(self) -> Mapping[str, VariantTally]:
        """The reader's figures for the target groups in force; no reader is :class:`NotMeasured`."""
        if self.reader is None:
            raise NotMeasured(
                f"no data: the ALB Dealer of {self.listener_arn} has no metric reader (CloudWatch) configured"
            )
        return self.reader(self.upstreams())

    def stop(self) -> bool:
        """Nothing of squals runs for an ALB: the listener keeps its routing. Always ``False``."""
        return False

    def close(self) -> str | None:
        """One ``modify_listener``: the default action answers 503 (nothing deployed), so the target groups
        are no longer in use; ``None`` (no call) when the listener forwards nowhere already."""
        if not self._forwarded():
            return None
        self._call(
            f"modify listener {self.listener_arn}",
            self.elbv2.modify_listener,
            ListenerArn=self.listener_arn,
            DefaultActions=[CLOSED_ACTION],
        )
        self._note_zeroed({}, {})
        return f"listener {self.listener_arn} answers 503: nothing is deployed behind it"


def forwarded_by(actions: list[dict[str, Any]]) -> dict[str, int]:
    """Target group ARN -> weight of the first forward action of a listener's ``actions`` (empty if none)."""
    for action in actions:
        if action.get("Type") != "forward":
            continue
        groups = (action.get("ForwardConfig") or {}).get("TargetGroups")
        if groups:
            return {str(g["TargetGroupArn"]): int(g.get("Weight", 1)) for g in groups}
        if action.get("TargetGroupArn"):
            return {str(action["TargetGroupArn"]): 1}
    return {}


def target_group_of(handle: Mapping[str, Any] | None) -> str | None:
    """The target group ARN an aws handle (JSON form) recorded from its stack's ``TargetGroupArn`` output;
    ``None`` without a handle. A handle without one is an :class:`AlbError`: the listener cannot reach it."""
    if handle is None:
        return None
    data = handle.get("data")
    arn = data.get("target_group_arn") if isinstance(data, Mapping) else None
    if not isinstance(arn, str) or not arn:
        raise AlbError(
            f"{handle.get('env', 'the environment')} has no target group recorded: the front door forwards "
            "to the island stack's TargetGroupArn output (deploy it again with a template that outputs it)"
        )
    return arn


def listener_url(elbv2: Any, listener_arn: str) -> str:
    """``<protocol>://<load balancer DNS name>[:port]`` of an ALB listener (the port only when not the
    protocol's default)."""
    listeners = aws_api.call(
        AlbError, f"describe listener {listener_arn}", elbv2.describe_listeners, ListenerArns=[listener_arn]
    )["Listeners"]
    if not listeners:
        raise AlbError(f"listener {listener_arn} does not exist")
    listener = listeners[0]
    balancers = aws_api.call(
        AlbError,
        f"describe load balancer {listener['LoadBalancerArn']}",
        elbv2.describe_load_balancers,
        LoadBalancerArns=[listener["LoadBalancerArn"]],
    )["LoadBalancers"]
    if not balancers:
        raise AlbError(f"the load balancer of listener {listener_arn} does not exist")
    scheme = "https" if listener.get("Protocol") == "HTTPS" else "http"
    port = int(listener.get("Port") or (443 if scheme == "https" else 80))
    default = 443 if scheme == "https" else 80
    return f"{scheme}://{balancers[0]['DNSName']}" + ("" if port == default else f":{port}")
