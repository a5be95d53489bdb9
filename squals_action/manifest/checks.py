"""Semantic checks the JSON Schema cannot express, located like schema errors.

They run on data that may also have schema errors, so every check looks at the shape it needs and
skips what is malformed (the schema already reported it).
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from squals_action.manifest.model import DEALER_METRICS, HOOK_STAGES, chaos_name
from squals_action.manifest.paths import reference_problem, script_of
from squals_action.manifest.problems import PathPart, Problem, format_where
from squals_action.manifest.schema import suggest
from squals_action.manifest.units import (
    CHANGE_RE,
    DURATION_RE,
    PERCENTAGE_RE,
    parse_amount,
    parse_change,
    parse_duration,
    parse_percentage,
)
from squals_action.manifest.yamlload import Document

#: The check run the action itself reports (github.runner.CHECK_NAME); ``gates.checks`` cannot wait for it.
OWN_CHECK = "squals"
#: Sections holding command lists: (path, group whose names must be unique, default-name prefix).
COMMAND_SECTIONS: tuple[tuple[tuple[str, ...], str, str], ...] = (
    (("gates", "compile"), "gate", "compile"),
    (("gates", "test"), "gate", "test"),
    *((("hooks", stage), "hook", stage) for stage in HOOK_STAGES),
    (("exit_tests",), "exit test", "exit"),
    (("rollout", "inflight_tests"), "in-flight test", "inflight"),
)

WEIGHT_TOLERANCE = 1e-6
#: The keys of a chaos test each kind uses beyond name, kind, expect, after and duration.
CHAOS_KEYS: dict[str, frozenset[str]] = {
    "kill": frozenset(),
    "latency": frozenset({"share", "delay"}),
    "abort": frozenset({"share", "status"}),
}
ALL_CHAOS_KEYS = frozenset({"share", "delay", "status"})


def default_command_name(prefix: str, index: int) -> str:
    """The name a command gets when it has none: its section and 1-based position, e.g. ``promote-2``."""
    return f"{prefix}-{index + 1}"


def get(data: Any, path: Sequence[PathPart]) -> Any:
    """The value at ``path`` or None when any step is missing or of the wrong shape."""
    for part in path:
        if isinstance(part, str) and isinstance(data, dict):
            data = data.get(part)
        elif isinstance(part, int) and isinstance(data, list) and 0 <= part < len(data):
            data = data[part]
        else:
            return None
    return data


@dataclass(frozen=True)
class VariantRef:
    """A variant's squals file reference that passed the path checks; the caller validates its content."""

    name: str
    path: tuple[PathPart, ...]
    ref: str
    file: Path


