"""The typed squals file: immutable values that every other concern reads instead of raw YAML.

Durations are stored in seconds and percentages in percent (``10%`` is ``10.0``), so no caller parses
strings again. Every command keeps its :class:`Location` so later failures can point at the squals file.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Literal, TypeVar

from squals_action.manifest.problems import in_commit, located

K = TypeVar("K")
V = TypeVar("V")

GateStage = Literal["compile", "test", "security", "checks"]
HookStage = Literal["before_preprod", "after_preprod", "promote", "after_postprod"]
HOOK_STAGES: tuple[HookStage, ...] = ("before_preprod", "after_preprod", "promote", "after_postprod")
Severity = Literal["low", "medium", "high", "critical"]
SEVERITIES: tuple[Severity, ...] = ("low", "medium", "high", "critical")

#: The per-unit cap of an event kind counted ``all`` without a ``cap`` (squals file and Dealer config alike).
DEFAULT_EVENT_CAP = 100
#: Metrics the Dealer measures for every variant without any declared source.
DEALER_METRICS: frozenset[str] = frozenset(
    {
        "visitors",
        "activations",
        "errors",
        "error_rate",
        "p50_latency_ms",
        "p95_latency_ms",
        "p99_latency_ms",
    }
)


class FrozenMap(Mapping[K, V]):
    """A read-only, hashable mapping: usable as a dataclass default and inside frozen values.

    (``MappingProxyType`` is read-only but unhashable, which dataclasses reject as a mutable default.)
    """

    __slots__ = ("_data", "_hash")

    def __init__(self, items: Mapping[K, V] | None = None) -> None:
        self._data: dict[K, V] = dict(items or {})
        self._hash: int | None = None

    def __getitem__(self, key: K) -> V:
        return self._data[key]

    def __iter__(self) -> Iterator[K]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash(frozenset(self._data.items()))
        return self._hash

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Mapping):
            return dict(self._data) == dict(other)
        return NotImplemented

    def __repr__(self) -> str:
        return f"FrozenMap({self._data!r})"


EMPTY: Mapping[str, str] = FrozenMap()


def frozen_map(items: Mapping[K, V]) -> Mapping[K, V]:
    """A read-only copy, so a model value cannot be changed behind its back."""
    return FrozenMap(items)


@dataclass(frozen=True, order=True)
class Location:
    """Where a value stands in a squals file; line and column are 1-based as editors show them."""

    file: str
    line: int
    col: int
    #: the commit the file was read from, as messages name it (``1a2b3c4d5e6f``); "" for the working tree
    commit: str = ""

    def __str__(self) -> str:
        return located(self.file, self.line, self.col, self.commit)


NOWHERE = Location("<unknown>", 1, 1)


@dataclass(frozen=True)
class Command:
    """A shell command the user declared: a gate, a hook, an exit or in-flight test."""

    name: str
    run: str
    timeout: float = 600.0
    env: Mapping[str, str] = EMPTY
    workdir: str = "."
    location: Location = NOWHERE


@dataclass(frozen=True)
class TestGate(Command):
    """A test gate; ``paths`` are glob filters: the gate runs only when a changed file matches one."""

    kind: Literal["unit", "integration", "provision", "other"] = "other"
    paths: tuple[str, ...] = ()


@dataclass(frozen=True)
class IgnoredAdvisory:
    """An advisory the team accepted, with the reason and an optional expiry after which it fails again."""

    id: str
    reason: str
    expires: date | None = None
    location: Location = NOWHERE


@dataclass(frozen=True)
class DependencyScan:
    files: tuple[str, ...] = ()
    sources: tuple[Literal["osv", "safety", "offline"], ...] = ("osv",)
    fail_on: Severity = "high"
    ignore: tuple[IgnoredAdvisory, ...] = ()
    offline_db: str | None = None
    safety_db: str | None = None
    location: Location = NOWHERE


@dataclass(frozen=True)
class RiskPolicy:
    max_score: int = 60
    sensitive_paths: tuple[str, ...] = ()
    location: Location = NOWHERE


@dataclass(frozen=True)
class SecurityGate:
    dependencies: DependencyScan | None = None
    risk: RiskPolicy | None = None
    timeout: float = 600.0


@dataclass(frozen=True)
class Gates:
    """The gates; ``checks`` are other check runs or statuses of the commit, waited for on GitHub only."""

    compile: tuple[Command, ...] = ()
    test: tuple[TestGate, ...] = ()
    security: SecurityGate | None = None
    checks: tuple[str, ...] = ()
    checks_timeout: float = 1800.0
    checks_interval: float = 10.0


@dataclass(frozen=True)
class FrontDoor:
    """Where users arrive on AWS: a stack from ``template`` (created once) or an existing ``listener_arn``.

    Exactly one of the two is set (the schema says so); ``template`` is relative to the squals file's folder.
    """

    template: str | None = None
    parameters: Mapping[str, str] = EMPTY
    listener_arn: str | None = None
    location: Location = NOWHERE


@dataclass(frozen=True)
class Provider:
    """Where environments run: ``local`` processes on this machine, or ``aws`` CloudFormation stacks."""

    kind: Literal["local", "aws"] = "local"
    region: str | None = None
    template: str | None = None
    parameters: Mapping[str, str] = EMPTY
    front_door: FrontDoor | None = None
    location: Location = NOWHERE
    #: Absolute folder of the squals file that declared this section: its ``template`` resolves against it
    #: (a variant file's section, used for a project's provider, keeps its own). "" when built by hand.
    base_dir: str = ""


@dataclass(frozen=True)
class App:
    start: str
    health: str = "/healthz"
    health_timeout: float = 30.0
    env: Mapping[str, str] = EMPTY
    workdir: str = "."
    location: Location = NOWHERE


@dataclass(frozen=True)
class Hooks:
    before_preprod: tuple[Command, ...] = ()
    after_preprod: tuple[Command, ...] = ()
    promote: tuple[Command, ...] = ()
    after_postprod: tuple[Command, ...] = ()

    def for_stage(self, stage: HookStage) -> tuple[Command, ...]:
        hooks: tuple[Command, ...] = getattr(self, stage)
        return hooks


@dataclass(frozen=True)
class Kpi:
    """A bound a metric must keep during the bake; ``max`` and ``min`` are in the metric's own unit."""

    metric: str
    max: float | None = None
    min: float | None = None
    location: Location = NOWHERE


