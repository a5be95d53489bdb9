"""Load tests as a stage: Locust, headless, against an island after its exit tests, judged on Locust's own
statistics; with ``baseline: prod`` the same profile then runs against prod and relative limits use its
figures.

Locust is an optional extra that pulls in gevent, so it is never imported here: it runs as a subprocess
(:func:`squals_action.process.run_command`: its own process group, a timeout, a log file) with every value
from the squals file in ``SQUALS_*`` variables, never in the command text. Its figures come from its
``--json-file``, which Locust writes once, at shutdown, from its final statistics (the ``--csv`` files are
rewritten once a second while it runs and missed 55 of 227 requests of a 3 s run). A Locust that is missing,
cannot start, exits with an error or records no request is an error ("no data"), never a pass.
"""

from __future__ import annotations

import json
import math
import os
import shlex
import shutil
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from squals_action.errors import SqualsError
from squals_action.lifecycle.hooks import CommandRun
from squals_action.lifecycle.machine import Check, Env
from squals_action.manifest.model import LoadLimit, LoadTests
from squals_action.process import ProcessError, read_log_tail, run_command

LOCUST_MISSING = "Locust is not installed: pip install 'squals-action[load]' (the squals file has load_tests)"

#: Limits in the order the report shows them: key in the squals file, label, unit, a lower bound?
LIMITS: tuple[tuple[str, str, str, bool], ...] = (
    ("min_rps", "requests/s", "", True),
    ("failure_ratio", "failure ratio", " %", False),
    ("p95", "p95", " ms", False),
    ("p99", "p99", " ms", False),
)


class LocustMissing(SqualsError):
    """The squals file has load tests and this machine has no Locust: said before anything is deployed."""


class NoData(Exception):
    """A Locust run that proved nothing: it could not run, failed, or recorded no request."""


@dataclass(frozen=True, kw_only=True)
class LoadFigures:
    """Locust's statistics of one run over all its requests: counts, requests per second, percentiles."""

    env: str
    requests: int
    failures: int
    rps: float
    p95: float | None
    p99: float | None

    @property
    def failure_ratio(self) -> float:
        """Failed requests in percent of all (a run without requests is never made into figures)."""
        return 100.0 * self.failures / self.requests

    def figure(self, key: str) -> float | None:
        """The figure a limit ``key`` bounds (``min_rps`` bounds requests per second)."""
        value: float | None = self.rps if key == "min_rps" else getattr(self, key)
        return value


@dataclass(frozen=True, kw_only=True)
class LimitReading:
    """One limit against the island's figure; ``bound`` is ``None`` when a relative limit had no prod."""

    key: str
    value: float | None
    limit: LoadLimit
    bound: float | None
    baseline: float | None = None

    @property
    def judged(self) -> bool:
        return self.value is not None and self.bound is not None

    @property
    def ok(self) -> bool:
        """Kept, or not judged for want of a prod; a figure Locust did not measure is never a pass."""
        if self.value is None:
            return False
        if self.bound is None:
            return True
        return self.value >= self.bound if _lower(self.key) else self.value <= self.bound

    def bound_text(self) -> str:
        """``max 300 ms``, ``max 48.4 ms (prod +10%)`` or ``prod +10%`` while there is no prod."""
        unit = _unit(self.key)
        word = "min" if _lower(self.key) else "max"
        relative = f"prod {self.limit.value:+g}%" if self.limit.relative else ""
        if self.bound is None:
            return relative
        text = f"{word} {fmt(self.bound)}{unit}"
        return f"{text} ({relative})" if relative else text

    def describe(self) -> str:
        """``p95 812 ms > max 300 ms``: one phrase for messages and checks."""
        label = _label(self.key)
        if self.value is None:
            return f"{label}: no data (Locust timed no request)"
        value = f"{label} {fmt(self.value)}{_unit(self.key)}"
        if self.bound is None:
            return f"{value}, not judged: no prod to compare with ({self.bound_text()})"
        if not self.ok:
            return f"{value} {'<' if _lower(self.key) else '>'} {self.bound_text()}"
        return f"{value} ({self.bound_text()})"


