"""The gate pipeline: ``[compile] -> [applicable tests]`` in parallel with ``[security]``.

All gates share one pool of ``concurrency`` workers (default: the number of cores), so a long security scan
and the compile step overlap. Tests start once every compile gate passed; if one did not, the tests are
reported as skipped with the reason. Every gate yields a result, whatever the others do.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from squals_action.gates.checks import STAGE, Fetch, not_checked, wait_for_checks
from squals_action.gates.command import CommandGate
from squals_action.gates.interface import Gate, GateContext, GateResult, run_one
from squals_action.manifest.model import EMPTY, Gates, GateStage

ResultCallback = Callable[[GateResult], None]


def default_concurrency() -> int:
    return os.cpu_count() or 1


def run_gates(
    ctx: GateContext,
    compile_gates: Sequence[Gate] = (),
    test_gates: Sequence[Gate] = (),
    security_gates: Sequence[Gate] = (),
    *,
    concurrency: int | None = None,
    on_result: ResultCallback | None = None,
) -> list[GateResult]:
    """Run the pipeline and return results in declaration order: compile, test, security."""
    limit = max(1, concurrency or default_concurrency())
    lock = threading.Lock()

    def job(gate: Gate) -> GateResult:
        result = run_one(gate, ctx)
        if on_result is not None:
            with lock:
                on_result(result)
        return result

    def skipped(gate: Gate, reason: str) -> GateResult:
        now = time.time()
        result = GateResult(gate.name, gate.stage, "skip", 0.0, reason, started_at=now, ended_at=now)
        if on_result is not None:
            with lock:
                on_result(result)
        return result

    with ThreadPoolExecutor(max_workers=limit, thread_name_prefix="squals-gate") as pool:
        security: list[Future[GateResult]] = [pool.submit(job, g) for g in security_gates]
        compiled = [f.result() for f in [pool.submit(job, g) for g in compile_gates]]
        broken = [r.name for r in compiled if not r.ok]
        if broken:
            reason = f"not run: compile gate {', '.join(broken)} did not pass"
            tests = [skipped(g, reason) for g in test_gates]
        else:
            tests = [f.result() for f in [pool.submit(job, g) for g in test_gates]]
        secured = [f.result() for f in security]
    return [*compiled, *tests, *secured]


def build_gates(
    model: Gates,
    *,
    stages: Collection[GateStage] | None = None,
    sources: Mapping[str, object] | None = None,
) -> tuple[list[Gate], list[Gate], list[Gate]]:
    """The gates the squals file declares, split by stage; ``stages`` keeps only those stages.

    ``sources`` overrides vulnerability sources by name (tests, air-gapped setups); see
    :func:`squals_action.gates.security.registry.build_sources`.
    """
    wanted = set(stages) if stages else {"compile", "test", "security"}
    compile_gates: list[Gate] = (
        [CommandGate(c, "compile") for c in model.compile] if "compile" in wanted else []
    )
    test_gates: list[Gate] = [CommandGate(t, "test") for t in model.test] if "test" in wanted else []
    security_gates: list[Gate] = []
    if "security" in wanted and model.security is not None:
        from squals_action.gates.security.gates import security_gates_for

        security_gates = list(security_gates_for(model.security, sources=sources))
    return compile_gates, test_gates, security_gates


def make_context(
    repo: Path,
    log_dir: Path,
    *,
    base: str | None = None,
    head: str = "HEAD",
    env: Mapping[str, str] = EMPTY,
    base_dir: Path | None = None,
    passthrough: tuple[str, ...] = (),
    environ: Mapping[str, str] | None = None,
) -> GateContext:
    """A context for ``repo``; with a ``base``, the changed files of ``BASE...HEAD`` drive path filters.

    ``environ`` is squals' own environment (default ``os.environ``; the action passes the one it was given):
    the vulnerability sources take their documented variables from it, whichever entry point runs them.
    """
    from squals_action.gates.changes import changed_files
    from squals_action.gates.security.registry import source_environment

    changed = changed_files(repo, base, head) if base else None
    squals_env = {
        "SQUALS_REPO": str(repo),
        "SQUALS_HEAD_REF": head,
        "SQUALS_LOG_DIR": str(log_dir),
        **({"SQUALS_BASE_REF": base} if base else {}),
        **env,
    }
    return GateContext(
        repo=repo,
        log_dir=log_dir,
        base=base,
        head=head,
        changed_files=changed,
        env=squals_env,
        base_dir=base_dir,
        passthrough=passthrough,
        source_env=source_environment(os.environ if environ is None else environ),
    )


def run_pipeline(
    model: Gates,
    ctx: GateContext,
    *,
    stages: Collection[GateStage] | None = None,
    concurrency: int | None = None,
    on_result: ResultCallback | None = None,
    sources: Mapping[str, object] | None = None,
    checks: Fetch | None = None,
) -> list[GateResult]:
    """Build the declared gates and run them; the one call the action and ``squals gates`` make.

    ``gates.checks`` come last: with ``checks`` (the commit's check runs and statuses, on GitHub) they are
    waited for once the gates here passed; without it they are reported as not checked (skipped).
    """
    compile_gates, test_gates, security_gates = build_gates(model, stages=stages, sources=sources)
    results = run_gates(
        ctx, compile_gates, test_gates, security_gates, concurrency=concurrency, on_result=on_result
    )
    if not model.checks or (stages and "checks" not in stages):
        return results
    if checks is None:
        waited = not_checked(model.checks)
    elif not all_ok(results):
        now = time.time()
        reason = f"not waited for: gate {next(r.name for r in results if not r.ok)} did not pass"
        waited = [
            GateResult(n, STAGE, "skip", 0.0, reason, started_at=now, ended_at=now) for n in model.checks
        ]
    else:
        waited = wait_for_checks(
            model.checks, checks, timeout=model.checks_timeout, interval=model.checks_interval
        )
    for result in waited:
        if on_result is not None:
            on_result(result)
    return [*results, *waited]


def all_ok(results: Sequence[GateResult]) -> bool:
    """True when every gate passed or was skipped: the change may be provisioned."""
    return all(r.ok for r in results)