@dataclass(frozen=True)
class RolloutStep:
    """One step of a progressive rollout: BLUE's share, and the step's own bake (``None``: the rollout's)."""

    share: float
    bake: float | None = None


NoData = Literal["inconclusive", "promote"]
ChaosKind = Literal["kill", "latency", "abort"]
ChaosExpect = Literal["back-to-green", "survive"]


@dataclass(frozen=True)
class Chaos:
    """One chaos test of a promotion: a fault injected into BLUE after ``after`` seconds for ``duration``
    seconds, and the outcome the squals file declares. ``share`` (percent of BLUE's requests), ``delay``
    (seconds) and ``status`` concern ``latency`` and ``abort`` only."""

    name: str
    kind: ChaosKind
    expect: ChaosExpect
    after: float = 0.0
    duration: float = 30.0
    share: float = 100.0
    delay: float = 1.0
    status: int = 503
    location: Location = NOWHERE


def chaos_name(kinds: list[str], index: int) -> str:
    """A chaos test's default name: its kind, with its position (1-based) when the kind repeats."""
    kind = kinds[index]
    return kind if kinds.count(kind) == 1 else f"{kind}-{index + 1}"


@dataclass(frozen=True)
class Rollout:
    """How BLUE takes over: ``steps`` (or the short form ``blue_share``, one step), each baked under KPIs.

    A step's bake that ends without data (a KPI without a value, BLUE with fewer than ``min_requests``
    requests) is inconclusive unless ``on_no_data`` is ``promote``; ``alarms`` are CloudWatch alarm names
    whose ``ALARM`` state stops the bake.
    """

    blue_share: float = 10.0
    bake: float = 900.0
    check_interval: float = 10.0
    inflight_tests: tuple[Command, ...] = ()
    kpis: tuple[Kpi, ...] = ()
    steps: tuple[RolloutStep, ...] = ()
    min_requests: int = 1
    on_no_data: NoData = "inconclusive"
    alarms: tuple[str, ...] = ()
    location: Location = NOWHERE
    chaos: tuple[Chaos, ...] = ()

    def plan(self) -> tuple[RolloutStep, ...]:
        """The steps with their bakes resolved; ``blue_share`` alone is one step."""
        steps = self.steps or (RolloutStep(self.blue_share),)
        return tuple(RolloutStep(s.share, self.bake if s.bake is None else s.bake) for s in steps)

    @property
    def total_bake(self) -> float:
        """Every step's bake and every chaos drill added up (what a promotion's lock must outlive)."""
        return sum(s.bake or 0.0 for s in self.plan()) + sum(c.after + c.duration for c in self.chaos)