@dataclass(frozen=True, kw_only=True)
class LoadTestResult:
    """What the stage found: the island's figures, prod's when asked for, each limit, or why there is no
    data."""

    island: LoadFigures | None
    baseline: LoadFigures | None = None
    readings: tuple[LimitReading, ...] = ()
    error: str | None = None
    duration: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None and all(r.ok for r in self.readings)

    def failure(self) -> str | None:
        """``load test failed: p95 812 ms > max 300 ms`` or ``None`` when every limit was kept."""
        if self.error is not None:
            return f"load test failed: no data: {self.error}"
        broken = [r.describe() for r in self.readings if not r.ok]
        return f"load test failed: {'; '.join(broken)}" if broken else None

    def summary(self) -> str:
        """One line for the progress view and the check: the island's figures and the verdict."""
        failed = self.failure()
        if failed is not None or self.island is None:
            return failed or "load test: no data"
        f = self.island
        figures = f"{f.requests} requests, {fmt(f.rps)}/s, {fmt(f.failure_ratio)} % failed" + "".join(
            f", {k} {fmt(v)} ms" for k, v in (("p95", f.p95), ("p99", f.p99)) if v is not None
        )
        unjudged = [r.describe() for r in self.readings if not r.judged]
        return f"{figures}; limits kept" + (f"; {'; '.join(unjudged)}" if unjudged else "")

    def check(self) -> Check:
        """The stage as one check on the environment (state branch, hooks-and-tests table)."""
        return Check(
            kind="load-test",
            stage="load",
            name="locust",
            ok=self.ok,
            detail=self.summary(),
            duration=self.duration,
            no_data=self.error is not None,
        )


def _lower(key: str) -> bool:
    return next(lower for k, _, _, lower in LIMITS if k == key)


def _label(key: str) -> str:
    return next(label for k, label, _, _ in LIMITS if k == key)


def _unit(key: str) -> str:
    return next(unit for k, _, unit, _ in LIMITS if k == key)


def fmt(value: float) -> str:
    """Three significant digits, whole numbers from 1000 on (``812``, ``43.5``, ``1300``)."""
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"


# ---- judging ---------------------------------------------------------------------------------------


def limits_of(spec: LoadTests) -> tuple[tuple[str, LoadLimit], ...]:
    """The declared limits in report order; ``failure_ratio`` is always absolute."""
    declared = {
        "min_rps": spec.min_rps,
        "failure_ratio": None if spec.failure_ratio is None else LoadLimit(spec.failure_ratio),
        "p95": spec.p95,
        "p99": spec.p99,
    }
    return tuple((key, limit) for key, *_ in LIMITS if (limit := declared[key]) is not None)


def judge(spec: LoadTests, island: LoadFigures, baseline: LoadFigures | None) -> tuple[LimitReading, ...]:
    """Each declared limit against the island's figures; a relative one against prod's figure changed by
    its percentage (``+10%``: at most 110 % of prod's p95; ``-10%``: at least 90 % of prod's rps)."""
    readings = []
    for key, limit in limits_of(spec):
        base = baseline.figure(key) if baseline is not None else None
        if not limit.relative:
            bound: float | None = limit.value
        elif base is None:
            bound = None
        else:
            bound = base * (1.0 + limit.value / 100.0)
        readings.append(
            LimitReading(key=key, value=island.figure(key), limit=limit, bound=bound, baseline=base)
        )
    return tuple(readings)


# ---- Locust's statistics ---------------------------------------------------------------------------


def percentile(times: Mapping[int, int], count: int, share: float) -> float | None:
    """Locust's own percentile of a ``{rounded ms: requests}`` histogram (``stats.calculate_response_time_
    percentile``): the smallest time that at least ``share`` of the ``count`` timed requests did not
    exceed; ``None`` without a timed request."""
    if count <= 0:
        return None
    within = int(count * share)
    seen = 0
    for ms in sorted(times, reverse=True):
        seen += times[ms]
        if count - seen <= within:
            return float(ms)
    return 0.0


def read_figures(path: Path, env: str) -> LoadFigures:
    """The run's figures over all entries of Locust's ``--json-file`` (one per request name and method)."""
    try:
        entries: Any = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NoData(f"Locust wrote no statistics ({path.name} is missing)") from None
    except (OSError, ValueError) as exc:
        raise NoData(f"Locust's statistics {path} are unreadable: {exc}") from None
    try:
        return _aggregate(entries, env)
    except (TypeError, KeyError, ValueError, AttributeError) as exc:
        raise NoData(f"Locust's statistics {path} are not in the expected form: {exc!r}") from None


