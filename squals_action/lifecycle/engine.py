"""The lifecycle's side effects: deploy, promote, rollback, teardown, down; one state commit per transition.

Every decision comes from :mod:`squals_action.lifecycle.machine`; this module runs hooks and tests, calls the
provider and the traffic splitter, and records each transition with :meth:`StateStore.transact` while holding
the environment's lock (``pr-N`` for an island, ``prod`` for promotion and rollback). Each transaction
re-checks the lock in the same commit, so a lock broken by someone else stops us at the next step.

Ordering rules that keep prod serving whatever fails:

* when traffic must go *back* to GREEN (breach, failing promote hook, interrupt), the switch happens first
  and the commit after, so users are protected even if the state branch is unreachable;
* when traffic moves *forward* (BLUE gets its share, completion, rollback), the switch happens first too and
  is undone if the commit fails, so the state never claims a routing the Dealer does not have;
* a retired environment is destroyed only after the Dealer has drained its in-flight requests.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from squals_action import gitcmd
from squals_action.errors import SqualsError
from squals_action.lifecycle import machine
from squals_action.lifecycle.bake import BakeOutcome, BakeTick, HealthReading, bake
from squals_action.lifecycle.hooks import CommandRun, failure_message, run_sequence
from squals_action.lifecycle.kpi import KpiReading
from squals_action.lifecycle.machine import Check, Env, Event, Fleet, Status
from squals_action.lifecycle.traffic import Traffic
from squals_action.manifest.model import HookStage, Manifest
from squals_action.providers.interface import EnvironmentHandle, Provider
from squals_action.state.interface import Documents, EnvironmentState, StateStore, Transition, utc_now

#: The lock promotions, rollbacks and ``down`` hold: the live side of the project.
PROD_LOCK = "prod"
#: Extra lock time beyond the bake and the hooks' timeouts, in seconds.
LOCK_MARGIN = 600.0

E, S = Event, Status


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


@dataclass(frozen=True)
class Outcome:
    """What one command did, for the terminal view and the PR comment."""

    operation: Literal["deploy", "promote", "rollback", "teardown", "down"]
    ok: bool
    message: str
    env: str | None
    fleet: Mapping[str, Env]
    checks: tuple[Check, ...] = ()
    kpis: tuple[KpiReading, ...] = ()
    metrics: Mapping[str, float | None] = field(default_factory=dict)
    public_url: str | None = None
    elapsed: float = 0.0


# ------------------------------------------------------------------------------------------ documents


def env_from_state(doc: EnvironmentState) -> Env | None:
    """The lifecycle's view of a state document; ``None`` for environments other concerns own."""
    try:
        status = Status(doc.status)
    except ValueError:
        return None
    extra = dict(doc.extra)
    previous, last = extra.get("previous"), extra.get("last_event")
    return Env(
        name=doc.name,
        status=status,
        share=doc.traffic_share,
        pr=doc.pr,
        commit=doc.commit,
        url=doc.url,
        handle=dict(doc.handle) if doc.handle else None,
        reason=extra.get("reason"),
        checks=tuple(Check.from_doc(c) for c in extra.get("checks", ())),
        previous=Status(previous) if previous else None,
        last_event=Event(last) if last else None,
    )


def state_from_env(env: Env, old: EnvironmentState | None, provider_kind: str) -> EnvironmentState:
    now = utc_now()
    extra: dict[str, Any] = dict(old.extra) if old is not None else {}
    extra.update(
        {
            "reason": env.reason,
            "checks": [c.to_doc() for c in env.checks],
            "previous": env.previous.value if env.previous else None,
            "last_event": env.last_event.value if env.last_event else None,
        }
    )
    return EnvironmentState(
        name=env.name,
        status=env.status.value,
        commit=env.commit,
        provider=provider_kind,
        handle=dict(env.handle) if env.handle else {},
        url=env.url,
        traffic_share=env.share,
        pr=env.pr,
        created_at=old.created_at if old is not None and old.created_at else now,
        updated_at=now,
        extra=extra,
    )


