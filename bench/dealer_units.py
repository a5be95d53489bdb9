"""``bench/dealer.py --units N``: the Dealer holding N units against the same Dealer holding 1,000.

Both Dealers start from a snapshot of synthetic units (random 64-bit keys split 50/50, 1-5 requests each,
10 % with a ``checkout`` and 10 % with a ``revenue`` value), so that N can be ten million without sending ten
million requests first. Then, on the same upstreams and in alternating rounds:

* memory per unit: the resident set (``/proc/PID/status`` VmRSS, supervisor and worker) of the N-unit Dealer
  minus the 1,000-unit one, over the difference in units; and the store's own count (rows in use and slot
  table, ``/healthz``);
* added p99: the 1-connection latency phase of ``bench/dealer.py`` on each (its median round), the N-unit
  Dealer against the 1,000-unit one (goal: within 1 ms);
* loop lag while persisting: the largest lateness of the Dealer's own 5 ms lag probe (``/healthz``) during a
  32-connection phase, with and without a compaction of all N units into a new snapshot (``POST /persist``)
  running meanwhile (goal: no stall above 10 ms). The journal is written all along: every request is in it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import dealer as base  # bench/dealer.py: upstreams and the load generator

BASE_UNITS = 1000


def write_units(state: Path, units: int, seed: int) -> None:
    """A snapshot of ``units`` synthetic units in ``state/tallies`` (what a long-running Dealer holds)."""
    import numpy as np

    from squals_action.dealer import columns as cols

    rng = np.random.default_rng(seed)
    out = cols.Columns.empty(["a", "b"], ["checkout", "revenue"])
    out.unit_key = np.unique(rng.integers(0, 2**64 - 1, units, dtype=np.uint64, endpoint=True))
    n = len(out.unit_key)
    out.unit_var = rng.integers(0, 2, n).astype(np.uint8)
    out.unit_acts = rng.integers(1, 6, n).astype(np.int64)
    buyers = rng.choice(n, n // 10, replace=False)
    payers = rng.choice(n, n // 10, replace=False)
    out.ev_key = np.concatenate([out.unit_key[buyers], out.unit_key[payers]])
    out.ev_kind = np.concatenate([np.zeros(len(buyers), np.int64), np.ones(len(payers), np.int64)])
    out.ev_count = np.ones(len(out.ev_key), np.int64)
    out.ev_value = np.concatenate([np.zeros(len(buyers)), rng.uniform(1, 100, len(payers)).round(2)])
    out.activations = np.bincount(out.unit_var, weights=out.unit_acts, minlength=2).astype(np.int64)
    (state / "tallies").mkdir(parents=True)
    cols.save(out, state / "tallies" / "snapshot-000000.npz")
    (state / "tallies" / "names.json").write_text(json.dumps({"variants": out.variants, "kinds": out.kinds}))


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def bench_units(args: argparse.Namespace) -> int:
    from squals_action.dealer import DealerConfig, DealerError, connect_dealer, start_dealer, stop_dealer

    procs: list[subprocess.Popen[str]] = []
    workdir = Path(tempfile.mkdtemp(prefix="squals-bench-units-"))
    states = {"base": workdir / "base", "units": workdir / "units"}
    try:
        started = time.perf_counter()
        write_units(states["base"], BASE_UNITS, 1)
        write_units(states["units"], args.units, 2)
        made = time.perf_counter() - started
        ports = {name: base.start_upstream(name, procs) for name in ("a", "b")}
        config = DealerConfig(
            upstreams={k: f"http://127.0.0.1:{v}" for k, v in ports.items()},
            weights={"a": 50, "b": 50},
            event_caps={"revenue": 100},
            max_units=max(1 << 25, 2 * args.units),
            workers=args.workers or 1,  # the units are written into worker 0's journal: all in one store
        )
        dealers, targets, load_s = {}, {}, {}
        for name, state in states.items():
            started = time.perf_counter()
            dealers[name] = start_dealer(config, state, timeout=600)
            load_s[name] = time.perf_counter() - started
            targets[name] = [("127.0.0.1", int(dealers[name].url.rsplit(":", 1)[1]))]
        for target in targets.values():
            base.load(target, 2000, args.concurrency)  # warm up
        print(
            f"setup          : {len(os.sched_getaffinity(0))} cpus, {args.units:,} vs {BASE_UNITS:,} units "
            f"(snapshots written in {made:.1f} s; Dealers up in {load_s['units']:.1f} s vs "
            f"{load_s['base']:.1f} s), {args.latency_requests} requests x 1 connection, "
            f"{args.rounds} rounds, load average {os.getloadavg()[0]:.1f}"
        )
        pids = {name: base.dealer_pids(state) for name, state in states.items()}
        rss = {name: sum(map(rss_bytes, p)) for name, p in pids.items()}  # supervisor + worker
        seen = {name: d.load_figures() for name, d in dealers.items()}
        units = {name: h["units"] for name, h in seen.items()}
        per_unit = (rss["units"] - rss["base"]) / (units["units"] - units["base"])
        store = seen["units"]["unit_store_bytes"] / units["units"]
        print(
            f"memory         : {per_unit:.1f} bytes per unit (RSS {rss['units'] / 2**20:.0f} MiB with "
            f"{units['units']:,} units vs {rss['base'] / 2**20:.0f} MiB with {units['base']:,}); the store "
            f"itself {store:.1f} bytes per unit (goal <= 40)  [{'ok' if per_unit <= 40 else 'MISSED'}]"
        )
        single: dict[str, list[base.Result]] = {name: [] for name in dealers}
        cpu = dict.fromkeys(dealers, 0.0)
        for round_no in range(args.rounds):
            for name, target in targets.items():
                before = base.cpu_seconds(pids[name]) or 0.0
                single[name].append(base.load(target, args.latency_requests, 1, seed=round_no))
                cpu[name] += (base.cpu_seconds(pids[name]) or 0.0) - before
        per_request = {name: 1000.0 * c / (args.rounds * args.latency_requests) for name, c in cpu.items()}
        p99 = {name: sorted(r.pct(99) for r in rs)[len(rs) // 2] for name, rs in single.items()}
        added = p99["units"] - p99["base"]
        print(
            f"latency        : p99 at x1 {p99['units']:.2f} ms with {args.units:,} units vs "
            f"{p99['base']:.2f} ms with {BASE_UNITS:,}: {added:+.2f} ms (goal within 1 ms)  "
            f"[{'ok' if added <= 1.0 else 'MISSED'}]; Dealer CPU per request {per_request['units']:.3f} "
            f"vs {per_request['base']:.3f} ms"
        )
        for name, client in dealers.items():
            client.load_figures(reset_lag=True)
            quiet = base.load(targets[name], args.requests, args.concurrency)
            lag_quiet = client.load_figures(reset_lag=True)["loop_lag_max_ms"]
            took: list[str] = []

            def compact(state: Path = states[name], took: list[str] = took) -> None:
                began = time.perf_counter()
                patient = connect_dealer(state, timeout=1800)
                try:
                    patient.persist()
                    took.append(f"{time.perf_counter() - began:.1f} s")
                except DealerError as exc:
                    took.append(f"failed: {exc.one_line()}")
                finally:
                    patient.close()

            thread = threading.Thread(target=compact)
            thread.start()
            busy = base.load(targets[name], args.requests, args.concurrency)
            thread.join()
            lag_busy = client.load_figures(reset_lag=True)["loop_lag_max_ms"]
            label = f"{units[name]:,} units"
            print(
                f"persisting     : {label:>17}: max loop lag {lag_quiet:.1f} ms under x{args.concurrency} "
                f"load ({quiet.rps:.0f} req/s, journal written); {lag_busy:.1f} ms with a compaction of "
                f"every unit meanwhile ({busy.rps:.0f} req/s; compaction {took[0]})  "
                f"[{'ok' if max(lag_quiet, lag_busy) <= 10 else 'MISSED'}]"
            )
        failures = sum(r.failures for rs in single.values() for r in rs)
        print(f"check          : non-200 answers {failures}; load average now {os.getloadavg()[0]:.1f}")
        return 0 if failures == 0 else 1
    finally:
        for state in states.values():
            stop_dealer(state)
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=10)
            if proc.stdout is not None:
                proc.stdout.close()
        shutil.rmtree(workdir, ignore_errors=True)
