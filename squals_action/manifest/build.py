"""Turn schema- and semantically-valid data into the frozen model; every part keeps its location."""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, cast

from squals_action.manifest import model as m
from squals_action.manifest.checks import COMMAND_SECTIONS, default_command_name
from squals_action.manifest.problems import PathPart
from squals_action.manifest.units import parse_amount, parse_change, parse_duration, parse_percentage
from squals_action.manifest.yamlload import Document


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _strings(value: Any) -> Mapping[str, str]:
    if not isinstance(value, dict):
        return m.EMPTY
    return m.frozen_map({str(k): _text(v) for k, v in value.items()})


def _duration(value: Any, default: float) -> float:
    return parse_duration(value) if isinstance(value, str) else default


def _amount(value: Any) -> float | None:
    return None if value is None else parse_amount(value)


def _limit(value: Any) -> m.LoadLimit | None:
    """``300`` (absolute) or ``"+10%"`` (relative to prod's figure)."""
    if value is None:
        return None
    if isinstance(value, str):
        return m.LoadLimit(parse_change(value), relative=True)
    return m.LoadLimit(float(value))


class Builder:
    def __init__(
        self,
        doc: Document,
        variants: Mapping[str, tuple[str, m.Manifest | None]],
        base_dir: Path,
        repo_root: Path,
        commit: str = "",
    ) -> None:
        self.doc = doc
        self.variants = variants
        self.base_dir = base_dir
        self.repo_root = repo_root
        #: the commit the file was read from, named with every location (``m.Location.commit``)
        self.commit = commit

    def loc(self, path: Sequence[PathPart]) -> m.Location:
        line, col = self.doc.position(path)
        return m.Location(self.doc.file, line, col, self.commit)

    def command(self, path: tuple[PathPart, ...], item: dict[str, Any], prefix: str, index: int) -> m.Command:
        return m.Command(
            name=str(item.get("name") or default_command_name(prefix, index)),
            run=str(item["run"]),
            timeout=_duration(item.get("timeout"), 600.0),
            env=_strings(item.get("env")),
            workdir=str(item.get("workdir", ".")),
            location=self.loc(path),
        )

    def test_gate(self, path: tuple[PathPart, ...], item: dict[str, Any], index: int) -> m.TestGate:
        base = self.command(path, item, "test", index)
        return m.TestGate(
            name=base.name,
            run=base.run,
            timeout=base.timeout,
            env=base.env,
            workdir=base.workdir,
            location=base.location,
            kind=cast(Any, item.get("kind", "other")),
            paths=tuple(str(p) for p in item.get("paths", ())),
        )

    def commands(self, data: dict[str, Any], path: tuple[str, ...]) -> tuple[m.Command, ...]:
        prefix = next(p for section, _, p in COMMAND_SECTIONS if section == path)
        node: Any = data
        for part in path:
            node = node.get(part, {}) if isinstance(node, dict) else {}
        items = node if isinstance(node, list) else []
        return tuple(self.command((*path, i), item, prefix, i) for i, item in enumerate(items))

    def build(self) -> m.Manifest:
        data: dict[str, Any] = self.doc.data
        return m.Manifest(
            path=self.doc.file,
            name=str(data["name"]),
            app=self.app(data["app"]),
            version=int(data["version"]),
            provider=self.provider(data.get("provider")),
            gates=self.gates(data),
            hooks=m.Hooks(**{stage: self.commands(data, ("hooks", stage)) for stage in m.HOOK_STAGES}),
            exit_tests=self.commands(data, ("exit_tests",)),
            load_tests=self.load_tests(data.get("load_tests")),
            rollout=self.rollout(data),
            experiment=self.experiment(data.get("experiment")),
            shared=m.frozen_map(
                {name: self.shared(name, item) for name, item in data.get("shared", {}).items()}
            ),
            environments=m.frozen_map(
                {
                    name: m.EnvironmentOverride(
                        name,
                        _strings(item.get("env")),
                        _strings(item.get("parameters")),
                        self.loc(("environments", name)),
                    )
                    for name, item in data.get("environments", {}).items()
                }
            ),
            env_passthrough=tuple(str(name) for name in data.get("env_passthrough", ())),
            base_dir=str(self.base_dir.absolute()),
            repo_root=str(self.repo_root.absolute()),
            commit=self.commit,
        )

    def shared(self, name: str, item: dict[str, Any]) -> m.SharedResource:
        return m.SharedResource(
            name,
            str(item["type"]),
            _strings(item.get("options")),
            self.loc(("shared", name)),
            run=item.get("run"),
            url=str(item.get("url", "http://127.0.0.1:$PORT")),
            ready_timeout=_duration(item.get("ready_timeout"), 30.0),
            template=item.get("template"),
            parameters=_strings(item.get("parameters")),
        )

    def app(self, app: dict[str, Any]) -> m.App:
        return m.App(
            start=str(app["start"]),
            health=str(app.get("health", "/healthz")),
            health_timeout=_duration(app.get("health_timeout"), 30.0),
            env=_strings(app.get("env")),
            workdir=str(app.get("workdir", ".")),
            location=self.loc(("app",)),
        )

    def provider(self, provider: Any) -> m.Provider:
        if not isinstance(provider, dict):
            return m.Provider()
        return m.Provider(
            kind=provider.get("kind", "local"),
            region=provider.get("region"),
            template=provider.get("template"),
            parameters=_strings(provider.get("parameters")),
            front_door=self.front_door(provider.get("front_door")),
            location=self.loc(("provider",)),
            base_dir=str(self.base_dir),
        )

    def front_door(self, door: Any) -> m.FrontDoor | None:
        if not isinstance(door, dict):
            return None
        return m.FrontDoor(
            template=door.get("template"),
            parameters=_strings(door.get("parameters")),
            listener_arn=door.get("listener_arn"),
            location=self.loc(("provider", "front_door")),
        )

    def gates(self, data: dict[str, Any]) -> m.Gates:
        gates = data.get("gates", {})
        tests = gates.get("test", [])
        return m.Gates(
            compile=self.commands(data, ("gates", "compile")),
            test=tuple(self.test_gate(("gates", "test", i), item, i) for i, item in enumerate(tests)),
            security=self.security(gates.get("security")),
            checks=tuple(gates.get("checks", ())),
            checks_timeout=_duration(gates.get("checks_timeout"), 1800.0),
            checks_interval=_duration(gates.get("checks_interval"), 10.0),
        )

    def security(self, security: Any) -> m.SecurityGate | None:
        if not isinstance(security, dict):
            return None
        base = ("gates", "security")
        deps = security.get("dependencies")
        risk = security.get("risk")
        scan = None
        if isinstance(deps, dict):
            scan = m.DependencyScan(
                files=tuple(str(f) for f in deps.get("files", ())),
                sources=tuple(deps.get("sources", ("osv",))),
                fail_on=deps.get("fail_on", "high"),
                ignore=tuple(
                    m.IgnoredAdvisory(
                        id=str(item["id"]),
                        reason=str(item["reason"]),
                        expires=datetime.date.fromisoformat(item["expires"]) if "expires" in item else None,
                        location=self.loc((*base, "dependencies", "ignore", i)),
                    )
                    for i, item in enumerate(deps.get("ignore", ()))
                ),
                offline_db=deps.get("offline_db"),
                safety_db=deps.get("safety_db"),
                location=self.loc((*base, "dependencies")),
            )
        policy = None
        if isinstance(risk, dict):
            policy = m.RiskPolicy(
                max_score=int(risk.get("max_score", 60)),
                sensitive_paths=tuple(str(p) for p in risk.get("sensitive_paths", ())),
                location=self.loc((*base, "risk")),
            )
        return m.SecurityGate(
            dependencies=scan, risk=policy, timeout=_duration(security.get("timeout"), 600.0)
        )

    def rollout(self, data: dict[str, Any]) -> m.Rollout:
        rollout = data.get("rollout")
        if not isinstance(rollout, dict):
            return m.Rollout()
        return m.Rollout(
            blue_share=parse_amount(rollout.get("blue_share", "10%")),
            bake=_duration(rollout.get("bake"), 900.0),
            check_interval=_duration(rollout.get("check_interval"), 10.0),
            inflight_tests=self.commands(data, ("rollout", "inflight_tests")),
            kpis=tuple(
                m.Kpi(
                    str(k["metric"]),
                    _amount(k.get("max")),
                    _amount(k.get("min")),
                    self.loc(("rollout", "kpis", i)),
                )
                for i, k in enumerate(rollout.get("kpis", ()))
            ),
            steps=tuple(self.rollout_step(s) for s in rollout.get("steps", ())),
            min_requests=int(rollout.get("min_requests", 1)),
            on_no_data=rollout.get("on_no_data", "inconclusive"),
            alarms=tuple(str(a) for a in rollout.get("alarms", ())),
            location=self.loc(("rollout",)),
            chaos=self.chaos(rollout.get("chaos", ())),
        )

    def chaos(self, items: list[dict[str, Any]]) -> tuple[m.Chaos, ...]:
        """``rollout.chaos``; a test without a name is called after its kind (``abort-2`` when repeated)."""
        kinds = [str(item["kind"]) for item in items]
        return tuple(
            m.Chaos(
                name=str(item.get("name") or m.chaos_name(kinds, index)),
                kind=item["kind"],
                expect=item["expect"],
                after=_duration(item.get("after"), 0.0),
                duration=_duration(item.get("duration"), 30.0),
                share=parse_amount(item.get("share", "100%")),
                delay=_duration(item.get("delay"), 1.0),
                status=int(item.get("status", 503)),
                location=self.loc(("rollout", "chaos", index)),
            )
            for index, item in enumerate(items)
        )

    def load_tests(self, load: Any) -> m.LoadTests | None:
        if not isinstance(load, dict):
            return None
        limits = load["limits"]
        users = int(load["users"])
        duration = parse_duration(load["duration"])
        ratio = limits.get("failure_ratio")
        return m.LoadTests(
            locustfile=str(load["locustfile"]),
            users=users,
            spawn_rate=float(load.get("spawn_rate", users)),
            duration=duration,
            timeout=_duration(load.get("timeout"), duration + 60.0),
            p95=_limit(limits.get("p95")),
            p99=_limit(limits.get("p99")),
            failure_ratio=None if ratio is None else parse_percentage(ratio),
            min_rps=_limit(limits.get("min_rps")),
            baseline=load.get("baseline"),
            location=self.loc(("load_tests",)),
        )

    @staticmethod
    def rollout_step(step: Any) -> m.RolloutStep:
        """``10%`` or ``{share: 10%, bake: 5m}``."""
        if isinstance(step, dict):
            bake = step.get("bake")
            return m.RolloutStep(parse_amount(step["share"]), parse_duration(bake) if bake else None)
        return m.RolloutStep(parse_amount(step))

    def experiment(self, exp: Any) -> m.Experiment | None:
        if not isinstance(exp, dict):
            return None
        base = ("experiment",)
        objective = exp["objective"]
        direction: Literal["maximize", "minimize"] = "maximize" if "maximize" in objective else "minimize"
        unit = exp.get("unit", "cookie")
        sticky = (
            m.StickyUnit()
            if isinstance(unit, str)
            else m.StickyUnit(unit.get("kind", "cookie"), str(unit.get("name", "squals_unit")))
        )
        min_duration = exp.get("min_duration", {})
        significance = exp.get("significance", {})
        variants = {}
        for name, item in exp["variants"].items():
            file, manifest = self.variants.get(name, ("", None))
            variants[name] = m.Variant(
                name,
                str(item.get("squals", "")),
                self.loc((*base, "variants", name)),
                file=file,
                manifest=manifest,
            )
        return m.Experiment(
            variants=m.frozen_map(variants),
            control=str(exp.get("control", "control")),
            split=m.frozen_map({str(k): parse_amount(v) for k, v in exp["split"].items()}),
            objective=m.Objective(
                metric=str(objective[direction]),
                direction=direction,
                numerator=str(objective["numerator"]),
                denominator=str(objective.get("denominator", "visitors")),
                location=self.loc((*base, "objective")),
                kind=objective.get("kind", "proportion"),
            ),
            unit=sticky,
            guardrails=tuple(
                m.Guardrail(
                    str(g["metric"]),
                    _amount(g.get("max_increase")),
                    _amount(g.get("max")),
                    self.loc((*base, "guardrails", i)),
                    max_relative_increase=_amount(g.get("max_relative_increase")),
                )
                for i, g in enumerate(exp.get("guardrails", ()))
            ),
            min_duration=m.MinDuration(
                _duration(min_duration.get("time"), 0.0), int(min_duration.get("activations", 0))
            ),
            significance=m.Significance(
                float(significance.get("alpha", 0.05)), significance.get("method", "sequential")
            ),
            metrics=m.frozen_map(
                {
                    name: m.MetricSource(
                        name,
                        item["source"],
                        str(item["query"]),
                        item.get("url"),
                        self.loc((*base, "metrics", name)),
                        units=item.get("units"),
                        squares=item.get("squares"),
                    )
                    for name, item in exp.get("metrics", {}).items()
                }
            ),
            location=self.loc(base),
            layer=str(exp.get("layer", "default")),
            share=parse_amount(exp.get("share", "100%")),
            assignment=exp.get("assignment", "islands"),
            events=m.frozen_map(
                {
                    str(name): 1 if rule["count"] == "once" else int(rule.get("cap", m.DEFAULT_EVENT_CAP))
                    for name, rule in exp.get("events", {}).items()
                }
            ),
        )