def fleet_of(docs: Documents | Any) -> dict[str, Env]:
    """Every lifecycle environment in a snapshot or working copy."""
    fleet: dict[str, Env] = {}
    for name, doc in docs.environments().items():
        env = env_from_state(doc)
        if env is not None:
            fleet[name] = env
    return fleet


# ------------------------------------------------------------------------------------------ the engine


@dataclass
class Lifecycle:
    """One project's lifecycle: its squals file, state store, provider and traffic splitter."""

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
    gates: Callable[[str], tuple[bool, str]] | None = None
    _lock_pr: dict[str, int] = field(default_factory=dict, init=False, repr=False)

    # ---- state ------------------------------------------------------------------------------------

    def fleet(self) -> dict[str, Env]:
        return fleet_of(self.store.read())

    def _record(
        self, event: Event, name: str, summary: str, *, step: str = "", **kwargs: Any
    ) -> dict[str, Env]:
        """Apply ``event`` through the machine inside one transaction; return the fleet it recorded."""
        recorded: list[dict[str, Env]] = []
        held = dict(self._lock_pr)

        def fn(docs: Documents) -> Documents:
            for lock_env, pr in held.items():  # a lock broken meanwhile stops us here, in the same commit
                docs.require_lock(lock_env, pr)
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
            event.value,
            summary,
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
    def _locked(self, env: str, pr: int, ttl: float) -> Iterator[None]:
        self.store.acquire_lock(
            env, pr=pr, run_id=self.run_id, actor=self.actor, ttl=ttl, attempt=self.attempt
        )
        self._lock_pr[env] = pr
        try:
            yield
        finally:
            self._lock_pr.pop(env, None)
            with contextlib.suppress(SqualsError):
                self.store.release_lock(
                    env, pr=pr, run_id=self.run_id, actor=self.actor, attempt=self.attempt
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
            cwd=base if base.is_absolute() else self.repo / base,
            log_dir=self.log_dir / env.name,
            variables=self.variables(env, fleet, stage),
        )

    def _hooks(self, stage: HookStage, env: Env, fleet: Fleet) -> tuple[Check, ...]:
        commands = self.manifest.hooks.for_stage(stage)
        if not commands:
            return ()
        self.progress.step(f"{stage} hooks ({len(commands)})")
        checks = run_sequence(commands, "hook", stage, self._run(env, fleet, stage))
        msg = failure_message(checks, f"{stage} hook")
        self.progress.done(msg or f"{stage} hooks passed", ok=msg is None)
        return checks

    def _hook_stage(
        self, stage: HookStage, name: str, fleet: Fleet, checks: list[Check]
    ) -> tuple[dict[str, Env], str | None]:
        """Run ``stage``'s hooks for ``name``, add them to ``checks`` and record hooks-ok or hooks-failed.

        Returns the recorded fleet and the failure message (``None`` when every hook passed).
        """
        results = self._hooks(stage, fleet[name], fleet)
        checks += results
        failed = failure_message(results, f"{stage} hook")
        recorded = self._record(
            E.HOOKS_FAILED if failed else E.HOOKS_OK,
            name,
            f"{name}: {failed}" if failed else f"{name}: {stage} hooks passed",
            step=stage,
            reason=failed,
            checks=tuple(checks),
        )
        return recorded, failed

    def _route(self, fleet: Fleet) -> str | None:
        """Point the splitter at the routed environments of ``fleet`` with their shares (none: stop it)."""
        upstreams = {e.name: e.url for e in fleet.values() if e.status in machine.ROUTED and e.url}
        if not upstreams:
            self.traffic.stop()
            return None
        weights = machine.weights(fleet)
        return self.traffic.route(upstreams, {k: v for k, v in weights.items() if k in upstreams})

    def _undo_route(self, fleet: Fleet) -> None:
        """Put the traffic back as ``fleet`` has it after a failed commit (whose error is what counts)."""
        with contextlib.suppress(Exception):
            self._route(fleet)

    def _destroy(self, env: Env) -> str:
        """Destroy an environment's process (by its recorded handle, or by name); returns a note."""
        handle: EnvironmentHandle | None = None
        if env.handle:
            with contextlib.suppress(SqualsError):
                handle = EnvironmentHandle.from_json(env.handle)
        if handle is None:
            handle = self.provider.get(env.name)
        if handle is None:
            return f"{env.name}: nothing running"
        outcome = self.provider.destroy(handle)
        return f"{env.name}: {'destroyed' if outcome.ok else 'not fully destroyed: ' + outcome.detail}"

    # ---- deploy -----------------------------------------------------------------------------------

    def deploy(self, pr: int, commit: str) -> Outcome:
        """Gates, before_preprod hooks, provision ``pr-N`` from ``commit``, after_preprod hooks, exit tests"""
        start = time.monotonic()
        name = f"pr-{pr}"
        commit = resolve_commit(self.repo, commit)
        ttl = LOCK_MARGIN + self.manifest.app.health_timeout + _timeouts(self.manifest, "deploy")
        checks: list[Check] = []

        def finish(ok: bool, message: str, fleet: Mapping[str, Env]) -> Outcome:
            self.progress.done(message, ok=ok)
            return Outcome(
                "deploy",
                ok,
                message,
                name,
                fleet,
                tuple(checks),
                elapsed=time.monotonic() - start,
                public_url=self.traffic.url(),
            )

        if self.gates is not None:
            self.progress.step("gates")
            gates_ok, summary = self.gates(commit)
            checks.append(Check("gate", "gates", "gates", gates_ok, summary))
            if not gates_ok:
                return finish(False, f"gates failed: {summary}; nothing was provisioned", self.fleet())
            self.progress.done(f"gates passed: {summary}")
        with self._locked(name, pr, ttl):
            fleet = self._record(
                E.DEPLOY, name, f"deploy {commit[:12]} to {name}", pr=pr, commit=commit, checks=()
            )
            fleet, failed = self._hook_stage("before_preprod", name, fleet, checks)
            if failed:
                return finish(False, f"{failed}; nothing was provisioned", fleet)
            self.progress.step(f"provision {name} from {commit[:12]}")
            try:
                handle = self.provider.provision(
                    name,
                    commit,
                    self.manifest,
                    extra_env={"SQUALS_PR": str(pr), "SQUALS_PROJECT": self.manifest.name},
                )
            except SqualsError as exc:
                why = f"provisioning failed: {exc.one_line()}"
                checks.append(Check("provider", "provision", name, False, exc.one_line()))
                fleet = self._record(
                    E.PROVISION_FAILED, name, f"{name}: {why}", reason=why, checks=tuple(checks)
                )
                return finish(False, why, fleet)
            checks.append(Check("provider", "provision", name, True, handle.url))
            fleet = self._record(
                E.PROVISION,
                name,
                f"{name} runs at {handle.url}",
                handle=handle.to_json(),
                url=handle.url,
                checks=tuple(checks),
            )
            self.progress.done(f"{name} is up at {handle.url}")
            fleet, failed = self._hook_stage("after_preprod", name, fleet, checks)
            if failed:
                return finish(False, f"{failed}; {name} is kept for inspection", fleet)
            env = fleet[name]
            tests: tuple[Check, ...] = ()
            if self.manifest.exit_tests:
                self.progress.step(f"exit tests ({len(self.manifest.exit_tests)}) against {env.url}")
                tests = run_sequence(
                    self.manifest.exit_tests,
                    "exit-test",
                    "exit",
                    self._run(env, fleet, "exit"),
                    stop_at_failure=False,
                )
            checks += tests
            failed = failure_message(tests, "exit test")
            if failed:
                fleet = self._record(
                    E.EXIT_TESTS_FAILED, name, f"{name}: {failed}", reason=failed, checks=tuple(checks)
                )
                return finish(False, f"{failed}; {name} is kept for inspection", fleet)
            fleet = self._record(E.EXIT_TESTS_OK, name, f"{name} is ready", checks=tuple(checks))
            return finish(True, f"{name} is ready", fleet)

    # ---- promote ----------------------------------------------------------------------------------

    def promote(self, pr: int) -> Outcome:
        """Blue/green: BLUE gets its share, bakes, promote hooks, takes 100 %; old prod becomes postprod."""
        start = time.monotonic()
        name = f"pr-{pr}"
        rollout = self.manifest.rollout
        ttl = LOCK_MARGIN + rollout.bake + _timeouts(self.manifest, "promote")
        checks: list[Check] = []
        kpis: tuple[KpiReading, ...] = ()
        metrics: Mapping[str, float | None] = {}

        def finish(ok: bool, message: str, fleet: Mapping[str, Env]) -> Outcome:
            self.progress.done(message, ok=ok)
            return Outcome(
                "promote",
                ok,
                message,
                name,
                fleet,
                tuple(checks),
                kpis,
                metrics,
                self.traffic.url(),
                time.monotonic() - start,
            )

        with self._locked(PROD_LOCK, pr, ttl):
            fleet = self.fleet()
            env = fleet.get(name) or Env(name)
            machine.step(name, env.status, E.PROMOTE_START)  # refuse early, with the machine's reason
            green = machine.prod(fleet)
            self._require_healthy(env, "BLUE")
            planned = machine.apply(fleet, E.PROMOTE_START, name, blue_share=rollout.blue_share)
            share = planned[name].share
            self.progress.step(
                f"{name} is BLUE with {share:g} %"
                + (f", {green.name} is GREEN" if green else " (first prod)")
            )
            self._route(planned)
            try:
                fleet = self._record(
                    E.PROMOTE_START,
                    name,
                    f"promote {name}: BLUE at {share:g} %",
                    blue_share=rollout.blue_share,
                    checks=(),
                )
            except BaseException:
                self._undo_route(fleet)  # the state did not move: neither does the traffic
                raise
            self.progress.done(f"traffic: {_shares(fleet)}")
            outcome: BakeOutcome
            if green is None:
                outcome = BakeOutcome(True, None)
                checks.append(
                    Check("kpi", "bake", "bake", True, "first prod: no GREEN to compare with or return to")
                )
            else:
                self.progress.step(f"bake {rollout.bake:g} s, checks every {rollout.check_interval:g} s")
                outcome = self._bake(fleet[name], fleet)
                kpis, metrics = outcome.readings, outcome.metrics
                checks += outcome.tests
                checks += tuple(Check("kpi", "bake", r.metric, r.ok, r.describe()) for r in outcome.readings)
            if not outcome.ok:
                reason = outcome.reason or "the bake failed"
                event = E.ABORT if self.cancel.is_set() else E.BAKE_BREACH
                fleet = self._back_to_green(event, name, fleet, reason, checks)
                return finish(
                    False,
                    f"{reason}; all traffic is back on GREEN {green.name if green else ''}".strip(),
                    fleet,
                )
            fleet = self._record(E.BAKE_OK, name, f"{name} baked", checks=tuple(checks))
            self.progress.done("bake passed")
            hooks = self._hooks("promote", fleet[name], fleet)
            checks += hooks
            failed = failure_message(hooks, "promote hook")
            if failed:
                fleet = self._back_to_green(E.PROMOTE_HOOK_FAILED, name, fleet, failed, checks)
                return finish(False, f"{failed}; promotion aborted, GREEN has its full share back", fleet)
            old_post = machine.postprod(fleet)
            planned = machine.apply(fleet, E.COMPLETE, name, checks=tuple(checks))
            self.progress.step(f"{name} takes 100 %")
            self._route(planned)
            try:
                fleet = self._record(
                    E.COMPLETE,
                    name,
                    f"{name} is prod" + (f", {green.name} is postprod" if green else ""),
                    checks=tuple(checks),
                )
            except BaseException:
                self._undo_route(machine.apply(fleet, E.PROMOTE_HOOK_FAILED, name))
                raise
            if old_post is not None and old_post.name != name:
                with contextlib.suppress(SqualsError):
                    self.traffic.drain([old_post.name], timeout=10.0)
                note = self._destroy(old_post)
                checks.append(Check("provider", "retire", old_post.name, True, note))
            self.progress.done(f"traffic: {_shares(fleet)}")
            fleet, failed = self._hook_stage("after_postprod", name, fleet, checks)
            if failed:
                return finish(False, f"{failed}; {name} stays prod (reported, not rolled back)", fleet)
            return finish(
                True, f"{name} is prod" + (f"; {green.name} is postprod at 0 %" if green else ""), fleet
            )

    def _bake(self, blue: Env, fleet: Fleet) -> BakeOutcome:
        handle = EnvironmentHandle.from_json(blue.handle) if blue.handle else None

        def health() -> HealthReading:
            if handle is None:
                return HealthReading(False, "no provider handle recorded")
            h = self.provider.health(handle, timeout=min(2.0, max(1.0, self.manifest.rollout.check_interval)))
            detail = f"{h.status}: {h.detail}" if h.detail else h.status
            return HealthReading(h.ok, detail, fatal=h.status in ("down", "stale"))

        return bake(
            blue=blue.name,
            rollout=self.manifest.rollout,
            tallies=self.traffic.tallies,
            health=health,
            tests=self._run(blue, fleet, "bake"),
            on_tick=self.progress.tick,
            cancel=self.cancel,
        )

    def _back_to_green(
        self, event: Event, name: str, fleet: Fleet, reason: str, checks: list[Check]
    ) -> dict[str, Env]:
        """Traffic first (users come first), then the record."""
        planned = machine.apply(fleet, event, name, reason=reason, checks=tuple(checks))
        self.progress.step("all traffic back to GREEN")
        self._route(planned)
        recorded = self._record(
            event, name, f"{name}: {reason}; traffic back to GREEN", reason=reason, checks=tuple(checks)
        )
        self.progress.done(f"traffic: {_shares(recorded)}")
        return recorded

    def _require_healthy(self, env: Env, role: str) -> None:
        if not env.handle:
            raise LifecycleError(f"{env.name} has no running environment recorded; deploy it again")
        health = self.provider.health(EnvironmentHandle.from_json(env.handle))
        if not health.ok:
            raise LifecycleError(f"{env.name} cannot become {role}: it is {health.status} ({health.detail})")

    # ---- rollback, teardown, down -----------------------------------------------------------------

    def rollback(self, pr: int | None = None) -> Outcome:
        """Swap prod and postprod in one traffic switch; an interrupted promotion returns to GREEN instead."""
        start = time.monotonic()
        fleet = self.fleet()
        current, blue = machine.prod(fleet), machine.candidate(fleet)
        # Aborting a promotion left behind by a dead process: act as the PR whose promotion it was.
        owner = blue if blue is not None else current
        holder = pr or (owner.pr if owner is not None and owner.pr else None) or 1
        with self._locked(PROD_LOCK, holder, LOCK_MARGIN):
            fleet = self.fleet()
            current, post, blue = machine.prod(fleet), machine.postprod(fleet), machine.candidate(fleet)
            if blue is not None:
                fleet = self._back_to_green(E.ABORT, blue.name, fleet, "promotion aborted by a rollback", [])
                on = current.name if current else "-"
                msg = f"the promotion of {blue.name} was aborted; all traffic is on {on}"
                return self._outcome("rollback", True, msg, blue.name, fleet, start)
            if current is None or post is None:
                raise LifecycleError("nothing to roll back to: rollback needs a prod and a postprod")
            self._require_healthy(post, "prod again")
            planned = machine.apply(fleet, E.ROLLBACK, current.name)
            self.progress.step(f"switch: {post.name} 100 %, {current.name} 0 %")
            self._route(planned)
            try:
                fleet = self._record(
                    E.ROLLBACK,
                    current.name,
                    f"rollback: {post.name} is prod again, {current.name} is postprod",
                )
            except BaseException:
                self._undo_route(fleet)
                raise
            msg = f"{post.name} is prod again; {current.name} is postprod at 0 %"
            self.progress.done(msg)
            return self._outcome("rollback", True, msg, post.name, fleet, start)

    def teardown(self, pr: int) -> Outcome:
        """Destroy the island of a closed PR; one that serves prod or postprod is kept and says so."""
        start = time.monotonic()
        name = f"pr-{pr}"
        with self._locked(name, pr, LOCK_MARGIN):
            fleet = self.fleet()
            env = fleet.get(name)
            if env is None or env.status is S.RETIRED:
                return self._outcome("teardown", True, f"{name}: nothing to tear down", name, fleet, start)
            try:
                machine.step(name, env.status, E.TEARDOWN)
            except machine.InvalidTransition as exc:
                if env.status in (S.PROD, S.POSTPROD):
                    return self._outcome("teardown", True, f"kept: {exc.one_line()}", name, fleet, start)
                raise
            self.progress.step(f"tear down {name}")
            note = self._destroy(env)
            fleet = self._record(E.TEARDOWN, name, f"tear down {name}", reason=None)
            self.progress.done(note)
            return self._outcome("teardown", True, note, name, fleet, start)

    def down(self) -> Outcome:
        """Stop everything this project started (environments, the Dealer) and record it in one commit."""
        start = time.monotonic()
        fleet = self.fleet()
        notes = []
        for env in sorted(fleet.values(), key=lambda e: e.name):
            if env.status is not S.RETIRED:
                self.progress.step(f"stop {env.name}")
                notes.append(self._destroy(env))
        for extra in self.provider.down():  # anything the state does not know about
            notes.append(f"{extra.env}: {'destroyed' if extra.ok else extra.detail}")
        if self.traffic.stop():
            notes.append("Dealer stopped")

        def fn(docs: Documents) -> Documents | None:
            before = fleet_of(docs)
            after = machine.down_all(before)
            changed = False
            for env_name, env in after.items():
                if before.get(env_name) != env:
                    docs.put_environment(state_from_env(env, docs.environment(env_name), self.provider.kind))
                    changed = True
            for lock_env in list(docs.locks()):
                if lock_env == PROD_LOCK or lock_env in before:
                    docs.remove_lock(lock_env)
                    changed = True
            return docs if changed else None

        key = f"{self.run_id}/{self.attempt}/down" if self.run_id else None
        result = self.store.transact(
            fn,
            Transition(
                "down",
                "down: every environment stopped",
                run_id=self.run_id,
                actor=self.actor,
                attempt=self.attempt,
                key=key,
            ),
        )
        msg = "; ".join(notes) if notes else "nothing was running"
        self.progress.done(msg)
        return self._outcome("down", True, msg, None, fleet_of(result.snapshot), start)

    def _outcome(
        self, op: Any, ok: bool, msg: str, env: str | None, fleet: Mapping[str, Env], start: float
    ) -> Outcome:
        return Outcome(
            op, ok, msg, env, fleet, public_url=self.traffic.url(), elapsed=time.monotonic() - start
        )


def resolve_commit(repo: Path, ref: str) -> str:
    """The full SHA of ``ref`` (state documents record commits, never branch names)."""
    return gitcmd.resolve_commit(repo, ref, error=LifecycleError)


def _pr_of(name: str) -> int | None:
    if name.startswith("pr-") and name[3:].isdigit():
        return int(name[3:])
    return None


def _timeouts(manifest: Manifest, op: str) -> float:
    hooks = manifest.hooks
    if op == "deploy":
        commands = (*hooks.before_preprod, *hooks.after_preprod, *manifest.exit_tests)
    else:
        commands = (*hooks.promote, *hooks.after_postprod, *manifest.rollout.inflight_tests)
    return sum(c.timeout for c in commands)


def _shares(fleet: Fleet) -> str:
    routed = machine.weights(fleet)
    return ", ".join(f"{k} {v:g} %" for k, v in routed.items()) or "none"
