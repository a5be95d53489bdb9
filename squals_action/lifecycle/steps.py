"""What every lifecycle command is made of: record a transition, hold a lock, run hooks, route traffic.

:class:`Steps` holds one project's parts (squals file, state store, provider, traffic splitter) and the
steps the commands share; :mod:`~squals_action.lifecycle.promote` builds the promotion from them and
:mod:`~squals_action.lifecycle.engine` the other commands. :class:`Outcome` is what every command returns.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Self

from squals_action.errors import SqualsError
from squals_action.faults import point
from squals_action.lifecycle import machine
from squals_action.lifecycle.bake import BakeTick
from squals_action.lifecycle.hooks import CommandRun, failure_message, run_sequence
from squals_action.lifecycle.kpi import KpiReading
from squals_action.lifecycle.load_tests import LoadTestResult
from squals_action.lifecycle.machine import Check, Env, Event, Fleet
from squals_action.lifecycle.parts import bound_to, provider_at
from squals_action.lifecycle.records import fleet_of, state_from_env
from squals_action.lifecycle.signals import KpiSource
from squals_action.lifecycle.source import Source, checkout
from squals_action.lifecycle.traffic import Traffic
from squals_action.manifest.model import HookStage, Manifest
from squals_action.providers.interface import EnvironmentHandle, Provider
from squals_action.state.interface import Documents, Holder, StateStore, Transition

#: The lock promotions, rollbacks and ``down`` hold: the live side of the project.
PROD_LOCK = "prod"
#: Extra lock time beyond the bake and the hooks' timeouts, in seconds.
LOCK_MARGIN = 600.0

E = Event


class LifecycleError(SqualsError):
    """A lifecycle command could not do what was asked; the state says where things stand."""


class Progress:
    """What the engine tells the person watching; the default says nothing (tests, the Action's log)."""

    def step(self, text: str) -> None:
        """A step starts."""

    def done(self, text: str, ok: bool = True) -> None:
        """A step ended."""

    def tick(self, tick: BakeTick) -> None:
        """One check of the bake."""

    def load_test(self, result: LoadTestResult) -> None:
        """A load test's figures against its limits."""


Operation = Literal["deploy", "promote", "rollback", "teardown", "down"]


@dataclass(frozen=True, kw_only=True)
class Outcome:
    """What one command did, for the terminal view and the PR comment."""

    operation: Operation
    ok: bool
    message: str
    env: str | None
    fleet: Mapping[str, Env]
    checks: tuple[Check, ...] = ()
    kpis: tuple[KpiReading, ...] = ()
    metrics: Mapping[str, float | None] = field(default_factory=dict)
    public_url: str | None = None
    elapsed: float = 0.0
    #: A deploy's load test: the island's figures (and prod's) against the limits, for the results table.
    load_tests: LoadTestResult | None = None


@dataclass
class Steps:
    """One project's lifecycle parts and the steps its commands share."""

    repo: Path
    manifest: Manifest
    store: StateStore
    provider: Provider
    traffic: Traffic
    log_dir: Path
    progress: Progress = field(default_factory=Progress)
    run_id: str | None = None
    actor: str | None = None
    attempt: int = 1
    cancel: threading.Event = field(default_factory=threading.Event)
    #: The gates, run on the files of the commit a deploy records.
    gates: Callable[[Source], tuple[bool, str]] | None = None
    #: Where the bake reads BLUE's KPIs and stop signals (``None``: the traffic splitter's tallies).
    signals: KpiSource | None = None
    #: How long a command waits for a lock another run holds before it stops, in seconds.
    lock_wait: float = 0.0
    #: This run, as the locks it takes name it: another run (of any PR) is refused while it holds them.
    holder: Holder = field(default_factory=Holder.current)
    #: Where the commands of a squals file built in code run (a loaded file's own folder says it otherwise):
    #: the checkout of the commit being run; ``None`` until a command binds one (:meth:`at`).
    tree: Path | None = None
    _lock_pr: dict[str, int] = field(default_factory=dict, init=False, repr=False)
    #: What this command last routed (upstreams, weights): routing it again would be a call that changes
    #: nothing (on an ALB, a second ``modify_listener``).
    _routed: tuple[dict[str, str], dict[str, float]] | None = field(default=None, init=False, repr=False)

    # ---- state ------------------------------------------------------------------------------------

    def at(self, source: Source) -> Self:
        """This project bound to ``source``: its squals file and checkout, for one command; the bake watches
        the KPIs and alarms that squals file declares and, on aws, islands are built from its provider
        section and traffic moves through the front door it declares, not those of the file the project
        was opened with."""
        return dataclasses.replace(self.on(source), manifest=source.manifest, tree=source.root)

    def on(self, source: Source) -> Self:
        """This project with the provider, splitter and bake source of ``source``'s squals file (as
        :meth:`at` binds them), its own squals file kept: an experiment's winner is promoted holding its
        variant's file on the parts of the experiment's start commit."""
        traffic, signals = bound_to(source, self.traffic, self.signals)
        return dataclasses.replace(
            self, provider=provider_at(source, self.provider), traffic=traffic, signals=signals
        )

    @contextlib.contextmanager
    def provider_of(self, name: str) -> Iterator[Provider]:
        """The provider environment ``name`` was deployed with, for the time of one step: bound to the
        provider section of the commit its state document records (on aws its region), as its deploy was
        (:meth:`at`), never to the file this project was opened with. An environment not recorded, or
        recorded with no commit: this project's provider, there is nothing else to go by."""
        env = self.fleet().get(name)
        if env is None or not env.commit:
            yield self.provider
            return
        with checkout(self.repo, env.commit, self.manifest) as source:
            yield provider_at(source, self.provider)

    def fleet(self) -> dict[str, Env]:
        return fleet_of(self.store.read())

    def _record(
        self, event: Event, name: str, summary: str, *, step: str = "", **kwargs: Any
    ) -> dict[str, Env]:
        """Apply ``event`` through the machine inside one transaction; return the fleet it recorded."""
        recorded: list[dict[str, Env]] = []
        held = dict(self._lock_pr)

        def fn(docs: Documents) -> Documents:
            for lock_env, pr in held.items():  # a lock taken over meanwhile stops us here, in the same commit
                docs.require_lock(lock_env, pr, holder=self.holder)
            before = fleet_of(docs)
            after = machine.apply(before, event, name, **kwargs)
            for env_name, env in after.items():
                if before.get(env_name) != env:
                    docs.put_environment(state_from_env(env, docs.environment(env_name), self.provider.kind))
            recorded[:] = [after]
            return docs

        env_pr = kwargs.get("pr") or _pr_of(name)
        key = None
        if self.run_id is not None:
            key = f"{self.run_id}/{self.attempt}/{name}/{event.value}/{step}"
        meta = Transition(
            event=event.value,
            summary=summary,
            environment=name,
            pr=env_pr,
            run_id=self.run_id,
            actor=self.actor,
            attempt=self.attempt,
            key=key,
        )
        result = self.store.transact(fn, meta)
        if not recorded:  # replayed: a re-run of a step already recorded
            return fleet_of(result.snapshot)
        return recorded[0]

    @contextlib.contextmanager
    def _locked(self, env: str, pr: int, ttl: float, operation: str) -> Iterator[None]:
        """Hold ``env``'s lock for this run while the body runs (waiting up to :attr:`lock_wait` for it)."""
        self.store.acquire_lock(
            env,
            pr=pr,
            run_id=self.run_id,
            actor=self.actor,
            ttl=ttl,
            attempt=self.attempt,
            holder=self.holder,
            operation=operation,
            wait=self.lock_wait,
        )
        self._lock_pr[env] = pr
        try:
            yield
        finally:
            self._lock_pr.pop(env, None)
            with contextlib.suppress(SqualsError):
                self.store.release_lock(
                    env,
                    pr=pr,
                    run_id=self.run_id,
                    actor=self.actor,
                    attempt=self.attempt,
                    holder=self.holder,
                )

    # ---- variables and commands -------------------------------------------------------------------

    def variables(self, env: Env, fleet: Fleet, stage: str) -> dict[str, str]:
        """``SQUALS_*`` variables for hooks and tests: this environment and the project's roles."""
        out = {
            "SQUALS_PROJECT": self.manifest.name,
            "SQUALS_ENV": env.name,
            "SQUALS_URL": env.url or "",
            "SQUALS_COMMIT": env.commit or "",
            "SQUALS_PR": str(env.pr or ""),
            "SQUALS_STAGE": stage,
            "SQUALS_PUBLIC_URL": self.traffic.url() or "",
        }
        for label, found in (
            ("PROD", machine.prod(fleet)),
            ("POSTPROD", machine.postprod(fleet)),
            ("BLUE", machine.candidate(fleet)),
        ):
            out[f"SQUALS_{label}_ENV"] = found.name if found else ""
            out[f"SQUALS_{label}_URL"] = (found.url or "") if found else ""
        out["SQUALS_GREEN_ENV"], out["SQUALS_GREEN_URL"] = out["SQUALS_PROD_ENV"], out["SQUALS_PROD_URL"]
        return out

    def _run(self, env: Env, fleet: Fleet, stage: str) -> CommandRun:
        base = Path(self.manifest.base_dir)  # commands are written relative to the squals file
        return CommandRun(
            cwd=base if base.is_absolute() else (self.tree or self.repo) / base,
            log_dir=self.log_dir / env.name,
            variables=self.variables(env, fleet, stage),
            passthrough=self.manifest.env_passthrough,
        )

    def _hooks(self, stage: HookStage, env: Env, fleet: Fleet) -> tuple[Check, ...]:
        commands = self.manifest.hooks.for_stage(stage)
        if not commands:
            return ()
        self.progress.step(f"{stage} hooks ({len(commands)})")
        checks = run_sequence(commands, "hook", stage, self._run(env, fleet, stage))
        if all(check.ok for check in checks):
            self.progress.done(f"{stage} hooks passed")
        # a failure is shown once: by the command's last line, which says what it means for the environment
        return checks

    def run_stage(
        self, stage: HookStage | Literal["exit"], env: Env, fleet: Fleet
    ) -> tuple[tuple[Check, ...], str | None]:
        """Run ``stage``'s hooks (``exit``: the exit tests, every one of them) against ``env``; returns the
        checks and the failure message (``None``: all passed). Records nothing: a deploy records around it,
        an experiment's start runs it on its variants' islands the same way."""
        if stage != "exit":
            checks = self._hooks(stage, env, fleet)
            return checks, failure_message(checks, f"{stage} hook")
        tests = self.manifest.exit_tests
        if not tests:
            return (), None
        self.progress.step(f"exit tests ({len(tests)}) against {env.url}")
        run = self._run(env, fleet, "exit")
        checks = run_sequence(tests, "exit-test", "exit", run, stop_at_failure=False)
        return checks, failure_message(checks, "exit test")

    def _hook_stage(
        self, stage: HookStage, name: str, fleet: Fleet, checks: list[Check]
    ) -> tuple[dict[str, Env], str | None]:
        """Run ``stage``'s hooks for ``name``, add them to ``checks`` and record hooks-ok or hooks-failed.

        Returns the recorded fleet and the failure message (``None`` when every hook passed).
        """
        results, failed = self.run_stage(stage, fleet[name], fleet)
        checks += results
        recorded = self._record(
            E.HOOKS_FAILED if failed else E.HOOKS_OK,
            name,
            f"{name}: {failed}" if failed else f"{name}: {stage} hooks passed",
            step=stage,
            reason=failed,
            checks=tuple(checks),
        )
        return recorded, failed

    # ---- traffic and environments -----------------------------------------------------------------

    def _route(self, fleet: Fleet) -> str | None:
        """Point the splitter at the routed environments of ``fleet`` with their shares (none: stop it)."""
        upstreams = {
            e.name: where
            for e in fleet.values()
            if e.status in machine.ROUTED and (where := self.traffic.upstream(e.url, e.handle))
        }
        if not upstreams:
            point("before-switch:none")  # kill points of the fault sweep (squals_action.faults)
            self.traffic.stop()
            point("after-switch:none")
            self._routed = None
            return None
        weights = {k: v for k, v in machine.weights(fleet).items() if k in upstreams}
        if self._routed == (upstreams, weights):  # a first prod's completion: already all on BLUE
            return self.traffic.url()
        switch = ",".join(f"{k}={v:g}" for k, v in sorted(weights.items()))
        point(f"before-switch:{switch}")
        url = self.traffic.route(upstreams, weights)
        point(f"after-switch:{switch}")
        self._routed = (upstreams, weights)
        return url

    def _undo_route(self, fleet: Fleet) -> None:
        """Put the traffic back as ``fleet`` has it after a failed commit (whose error is what counts)."""
        with contextlib.suppress(Exception):
            self._route(fleet)

    def _destroy(self, env: Env) -> str:
        """Destroy an environment: the process its recorded handle names, then whatever the provider itself
        still holds under that name (a run killed between starting a process and recording it leaves the
        state with an older handle, or none); returns a note."""
        recorded: EnvironmentHandle | None = None
        if env.handle:
            with contextlib.suppress(SqualsError):
                recorded = EnvironmentHandle.from_json(env.handle)
        outcomes = [self.provider.destroy(recorded)] if recorded is not None else []
        left = self.provider.get(env.name)  # what is still there: what the record did not name
        if left is not None and left != recorded:
            outcomes.append(self.provider.destroy(left))
        if not outcomes:
            return f"{env.name}: nothing running"
        failed = [o.detail for o in outcomes if not o.ok]
        return f"{env.name}: {'not fully destroyed: ' + '; '.join(failed) if failed else 'destroyed'}"

    def _outcome(
        self,
        operation: Operation,
        ok: bool,
        message: str,
        env: str | None,
        fleet: Mapping[str, Env],
        start: float,
        *,
        checks: Sequence[Check] = (),
        kpis: tuple[KpiReading, ...] = (),
        metrics: Mapping[str, float | None] | None = None,
        load_tests: LoadTestResult | None = None,
    ) -> Outcome:
        """What a command that started at ``start`` did, with where users go now."""
        return Outcome(
            operation=operation,
            ok=ok,
            message=message,
            env=env,
            fleet=fleet,
            checks=tuple(checks),
            kpis=kpis,
            metrics=metrics if metrics is not None else {},
            public_url=self.traffic.url(),
            elapsed=time.monotonic() - start,
            load_tests=load_tests,
        )

    def _require_healthy(self, env: Env, role: str) -> None:
        if not env.handle:
            raise LifecycleError(f"{env.name} has no running environment recorded; deploy it again")
        health = self.provider.health(EnvironmentHandle.from_json(env.handle))
        if not health.ok:
            raise LifecycleError(f"{env.name} cannot become {role}: it is {health.status} ({health.detail})")


def _pr_of(name: str) -> int | None:
    if name.startswith("pr-") and name[3:].isdigit():
        return int(name[3:])
    return None


def timeouts(manifest: Manifest, op: Literal["deploy", "promote"]) -> float:
    """The hooks' and tests' timeouts one command may spend, in seconds (its lock must outlive them)."""
    hooks = manifest.hooks
    if op == "promote":
        commands = (*hooks.promote, *hooks.after_postprod, *manifest.rollout.inflight_tests)
        return sum(c.timeout for c in commands)
    commands = (*hooks.before_preprod, *hooks.after_preprod, *manifest.exit_tests)
    load = manifest.load_tests
    # The island's load-test run, and prod's for a baseline: each at most the load test's timeout.
    loads = 0.0 if load is None else load.timeout * (2 if load.baseline else 1)
    return sum(c.timeout for c in commands) + loads


def shares(fleet: Fleet) -> str:
    """``pr-1 80 %, pr-2 20 %``: the routed shares, for the progress view."""
    routed = machine.weights(fleet)
    return ", ".join(f"{k} {v:g} %" for k, v in routed.items()) or "none"