def _aggregate(entries: Sequence[Mapping[str, Any]], env: str) -> LoadFigures:
    requests = sum(int(e["num_requests"]) for e in entries)
    if requests <= 0:
        raise NoData("Locust recorded no request")
    failures = sum(int(e["num_failures"]) for e in entries)
    timed = requests - sum(int(e.get("num_none_requests") or 0) for e in entries)
    times: dict[int, int] = {}
    for entry in entries:
        for ms, count in entry["response_times"].items():
            times[int(float(ms))] = times.get(int(float(ms)), 0) + int(count)
    start = min(float(e["start_time"]) for e in entries)
    last = max(float(e["last_request_timestamp"] or start) for e in entries)
    return LoadFigures(
        env=env,
        requests=requests,
        failures=failures,
        rps=requests / (last - start) if last > start else 0.0,
        p95=percentile(times, timed, 0.95),
        p99=percentile(times, timed, 0.99),
    )


# ---- running Locust --------------------------------------------------------------------------------


def find_locust(python: Path | None = None, path: str | None = None) -> str | None:
    """The ``locust`` script installed beside this Python (a virtualenv, the image), else one on ``PATH``."""
    beside = (python or Path(sys.executable)).parent / "locust"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("locust", path=path)


def require_locust() -> str:
    """The ``locust`` to run, or one line saying how to install it."""
    locust = find_locust()
    if locust is None:
        raise LocustMissing(LOCUST_MISSING)
    return locust


def locust_command(locust: str, spec: LoadTests) -> str:
    """The command line: the profile's numbers, checked by the schema; paths and URLs travel in variables."""
    return (
        f"{shlex.quote(locust)} --headless --only-summary --exit-code-on-error 0"
        f' -f "$SQUALS_LOCUSTFILE" --host "$SQUALS_URL" --json-file "$SQUALS_LOAD_STATS"'
        f" -u {spec.users} -r {spec.spawn_rate:g} -t {max(1, math.ceil(spec.duration))}s"
    )


def run_locust(spec: LoadTests, target: Env, run: CommandRun, locust: str) -> LoadFigures:
    """One Locust run against ``target``; raises :class:`NoData` when it proved nothing."""
    stats = run.log_dir / f"load-{target.name}"
    written = stats.with_name(stats.name + ".json")  # Locust adds the suffix
    log = run.log_dir / f"load-{target.name}.log"
    written.unlink(missing_ok=True)  # a previous run's figures must never count for this one
    env = {
        **run.variables,
        "SQUALS_STAGE": "load",
        "SQUALS_LOCUSTFILE": str(run.cwd / spec.locustfile),
        "SQUALS_LOAD_STATS": str(stats),
    }
    try:
        result = run_command(
            locust_command(locust, spec),
            log_path=log,
            timeout=spec.timeout,
            env=env,
            cwd=run.cwd,
            grace=5.0,
            passthrough=run.passthrough,
        )
    except ProcessError as exc:
        raise NoData(f"{target.name}: {exc.one_line()}") from None
    if not result.ok:
        why = f"timed out after {spec.timeout:g} s" if result.timed_out else f"exit {result.exit_code}"
        tail = " | ".join(read_log_tail(log, max_bytes=2048, max_lines=3).strip().splitlines())
        raise NoData(f"{target.name}: Locust {why}; log {log}" + (f"; last output: {tail}" if tail else ""))
    try:
        return read_figures(written, target.name)
    except NoData as exc:
        raise NoData(f"{target.name}: {exc}; log {log}") from None


def run_load_tests(
    spec: LoadTests,
    island: Env,
    prod: Env | None,
    run_for: Callable[[Env], CommandRun],
    announce: Callable[[str], None],
    locust: str,
) -> LoadTestResult:
    """The island's run, then (``baseline: prod`` with a prod) the same profile against prod, judged.

    The runs take turns, not both at once: on a shared machine each would slow the other. The island goes
    first so a run without data there costs no load on prod.
    """
    start = time.monotonic()
    try:
        announce(f"load test: {spec.users} users for {spec.duration:g} s against {island.name}")
        figures = run_locust(spec, island, run_for(island), locust)
        baseline = None
        if spec.baseline == "prod" and prod is not None:
            announce(f"load test baseline: the same profile against prod {prod.name}")
            baseline = run_locust(spec, prod, run_for(prod), locust)
    except NoData as exc:
        return LoadTestResult(island=None, error=str(exc), duration=time.monotonic() - start)
    return LoadTestResult(
        island=figures,
        baseline=baseline,
        readings=judge(spec, figures, baseline),
        duration=time.monotonic() - start,
    )