@dataclass(frozen=True)
class LoadLimit:
    """A bound on one load-test figure: ``value`` in the figure's own unit, or, when ``relative``, a change
    in percent of prod's figure (``+10%`` is ``10.0``, ``-10%`` is ``-10.0``)."""

    value: float
    relative: bool = False


@dataclass(frozen=True)
class LoadTests:
    """Locust against each island after its exit tests (then against prod when ``baseline`` says so).

    Latencies are in milliseconds, ``failure_ratio`` in percent, ``min_rps`` in requests per second.
    """

    locustfile: str
    users: int
    spawn_rate: float
    duration: float
    timeout: float
    p95: LoadLimit | None = None
    p99: LoadLimit | None = None
    failure_ratio: float | None = None
    min_rps: LoadLimit | None = None
    baseline: Literal["prod"] | None = None
    location: Location = NOWHERE


@dataclass(frozen=True)
class Variant:
    """One experiment variant. ``squals`` is the path as written (relative to the declaring file's
    directory; ``""`` for an app-side variant declared without one); ``file`` is its absolute path and
    ``manifest`` its validated model (None when the variant is the declaring file itself, has no file, or
    when the model was built by hand)."""

    name: str
    squals: str
    location: Location = NOWHERE
    file: str = ""
    manifest: Manifest | None = None


@dataclass(frozen=True)
class StickyUnit:
    """What makes an assignment sticky: the Dealer's cookie, or a header the app already sends."""

    kind: Literal["cookie", "header"] = "cookie"
    name: str = "squals_unit"


@dataclass(frozen=True)
class Objective:
    """The quantity the experiment optimises per variant, of a ``kind``: ``proportion`` (units converting:
    ``numerator`` of ``denominator``), ``mean`` (``numerator`` per unit) or ``ratio`` (sum of ``numerator``
    over sum of ``denominator``, both per unit)."""

    metric: str
    direction: Literal["maximize", "minimize"]
    numerator: str
    denominator: str = "visitors"
    location: Location = NOWHERE
    kind: Literal["proportion", "mean", "ratio"] = "proportion"


@dataclass(frozen=True)
class Guardrail:
    """A metric a variant may not worsen: by more than a margin against control, or past ``max``.

    The margin is ``max_increase`` in the metric's own unit (points for ``error_rate``, ms for latencies)
    or ``max_relative_increase`` in percent of control's value.
    """

    metric: str
    max_increase: float | None = None
    max: float | None = None
    location: Location = NOWHERE
    max_relative_increase: float | None = None


@dataclass(frozen=True)
class MinDuration:
    seconds: float = 0.0
    activations: int = 0


@dataclass(frozen=True)
class Significance:
    alpha: float = 0.05
    method: Literal["sequential", "fixed"] = "sequential"


@dataclass(frozen=True)
class MetricSource:
    """A metric the app exposes elsewhere than through the Dealer.

    With ``units`` and ``squares`` (queries of the units and of the sum of each unit's value squared), the
    ``query`` is the sum over units and the metric is a mean per unit with its sufficient statistics.
    """

    name: str
    source: Literal["prometheus", "cloudwatch"]
    query: str
    url: str | None = None
    location: Location = NOWHERE
    units: str | None = None
    squares: str | None = None


