"""The lifecycle's side effects: deploy, promote, rollback, teardown, down; one state commit per transition.

Every decision comes from :mod:`squals_action.lifecycle.machine`; this module runs hooks and tests, calls the
provider and the traffic splitter, and records each transition with :meth:`StateStore.transact` while holding
the environment's lock (``pr-N`` for an island, ``prod`` for promotion and rollback). Each transaction
re-checks the lock in the same commit, so a lock broken by someone else stops us at the next step. The steps
the commands share are in :mod:`~squals_action.lifecycle.steps`, the promotion in
:mod:`~squals_action.lifecycle.promote`; callers import :class:`Lifecycle` and what it returns from here.

Ordering rules that keep prod serving whatever fails:

* when traffic must go *back* to GREEN (breach, failing promote hook, interrupt), the switch happens first
  and the commit after, so users are protected even if the state branch is unreachable;
* when traffic moves *forward* (BLUE gets its share, completion, rollback), the switch happens first too and
  is undone if the commit fails, so the state never claims a routing the Dealer does not have;
* a retired environment is destroyed only after the Dealer has drained its in-flight requests.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from squals_action.errors import SqualsError
from squals_action.lifecycle import machine
from squals_action.lifecycle.hooks import CommandRun
from squals_action.lifecycle.load_tests import LoadTestResult, require_locust, run_load_tests
from squals_action.lifecycle.machine import Check, Env, Event, Status
from squals_action.lifecycle.promote import Promoter
from squals_action.lifecycle.records import fleet_of, state_from_env
from squals_action.lifecycle.source import Source, checkout
from squals_action.lifecycle.steps import (
    LOCK_MARGIN,
    PROD_LOCK,
    LifecycleError,
    Outcome,
    Progress,
    timeouts,
)
from squals_action.manifest.model import LoadTests
from squals_action.providers.interface import ProvisionError
from squals_action.state.interface import Documents, Transition

__all__ = ["PROD_LOCK", "Lifecycle", "LifecycleError", "Outcome", "Progress"]

E, S = Event, Status


class Lifecycle(Promoter):
    """One project's lifecycle: its squals file, state store, provider and traffic splitter."""

    # ---- deploy -----------------------------------------------------------------------------------

    def deploy(self, pr: int, commit: str | None = None, *, allow_dirty: bool = False) -> Outcome:
        """Gates, before_preprod hooks, provision ``pr-N``, after_preprod hooks, exit tests: all of them from
        ``commit``'s files (:mod:`~squals_action.lifecycle.source`), never the working tree's.

        ``commit=None`` deploys ``HEAD``, refusing uncommitted changes unless ``allow_dirty`` (then the
        working tree as it is is deployed and recorded as dirty).
        """
        with checkout(self.repo, commit, self.manifest, allow_dirty=allow_dirty) as source:
            return self.at(source)._deploy(pr, source)

    def _deploy(self, pr: int, source: Source) -> Outcome:
        start = time.monotonic()
        name = f"pr-{pr}"
        commit = source.commit
        ttl = LOCK_MARGIN + self.manifest.app.health_timeout + timeouts(self.manifest, "deploy")
        checks: list[Check] = []
        locust = require_locust() if self.manifest.load_tests is not None else ""  # before anything starts
        load: LoadTestResult | None = None

        def finish(ok: bool, message: str, fleet: Mapping[str, Env]) -> Outcome:
            self.progress.done(message, ok=ok)
            return self._outcome("deploy", ok, message, name, fleet, start, checks=checks, load_tests=load)

        if self.gates is not None:
            self.progress.step("gates")
            gates_ok, summary = self.gates(source)
            checks.append(Check(kind="gate", stage="gates", name="gates", ok=gates_ok, detail=summary))
            if not gates_ok:
                return finish(False, f"gates failed: {summary}; nothing was provisioned", self.fleet())
            self.progress.done(f"gates passed: {summary}")
        with self._locked(name, pr, ttl, "deploy"):
            fleet = self._record(
                E.DEPLOY,
                name,
                f"deploy {source.label} to {name}",
                pr=pr,
                commit=commit,
                dirty=source.dirty,
                checks=(),
            )
            fleet, failed = self._hook_stage("before_preprod", name, fleet, checks)
            if failed:
                return finish(False, f"{failed}; nothing was provisioned", fleet)
            self.progress.step(f"provision {name} from {source.label}")
            try:
                handle = self.provider.provision(
                    name,
                    source.tree,
                    self.manifest,
                    extra_env={"SQUALS_PR": str(pr), "SQUALS_PROJECT": self.manifest.name},
                )
            except SqualsError as exc:
                # the app's last lines go with the check, line by line, not into the one-line reason
                summary, tail = (
                    (exc.summary, exc.log_tail) if isinstance(exc, ProvisionError) else (exc.one_line(), "")
                )
                why = f"provisioning failed: {summary}"
                checks.append(
                    Check(
                        kind="provider", stage="provision", name=name, ok=False, detail=summary, output=tail
                    )
                )
                fleet = self._record(
                    E.PROVISION_FAILED, name, f"{name}: {why}", reason=why, checks=tuple(checks)
                )
                return finish(False, why, fleet)
            checks.append(Check(kind="provider", stage="provision", name=name, ok=True, detail=handle.url))
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
            tests, failed = self.run_stage("exit", fleet[name], fleet)
            checks += tests
            if not failed and self.manifest.load_tests is not None:
                load = self._load_tests(self.manifest.load_tests, fleet[name], fleet, locust)
                checks.append(load.check())
                failed = load.failure()
            if failed:
                fleet = self._record(
                    E.EXIT_TESTS_FAILED, name, f"{name}: {failed}", reason=failed, checks=tuple(checks)
                )
                return finish(False, f"{failed}; {name} is kept for inspection", fleet)
            fleet = self._record(E.EXIT_TESTS_OK, name, f"{name} is ready", checks=tuple(checks))
            return finish(True, f"{name} is ready", fleet)

    def _load_tests(self, spec: LoadTests, env: Env, fleet: Mapping[str, Env], locust: str) -> LoadTestResult:
        """Locust against the island (then prod, for a baseline); its summary on the progress view."""

        def run_for(target: Env) -> CommandRun:
            return self._run(target, fleet, "load")

        result = run_load_tests(spec, env, machine.prod(fleet), run_for, self.progress.step, locust)
        self.progress.load_test(result)
        if result.ok:  # a failure is the deploy's own last line: said once
            self.progress.done(result.summary())
        return result

    # ---- rollback, teardown, down -----------------------------------------------------------------

    def rollback(self, pr: int | None = None) -> Outcome:
        """Swap prod and postprod in one traffic switch; an interrupted promotion returns to GREEN instead."""
        start = time.monotonic()
        fleet = self.fleet()
        current, blue = machine.prod(fleet), machine.candidate(fleet)
        # Aborting a promotion left behind by a dead process: act as the PR whose promotion it was.
        owner = blue if blue is not None else current
        holder = pr or (owner.pr if owner is not None and owner.pr else None) or 1
        with self._locked(PROD_LOCK, holder, LOCK_MARGIN, "rollback"):
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
        """Destroy the island of a closed PR; one that serves prod or postprod is kept and says so.

        A PR that has nothing deployed, or whose island serves prod or postprod, writes nothing, not even its
        lock: a closed fork PR (whose token is read-only) or a PR whose gates never passed ends without a
        commit. Whatever happens is said in one line to the person watching.
        """
        start = time.monotonic()
        name = f"pr-{pr}"

        def said(message: str, fleet: Mapping[str, Env]) -> Outcome:
            self.progress.done(message)
            return self._outcome("teardown", True, message, name, fleet, start)

        fleet = self.fleet()
        untouched = _not_torn_down(name, fleet)
        if untouched is not None:
            return said(untouched, fleet)
        with self._locked(name, pr, LOCK_MARGIN, "teardown"):
            fleet = self.fleet()
            untouched = _not_torn_down(name, fleet)
            if untouched is not None:
                return said(untouched, fleet)
            env = fleet[name]
            machine.step(name, env.status, E.TEARDOWN)
            self.progress.step(f"tear down {name}")
            note = self._destroy(env)
            return said(note, self._record(E.TEARDOWN, name, f"tear down {name}", reason=None))

    def down(self) -> Outcome:
        """Stop everything this project started and record it in one commit: the splitter sends users nowhere
        first (the local Dealer stops, a listener answers 503), then every environment is destroyed. The front
        door itself is kept."""
        start = time.monotonic()
        fleet = self.fleet()
        notes = []
        closed = self.traffic.close()  # first: a listener must not forward to what is deleted next
        if closed:
            notes.append(closed)
        for env in sorted(fleet.values(), key=lambda e: e.name):
            if env.status is not S.RETIRED:
                self.progress.step(f"stop {env.name}")
                notes.append(self._destroy(env))
        for extra in self.provider.down():  # anything the state does not know about
            notes.append(f"{extra.env}: {'destroyed' if extra.ok else extra.detail}")

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
                event="down",
                summary="down: every environment stopped",
                run_id=self.run_id,
                actor=self.actor,
                attempt=self.attempt,
                key=key,
            ),
        )
        msg = "; ".join(notes) if notes else "nothing was running"
        self.progress.done(msg)
        return self._outcome("down", True, msg, None, fleet_of(result.snapshot), start)


def _not_torn_down(name: str, fleet: Mapping[str, Env]) -> str | None:
    """Why teardown leaves ``name`` as it is (nothing deployed; it serves prod or postprod), or None."""
    env = fleet.get(name)
    if env is None or env.status is S.RETIRED:
        return f"{name}: nothing to tear down"
    if env.status in (S.PROD, S.POSTPROD):
        try:
            machine.step(name, env.status, E.TEARDOWN)
        except machine.InvalidTransition as exc:
            return f"kept: {exc.one_line()}"
    return None
