"""Costs on the ``local`` provider: what each island's processes (and each shared resource's) used so far.

The measures are CPU-seconds (user + system of every live process of the environment, its reaped children
included, from psutil) and memory-hours (the resident memory now times the hours since the environment
started: an estimate, said so in the report). Both cover the processes as they run now; an environment whose
processes are gone has no data. Traffic is each environment's requests through the local Dealer since it
first started (its tallies); islands reached directly, not through the Dealer, have no traffic data.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import psutil

from squals_action.costs.interface import CostReport
from squals_action.dealer.daemon import connect_dealer
from squals_action.dealer.interface import DealerError
from squals_action.dealer.layers import by_upstream
from squals_action.providers import daemon
from squals_action.providers.local import LocalProvider

CPU = "CPU-seconds"
MEMORY = "memory-hours"


def _usage(data: Mapping[str, Any], now: float) -> tuple[float, float] | None:
    """(CPU-seconds, memory-hours) of the recorded process group, or None when nothing of it runs."""
    raw = data.get("process")
    if not isinstance(raw, Mapping):
        return None
    try:
        record = daemon.ProcessRecord.from_json(raw)
    except (KeyError, TypeError, ValueError):
        return None
    cpu = rss = 0.0
    alive = False
    for pid in daemon.members(record):
        try:
            process = psutil.Process(pid)
            with process.oneshot():
                times = process.cpu_times()
                rss += process.memory_info().rss
        except psutil.Error:
            continue
        alive = True
        cpu += times.user + times.system + times.children_user + times.children_system
    if not alive:
        return None
    hours = max(0.0, now - float(data.get("started_at", now))) / 3600
    return cpu, rss / 2**30 * hours


def dealer_traffic(dealer_dir: Path) -> tuple[dict[str, int], str | None]:
    """Requests per environment through the local Dealer since it first started; a note when none runs."""
    try:
        client = connect_dealer(dealer_dir)
    except DealerError as exc:
        return {}, f"no traffic data: {exc.one_line()}"
    try:
        return {name: tally.activations for name, tally in by_upstream(client.tallies()).items()}, None
    except DealerError as exc:
        return {}, f"no traffic data: {exc.one_line()}"
    finally:
        client.close()


def local_costs(provider: LocalProvider, dealer_dir: Path) -> tuple[CostReport, CostReport]:
    """The CPU-seconds report and the memory-hours report of the project's islands and shared resources."""
    now = time.time()
    envs = {handle.env: _usage(handle.data, now) for handle in provider.list()}
    shared = {
        handle.name: usage
        for handle in provider.shared_resources().running()
        if (usage := _usage(handle.data, now)) is not None
    }
    requests, note = dealer_traffic(dealer_dir)
    traffic: dict[str, int | None] = {env: requests.get(env) for env in envs}
    traffic.update(requests)
    notes = [note] if note else []
    gone = sorted(env for env, usage in envs.items() if usage is None)
    if gone:
        notes.append(f"no data for {', '.join(gone)}: no process of it runs")
    period = "since each process started"
    reports = []
    for index, measure in enumerate((CPU, MEMORY)):
        extra = ["memory-hours: resident memory now x hours since start (an estimate)"] if index else []
        reports.append(
            CostReport(
                measure=measure,
                period=period,
                environments={env: (u[index] if u is not None else None) for env, u in envs.items()},
                shared={name: u[index] for name, u in shared.items()},
                traffic=traffic,
                notes=(*notes, *extra),
            )
        )
    return reports[0], reports[1]