@dataclass(frozen=True)
class Experiment:
    variants: Mapping[str, Variant]
    control: str
    split: Mapping[str, float]
    objective: Objective
    unit: StickyUnit = StickyUnit()
    guardrails: tuple[Guardrail, ...] = ()
    min_duration: MinDuration = MinDuration()
    significance: Significance = Significance()
    metrics: Mapping[str, MetricSource] = field(default_factory=FrozenMap)
    location: Location = NOWHERE
    #: Several experiments at once (``squals_action/dealer/layers.py``): the layer it splits, the percent of
    #: the layer's units it takes, and whether its variants are islands or assigned inside the app.
    layer: str = "default"
    share: float = 100.0
    assignment: Literal["islands", "app"] = "islands"
    #: event kind -> how many events one unit may count in the experiment's Dealer (a kind not named: 1)
    events: Mapping[str, int] = field(default_factory=FrozenMap)


@dataclass(frozen=True)
class SharedResource:
    """A resource every environment of the app uses, started once and kept across islands (``shared:``)."""

    name: str
    type: str
    options: Mapping[str, str] = EMPTY
    location: Location = NOWHERE
    #: ``local``: the command that runs it on ``$PORT``, and the URL template islands get.
    run: str | None = None
    url: str = "http://127.0.0.1:$PORT"
    ready_timeout: float = 30.0
    #: ``aws``: the resource's CloudFormation template (relative to the squals file) and its parameters.
    template: str | None = None
    parameters: Mapping[str, str] = EMPTY

    @property
    def env_var(self) -> str:
        return shared_env_var(self.name)


def shared_env_var(name: str) -> str:
    """The variable every island gets a shared resource's URL in: ``SQUALS_SHARED_<NAME>_URL``."""
    return "SQUALS_SHARED_" + re.sub(r"[^A-Za-z0-9]", "_", name).upper() + "_URL"


@dataclass(frozen=True)
class EnvironmentOverride:
    """Per-environment differences (``pr-*``, ``prod``, ``postprod``, a variant): app env and provider."""

    name: str
    app_env: Mapping[str, str] = EMPTY
    provider_parameters: Mapping[str, str] = EMPTY
    location: Location = NOWHERE


@dataclass(frozen=True)
class Manifest:
    """One validated squals file."""

    path: str
    name: str
    app: App
    version: int = 1
    provider: Provider = Provider()
    gates: Gates = Gates()
    hooks: Hooks = Hooks()
    exit_tests: tuple[Command, ...] = ()
    load_tests: LoadTests | None = None
    rollout: Rollout = Rollout()
    experiment: Experiment | None = None
    shared: Mapping[str, SharedResource] = field(default_factory=FrozenMap)
    environments: Mapping[str, EnvironmentOverride] = field(default_factory=FrozenMap)
    #: Names of squals' own secrets its commands may see (``squals_action.process.SECRET_VARIABLES``).
    env_passthrough: tuple[str, ...] = ()
    #: Absolute directory of the squals file: every relative path in it (``workdir``, scripts, variant
    #: files, templates) is relative to this directory. "." when the model was built by hand.
    base_dir: str = "."
    #: Absolute repository root the file's references must stay inside.
    repo_root: str = "."
    #: The commit the file was read from (a checkout's), as messages name it; "" for the working tree.
    commit: str = ""

    @property
    def shown(self) -> str:
        """How messages name this file: ``squals.yml``, or ``squals.yml in commit 1a2b3c4d5e6f``."""
        return in_commit(self.path, self.commit)

    def resolve(self, relative: str) -> str:
        """An absolute path for a path written in this file (a ``workdir``, a variant's ``squals``)."""
        return os.path.normpath(os.path.join(os.path.abspath(self.base_dir), relative))

    def app_env_for(self, environment: str) -> Mapping[str, str]:
        """The app's environment variables with the override for ``environment`` (or its ``pr-*`` glob)."""
        merged = dict(self.app.env)
        for pattern, override in self.environments.items():
            if pattern == environment or (pattern.endswith("*") and environment.startswith(pattern[:-1])):
                merged.update(override.app_env)
        return frozen_map(merged)