@dataclass
class Checker:
    doc: Document
    base_dir: Path
    repo_root: Path
    as_variant: bool = False
    problems: list[Problem] = field(default_factory=list)
    variants: list[VariantRef] = field(default_factory=list)

    @property
    def data(self) -> Any:
        return self.doc.data

    def add(self, path: Sequence[PathPart], message: str, *, key: bool = False) -> None:
        line, col = self.doc.position(path, key=key)
        self.problems.append(Problem(self.doc.file, line, col, format_where(path), message))

    def run(self) -> None:
        if not isinstance(self.data, dict):
            return
        self.commands()
        self.durations()
        self.references()
        self.front_door()
        self.shared()
        self.rollout()
        self.load_tests()
        self.experiment()
        self.advisories()
        self.own_check()

    # commands --------------------------------------------------------------------------------------

    def iter_commands(self) -> Iterator[tuple[tuple[PathPart, ...], str, str, int, dict[str, Any]]]:
        for section, group, prefix in COMMAND_SECTIONS:
            items = get(self.data, section)
            if not isinstance(items, list):
                continue
            for index, item in enumerate(items):
                if isinstance(item, dict):
                    yield (*section, index), group, prefix, index, item

    def commands(self) -> None:
        seen: dict[tuple[str, str], tuple[PathPart, ...]] = {}
        scripts: dict[tuple[str, str], str | None] = {}
        for path, group, prefix, index, item in self.iter_commands():
            name = item.get("name")
            explicit = isinstance(name, str)
            effective = name if isinstance(name, str) else default_command_name(prefix, index)
            where = (*path, "name") if explicit else path
            first = seen.get((group, effective))
            if first is not None:
                line = self.doc.position(first)[0]
                self.add(
                    where, f"expected unique {group} names; {effective!r} is already used at line {line}"
                )
            else:
                seen[(group, effective)] = where
            run = item.get("run")
            if isinstance(run, str):
                script = script_of(run)
                if script is not None:
                    workdir = item.get("workdir")
                    workdir = workdir if isinstance(workdir, str) else "."
                    key = (workdir, script)
                    if key not in scripts:
                        scripts[key] = reference_problem(
                            self.base_dir / workdir, self.repo_root, script, must_exist=False
                        )
                    problem = scripts[key]
                    if problem:
                        self.add((*path, "run"), problem)

    def own_check(self) -> None:
        """``squals`` is the action's own check run: waiting for it from inside it would never end."""
        names = get(self.data, ("gates", "checks"))
        for index, name in enumerate(names if isinstance(names, list) else []):
            if name == OWN_CHECK:
                self.add(
                    ("gates", "checks", index),
                    f"expected another check than {OWN_CHECK!r}: it is the check run of squals itself",
                )

    # durations -------------------------------------------------------------------------------------

    def durations(self) -> None:
        paths: list[tuple[PathPart, ...]] = [
            ("app", "health_timeout"),
            ("gates", "security", "timeout"),
            ("gates", "checks_timeout"),
            ("gates", "checks_interval"),
            ("rollout", "bake"),
            ("rollout", "check_interval"),
            ("load_tests", "duration"),
            ("load_tests", "timeout"),
        ]
        paths.extend((*path, "timeout") for path, *_ in self.iter_commands())
        shared = get(self.data, ("shared",))
        if isinstance(shared, dict):
            paths.extend(("shared", name, "ready_timeout") for name in shared)
        steps = get(self.data, ("rollout", "steps"))
        if isinstance(steps, list):
            paths.extend(("rollout", "steps", i, "bake") for i in range(len(steps)))
        chaos = get(self.data, ("rollout", "chaos"))
        if isinstance(chaos, list):
            paths.extend(
                ("rollout", "chaos", i, key) for i in range(len(chaos)) for key in ("duration", "delay")
            )
        for path in paths:
            value = get(self.data, path)
            if isinstance(value, str) and DURATION_RE.match(value) and parse_duration(value) <= 0:
                self.add(path, f"expected a positive duration, got {value!r}")

    # file references -------------------------------------------------------------------------------

    def check_ref(self, path: Sequence[PathPart], *, must_exist: bool, want: str = "file") -> Path | None:
        value = get(self.data, path)
        if not isinstance(value, str) or not value:
            return None
        problem = reference_problem(self.base_dir, self.repo_root, value, must_exist=must_exist, want=want)
        if problem:
            self.add(path, problem)
            return None
        return self.base_dir / value

    def references(self) -> None:
        self.check_ref(("app", "workdir"), must_exist=False, want="directory")
        provider = get(self.data, ("provider",))
        if isinstance(provider, dict):
            self.check_ref(("provider", "template"), must_exist=True)
            self.check_ref(("provider", "front_door", "template"), must_exist=True)
        for path, *_ in self.iter_commands():
            self.check_ref((*path, "workdir"), must_exist=False, want="directory")
        deps = ("gates", "security", "dependencies")
        files = get(self.data, (*deps, "files"))
        if isinstance(files, list):
            for index in range(len(files)):
                self.check_ref((*deps, "files", index), must_exist=False)
        self.check_ref((*deps, "offline_db"), must_exist=False)
        self.check_ref((*deps, "safety_db"), must_exist=False, want="directory")
        self.check_ref(("load_tests", "locustfile"), must_exist=True)

    # provider --------------------------------------------------------------------------------------

    def front_door(self) -> None:
        """A front door only for ``aws`` (locally the Dealer is the front door), declared once (not in a
        variant file: the variants share it); parameters only for a template (an existing listener has no
        stack to pass them to)."""
        door = get(self.data, ("provider", "front_door"))
        if not isinstance(door, dict):
            return
        if self.as_variant:
            self.add(
                ("provider", "front_door"),
                "expected no front_door in a variant file; the variants share the front door of the file "
                "that lists them",
                key=True,
            )
        kind = get(self.data, ("provider", "kind"))
        if kind != "aws":
            self.add(
                ("provider", "front_door"),
                f"expected no front_door for kind {kind!r}: only kind aws has one (locally the Dealer is "
                "the front door)",
                key=True,
            )
        if "listener_arn" in door and "parameters" in door and "template" not in door:
            self.add(
                ("provider", "front_door", "parameters"),
                "expected no parameters with listener_arn: only a front-door template takes parameters",
                key=True,
            )

    # shared resources ------------------------------------------------------------------------------

    def shared(self) -> None:
        """Each shared resource says how to run it on this file's provider (a resource that cannot be
        started would be a key that does nothing), declared once in the file that lists the variants."""
        shared = get(self.data, ("shared",))
        if not isinstance(shared, dict):
            return
        if self.as_variant and shared:
            self.add(
                ("shared",),
                "expected no shared resources in a variant file; the variants use those of the file that "
                "lists them",
                key=True,
            )
            return
        kind = get(self.data, ("provider", "kind")) or "local"
        needed, how = {
            "local": ("run", "the command that runs it on $PORT"),
            "aws": ("template", "its CloudFormation template"),
        }.get(str(kind), ("", ""))
        for name, item in shared.items():
            if not isinstance(item, dict):
                continue
            if needed and needed not in item:
                self.add(("shared", name), f"expected {needed} ({how}) for provider kind {kind!r}", key=True)
            if "template" in item:
                self.check_ref(("shared", name, "template"), must_exist=True)
            elif "parameters" in item:
                self.add(
                    ("shared", name, "parameters"),
                    "expected no parameters without template: only a template takes parameters",
                    key=True,
                )

    # rollout ---------------------------------------------------------------------------------------

    def rollout(self) -> None:
        self.share(("rollout", "blue_share"))
        self.steps()
        alarms = get(self.data, ("rollout", "alarms"))
        kind = get(self.data, ("provider", "kind")) or "local"
        if isinstance(alarms, list) and alarms and kind != "aws":
            self.add(
                ("rollout", "alarms"),
                f"expected no alarms for provider kind {kind!r}: alarms are CloudWatch alarms, read only "
                "with kind aws (a key that does nothing would look like a safeguard)",
                key=True,
            )
        self.chaos(str(kind))
        kpis = get(self.data, ("rollout", "kpis"))
        declared = self.declared_metrics()
        if isinstance(kpis, list):
            for index, kpi in enumerate(kpis):
                if isinstance(kpi, dict):
                    self.metric(("rollout", "kpis", index, "metric"), declared)
                    self.bounds(("rollout", "kpis", index), kpi, "min", "max")

    def chaos(self, provider: str) -> None:
        """Unique names; ``latency``/``abort`` only where the local Dealer injects them; no key a kind ignores
        (a key that does nothing would look like a safeguard); a share above 0 and a delay of at most 60s."""
        items = get(self.data, ("rollout", "chaos"))
        if not isinstance(items, list):
            return
        kinds = [item.get("kind") if isinstance(item, dict) else None for item in items]
        seen: dict[str, int] = {}
        for index, item in enumerate(items):
            kind = kinds[index]
            if not isinstance(item, dict) or kind not in CHAOS_KEYS:
                continue
            path: tuple[PathPart, ...] = ("rollout", "chaos", index)
            name = item.get("name") or chaos_name([str(k) for k in kinds], index)
            if name in seen:
                where = (*path, "name") if "name" in item else path
                self.add(
                    where,
                    f"expected unique chaos test names; {name!r} is already the name of #{seen[name] + 1}",
                )
            seen.setdefault(str(name), index)
            if kind != "kill" and provider != "local":
                self.add(
                    (*path, "kind"),
                    f"expected kind kill with provider kind {provider!r}: {kind} faults are injected by the "
                    "local Dealer, and an ALB listener has no fault injection",
                )
            for key in sorted(set(item) & (ALL_CHAOS_KEYS - CHAOS_KEYS[kind])):
                self.add(
                    (*path, key),
                    f"expected no {key} for kind {kind}: that kind does not use it",
                    key=True,
                )
            share = item.get("share")
            if isinstance(share, str) and PERCENTAGE_RE.match(share) and not 0 < float(share[:-1]) <= 100:
                self.add((*path, "share"), f"expected a share above 0% and at most 100%, got {share!r}")
            delay = item.get("delay")
            if isinstance(delay, str) and DURATION_RE.match(delay) and parse_duration(delay) > 60:
                self.add(
                    (*path, "delay"),
                    f"expected a delay of at most 60s (the Dealer's read timeout), got {delay!r}",
                )

    def share(self, path: tuple[PathPart, ...]) -> float | None:
        """The share at ``path`` in percent, reporting one outside 0..100 exclusive; None when absent."""
        share = get(self.data, path)
        if not (isinstance(share, str) and PERCENTAGE_RE.match(share)):
            return None
        number = float(share[:-1])
        if not 0 < number < 100:
            self.add(path, f"expected a share strictly between 0% and 100%, got {share!r}")
            return None
        return number

    def steps(self) -> None:
        """``steps`` or ``blue_share``, not both; at least one step; shares strictly increasing."""
        steps = get(self.data, ("rollout", "steps"))
        if not isinstance(steps, list):
            return
        if get(self.data, ("rollout", "blue_share")) is not None:
            self.add(
                ("rollout", "steps"),
                "expected either blue_share or steps, not both (blue_share is the short form of one step)",
                key=True,
            )
        if not steps:
            self.add(("rollout", "steps"), "expected at least one step, such as [10%, 50%]")
        previous: float | None = None
        for index, step in enumerate(steps):
            path: tuple[PathPart, ...] = ("rollout", "steps", index)
            share = self.share((*path, "share") if isinstance(step, dict) else path)
            if share is None:
                continue
            if previous is not None and share <= previous:
                self.add(
                    path,
                    f"expected shares that grow from step to step, got {share:g}% after {previous:g}%",
                )
            previous = share

    def bounds(self, path: tuple[PathPart, ...], item: dict[str, Any], low: str, high: str) -> None:
        try:
            lower, upper = parse_amount(item[low]), parse_amount(item[high])
        except (KeyError, ValueError):
            return
        if lower > upper:
            self.add((*path, low), f"expected {low} <= {high}, got {lower:g} > {upper:g}")

    # load tests ------------------------------------------------------------------------------------

    def load_tests(self) -> None:
        """A relative limit needs prod's figures to be relative to; a share of requests is at most 100 %,
        and a decrease of requests per second of 100 % or more would allow none at all."""
        load = get(self.data, ("load_tests",))
        limits = get(self.data, ("load_tests", "limits"))
        if not isinstance(load, dict) or not isinstance(limits, dict):
            return
        for key in ("p95", "p99", "min_rps"):
            value = limits.get(key)
            if isinstance(value, str) and CHANGE_RE.match(value) and load.get("baseline") != "prod":
                self.add(
                    ("load_tests", "limits", key),
                    f"expected baseline: prod for the relative limit {value!r} (relative to prod's figure)",
                )
        ratio = limits.get("failure_ratio")
        if isinstance(ratio, str) and PERCENTAGE_RE.match(ratio) and parse_percentage(ratio) > 100:
            self.add(("load_tests", "limits", "failure_ratio"), f"expected at most 100%, got {ratio!r}")
        rps = limits.get("min_rps")
        if isinstance(rps, str) and CHANGE_RE.match(rps) and parse_change(rps) <= -100:
            self.add(
                ("load_tests", "limits", "min_rps"),
                f"expected a decrease of less than 100%, got {rps!r} (it would allow no requests at all)",
            )

    # metrics ---------------------------------------------------------------------------------------

    def declared_metrics(self) -> set[str]:
        metrics = get(self.data, ("experiment", "metrics"))
        return {str(k) for k in metrics} if isinstance(metrics, dict) else set()

    def metric(self, path: tuple[PathPart, ...], declared: set[str]) -> None:
        value = get(self.data, path)
        if not isinstance(value, str) or value.startswith("event:"):
            return
        if value in DEALER_METRICS or value in declared:
            return
        message = (
            f"expected a Dealer metric ({', '.join(sorted(DEALER_METRICS))}), event:<name> or a metric "
            f"declared under experiment.metrics, got {value!r}"
        )
        hint = suggest(value, sorted(DEALER_METRICS | declared)) or f"event:{value}"
        self.add(path, f"{message}; did you mean {hint!r}?")

    # experiment ------------------------------------------------------------------------------------

    def experiment(self) -> None:
        experiment = get(self.data, ("experiment",))
        if not isinstance(experiment, dict):
            return
        if self.as_variant:
            self.add(
                ("experiment",),
                "expected no experiment in a variant file; the experiment belongs to the "
                "file that lists the variants",
                key=True,
            )
            return
        share = experiment.get("share")
        if isinstance(share, str) and share.endswith("%") and not 0.0 < parse_percentage(share) <= 100.0:
            self.add(("experiment", "share"), f"expected a share above 0% and at most 100%, got {share}")
        declared = self.declared_metrics()
        for key in ("numerator", "denominator"):
            self.metric(("experiment", "objective", key), declared)
        guardrails = experiment.get("guardrails")
        if isinstance(guardrails, list):
            for index, guard in enumerate(guardrails):
                if isinstance(guard, dict):
                    self.metric(("experiment", "guardrails", index, "metric"), declared)
        variants = experiment.get("variants")
        names = [str(k) for k in variants] if isinstance(variants, dict) else []
        control = experiment.get("control", "control")
        if isinstance(variants, dict) and isinstance(control, str) and control not in variants:
            where: tuple[PathPart, ...] = (
                ("experiment", "control") if "control" in experiment else ("experiment", "variants")
            )
            self.add(
                where,
                f"expected a control variant named {control!r}; the variants are "
                f"{', '.join(names) or 'none'}",
            )
        self.split(experiment, names, control if isinstance(control, str) else None)
        if isinstance(variants, dict):
            app_side = experiment.get("assignment") == "app"
            for name, variant in variants.items():
                if isinstance(variant, dict) and "squals" not in variant and not app_side:
                    self.add(
                        ("experiment", "variants", name),
                        "missing required key 'squals' (each variant runs its own island from its own squals "
                        "file; with `assignment: app` a variant is a branch of prod's code and needs none)",
                    )
                if isinstance(variant, dict) and isinstance(variant.get("squals"), str):
                    path = ("experiment", "variants", name, "squals")
                    file = self.check_ref(path, must_exist=True)
                    if file is not None:
                        self.variants.append(VariantRef(name, path, str(variant["squals"]), file))
        unit = experiment.get("unit")
        if isinstance(unit, dict) and unit.get("kind") == "header" and "name" not in unit:
            self.add(
                ("experiment", "unit"), "missing required key 'name' (the header that identifies a unit)"
            )

    def split(self, experiment: dict[str, Any], names: list[str], control: str | None) -> None:
        split = experiment.get("split")
        if not isinstance(split, dict) or not names:
            return
        total = 0.0
        numeric = True
        for name, weight in split.items():
            if name not in names:
                hint = suggest(str(name), names)
                self.add(
                    ("experiment", "split", name),
                    f"expected a variant name, got {name!r}"
                    + (f"; did you mean {hint!r}?" if hint else f" (variants: {', '.join(names)})"),
                    key=True,
                )
            try:
                amount = parse_amount(weight)
            except ValueError:
                numeric = False
                continue
            total += amount
        for name in names:
            if name not in split:
                role = "the control variant" if name == control else "variant"
                self.add(("experiment", "split"), f"expected a weight for {role} {name!r}")
        if numeric and not math.isclose(total, 100.0, abs_tol=WEIGHT_TOLERANCE):
            self.add(("experiment", "split"), f"expected weights adding up to 100, they add up to {total:g}")

    # advisories ------------------------------------------------------------------------------------

    def advisories(self) -> None:
        path = ("gates", "security", "dependencies", "ignore")
        ignore = get(self.data, path)
        if not isinstance(ignore, list):
            return
        for index, item in enumerate(ignore):
            expires = item.get("expires") if isinstance(item, dict) else None
            if isinstance(expires, str) and len(expires) == 10:
                try:
                    datetime.date.fromisoformat(expires)
                except ValueError:
                    self.add((*path, index, "expires"), f"expected a real calendar date, got {expires!r}")


def semantic_problems(
    doc: Document, base_dir: Path, repo_root: Path, *, as_variant: bool = False
) -> tuple[list[Problem], list[VariantRef]]:
    """Semantic problems of one document and the variant files it references (checked by the caller)."""
    checker = Checker(doc, base_dir, repo_root, as_variant=as_variant)
    checker.run()
    return checker.problems, checker.variants
