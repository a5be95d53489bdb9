"""Benchmark: the Dealer against direct upstream access and nginx ``split_clients``, one run, on loopback.

    .venv/bin/python bench/dealer.py [--requests 20000] [--concurrency 32] [--rounds 3] [--units N]
                                     [--workers N] [--compare-workers N] [--baseline DIR] [--compiled]

Two upstream processes (a tiny aiohttp app) serve ``/``. The same bounded load generator (raw asyncio
keep-alive connections, a fixed number of requests, each with a unit cookie from a pool of 1,000) then hits:

* ``direct``: the upstreams themselves, half of the connections to each;
* ``dealer``: the Dealer daemon splitting 50/50 between them with ``--workers`` worker processes (default:
  the Dealer's own, one per core), on the event loop it picks itself (uvloop when installed);
* ``dealer-wN``: with ``--compare-workers N``, the same Dealer with N workers, so one run compares worker
  counts under the same load;
* ``dealer-asyncio``: the same Dealer forced onto asyncio's own loop (``SQUALS_DEALER_LOOP=asyncio``),
  measured only when ``dealer`` runs on uvloop, so one run shows what the loop is worth;
* ``dealer-baseline``: with ``--baseline DIR``, the Dealer of another checkout (``git archive <commit> | tar
  -x -C DIR``), so a change is measured before and after in the same rounds;
* ``dealer-compiled``: with ``--compiled``, this checkout's Dealer with its request path compiled by mypyc,
  the opt-in build (bench/compiled.py builds it first: about a minute);
* ``python-floor``: with ``--floor``, bench/floor_proxy.py (as many processes as Dealer workers): the
  cheapest proxy Python can be here (httptools, callbacks only, no feature at all), so a run shows which part
  of the gap to nginx and direct is Python's and which is the Dealer's;
* ``nginx``: nginx with ``split_clients`` on the same cookie, 50/50, as many nginx workers as Dealer workers
  (skipped when nginx is not installed: ``apt-get install -y nginx`` for the bench; the tests never need it).

Each target gets a throughput phase (``--concurrency`` connections, requests/s, p50/p99) and a latency phase
(one connection: the latency the proxy adds when it is not queueing). Targets are measured in alternating
rounds and the median round is kept, so the noise of a shared machine hits them alike. Ratios are against
``direct`` and ``nginx``; the goals (issue 15) are Dealer/direct >= 0.5 and Dealer/nginx >= 0.65 at 32
connections and an added p99 <= 2 ms at one connection. With ``--baseline``, the previous code's Dealer gets
the same lines, next to the new one's. Each Dealer's CPU time per proxied request (from ``/proc``, its
supervisor and workers together) is printed too, since it moves less with the machine's load than requests/s
do, and how busy the whole machine was in each target's throughput phase (below 100 %, the run waited on
latency, wake-ups and hops, not on the cores). When ``wrk`` is installed (Debian package), each target is
also driven by it for ``--wrk-seconds`` with the same connections and unit cookies: a cross-check that the
Python load generator is not what limits ``direct``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

UNITS = [f"bench{i:04d}" for i in range(1000)]


# --------------------------------------------------------------------------------------------- upstream app


def serve_upstream(name: str, app_cpu_ms: float) -> None:
    """The upstream process: print the bound port, answer every request with a small body.

    ``app_cpu_ms`` > 0 makes each request burn that much CPU first, like an application doing real work.
    """
    from aiohttp import web

    body = (name + " ok\n").encode() * 4
    burn = app_cpu_ms / 1000.0

    async def handler(request: web.BaseRequest) -> web.Response:
        await request.read()
        if burn:
            until = time.thread_time() + burn
            while time.thread_time() < until:
                pass
        return web.Response(body=body, content_type="text/plain")

    async def main() -> None:
        runner = web.ServerRunner(web.Server(handler, access_log=None), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0, backlog=1024).start()
        print(runner.addresses[0][1], flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


# --------------------------------------------------------------------------------------------- load generator


@dataclass
class Result:
    requests: int
    seconds: float
    latencies_ms: list[float]
    failures: int

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    def pct(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


async def _connection(
    host: str, port: int, count: int, latencies: list[float], failures: list[int], rng: random.Random
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        done = 0
        while done < count:
            unit = rng.choice(UNITS)
            request = (
                f"GET / HTTP/1.1\r\nHost: {host}:{port}\r\nCookie: squals_unit={unit}\r\n"
                "User-Agent: squals-bench\r\n\r\n"
            ).encode()
            started = time.perf_counter()
            writer.write(request)
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionResetError):
                # The server closed an idle keep-alive connection: reconnect and send again.
                writer.close()
                reader, writer = await asyncio.open_connection(host, port)
                continue
            length = 0
            close = False
            for line in head.split(b"\r\n"):
                low = line.lower()
                if low.startswith(b"content-length:"):
                    length = int(line[15:])
                elif low.startswith(b"connection:") and b"close" in low:
                    close = True
            if length:
                await reader.readexactly(length)
            latencies.append((time.perf_counter() - started) * 1000.0)
            done += 1
            if not head.startswith(b"HTTP/1.1 200"):
                failures.append(1)
            if close:
                writer.close()
                reader, writer = await asyncio.open_connection(host, port)
    finally:
        writer.close()
        await writer.wait_closed()


async def _load(targets: list[tuple[str, int]], requests: int, concurrency: int, seed: int) -> Result:
    latencies: list[float] = []
    failures: list[int] = []
    per_conn = [
        requests // concurrency + (1 if i < requests % concurrency else 0) for i in range(concurrency)
    ]
    started = time.perf_counter()
    await asyncio.gather(
        *(
            _connection(*targets[i % len(targets)], n, latencies, failures, random.Random(seed + i))
            for i, n in enumerate(per_conn)
        )
    )
    return Result(requests, time.perf_counter() - started, latencies, len(failures))


def load(targets: list[tuple[str, int]], requests: int, concurrency: int, seed: int = 1) -> Result:
    return asyncio.run(_load(targets, requests, concurrency, seed))


# --------------------------------------------------------------------------------------------- measuring aids


def dealer_pids(state: Path) -> list[int]:
    """A running Dealer's processes: its supervisor and its workers (or a baseline's one process)."""
    import json

    from squals_action.dealer import dealer_status

    endpoint = json.loads((state / "dealer.json").read_text())
    return [dealer_status(state).pid or 0, *(p for p in endpoint.get("worker_pids", []) if p)]


def cpu_seconds(pids: list[int]) -> float | None:
    """User + system CPU time of processes so far (Linux ``/proc``), None where that is not readable."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            return None
    return total


def machine_ticks() -> tuple[int, int]:
    """All CPUs' (busy, total) clock ticks so far (Linux ``/proc/stat``): idle and I/O wait are not busy."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    total = sum(values[:8])  # guest time is counted in user time already
    return total - values[3] - values[4], total


WRK_SCRIPT = """
math.randomseed(1)
request = function()
  local unit = string.format("bench%04d", math.random(0, 999))
  return wrk.format("GET", "/", {["Cookie"] = "squals_unit=" .. unit, ["User-Agent"] = "squals-bench"})
end
"""


def run_wrk(wrk: str, targets: list[tuple[str, int]], connections: int, seconds: float, script: Path) -> str:
    """requests/s (and non-2xx answers) with wrk, the connections shared among the targets like ``load``."""
    per = [
        connections // len(targets) + (1 if i < connections % len(targets) else 0)
        for i in range(len(targets))
    ]
    runs = [
        subprocess.Popen(
            [wrk, "-t1", f"-c{n}", f"-d{seconds:g}s", "-s", str(script), f"http://{host}:{port}/"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for (host, port), n in zip(targets, per, strict=True)
    ]
    rps = 0.0
    bad = 0
    for run in runs:
        out, _ = run.communicate(timeout=seconds + 30)
        for line in out.splitlines():
            if line.startswith("Requests/sec:"):
                rps += float(line.split()[1])
            elif line.strip().startswith("Non-2xx or 3xx responses:"):
                bad += int(line.split(":")[1])
    return f"{rps:8.0f} req/s  (wrk, x{connections}, non-2xx {bad})"


# --------------------------------------------------------------------------------------------- targets


def start_upstream(name: str, procs: list[subprocess.Popen[str]], app_cpu_ms: float = 0.0) -> int:
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve-upstream", name, "--app-cpu-ms", str(app_cpu_ms)],
        stdout=subprocess.PIPE,
        text=True,
    )
    procs.append(proc)
    assert proc.stdout is not None
    return int(proc.stdout.readline())


def start_floor(upstream_ports: list[int], procs: list[subprocess.Popen[str]], processes: int) -> int:
    """bench/floor_proxy.py in ``processes`` processes sharing one port; returns the port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    command = [sys.executable, str(ROOT / "bench" / "floor_proxy.py"), str(port), *map(str, upstream_ports)]
    for _ in range(processes):
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        procs.append(proc)
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "ready":
            raise SystemExit("bench/floor_proxy.py did not start")
    return port


def start_nginx(
    workdir: Path, ports: dict[str, int], procs: list[subprocess.Popen[str]], workers: int
) -> int | None:
    nginx = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if Path(p).exists()), None
    )
    if nginx is None:
        return None
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (workdir / sub).mkdir(parents=True, exist_ok=True)
    user = "user root;\n" if os.geteuid() == 0 else ""
    conf = workdir / "nginx.conf"
    conf.write_text(
        f"""{user}worker_processes {workers};
daemon off;
pid {workdir}/nginx.pid;
error_log {workdir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path {workdir}/body;
    proxy_temp_path {workdir}/proxy;
    fastcgi_temp_path {workdir}/fastcgi;
    uwsgi_temp_path {workdir}/uwsgi;
    scgi_temp_path {workdir}/scgi;
    upstream a {{ server 127.0.0.1:{ports["a"]}; keepalive 64; }}
    upstream b {{ server 127.0.0.1:{ports["b"]}; keepalive 64; }}
    split_clients "${{cookie_squals_unit}}" $variant {{ 50% a; * b; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://$variant;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        }}
    }}
}}
"""
    )
    proc = subprocess.Popen(
        [nginx, "-p", str(workdir), "-c", str(conf), "-e", str(workdir / "error.log")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    procs.append(proc)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            print(f"nginx          : failed to start (see {workdir}/error.log), skipped")
            return None
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return port
        except OSError:
            time.sleep(0.05)
    return None


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--serve-upstream", help=argparse.SUPPRESS)
    parser.add_argument("--requests", type=int, default=20_000, help="requests per throughput phase")
    parser.add_argument("--concurrency", type=int, default=32, help="connections in the throughput phase")
    parser.add_argument(
        "--latency-requests", type=int, default=2_000, help="requests of the 1-connection phase"
    )
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds; the median is reported")
    parser.add_argument(
        "--app-cpu-ms", type=float, default=0.0, help="CPU each upstream request burns (0: a trivial app)"
    )
    parser.add_argument(
        "--baseline", type=Path, help="another checkout whose Dealer is measured too, as dealer-baseline"
    )
    parser.add_argument(
        "--compiled",
        action="store_true",
        help="also measure this checkout's Dealer compiled by mypyc, the opt-in build (dealer-compiled)",
    )
    parser.add_argument(
        "--workers", type=int, help="Dealer worker processes (default: the Dealer's own, one per core)"
    )
    parser.add_argument(
        "--floor", action="store_true", help="also measure bench/floor_proxy.py (python-floor)"
    )
    parser.add_argument(
        "--compare-workers", type=int, help="also measure the same Dealer with this many workers (dealer-wN)"
    )
    parser.add_argument(
        "--wrk-seconds",
        type=float,
        default=5.0,
        help="seconds of the wrk cross-check per target (0: skip it)",
    )
    parser.add_argument(
        "--units",
        type=int,
        default=0,
        help="compare a Dealer holding this many units with one holding 1,000 (bench/dealer_units.py)",
    )
    args = parser.parse_args()
    if args.serve_upstream:
        serve_upstream(args.serve_upstream, args.app_cpu_ms)
        return 0
    if args.units:
        from dealer_units import bench_units

        return bench_units(args)

    import json

    from squals_action.dealer import DealerClient, DealerConfig, start_dealer, stop_dealer
    from squals_action.dealer.supervisor import worker_count

    procs: list[subprocess.Popen[str]] = []
    workdir = Path(tempfile.mkdtemp(prefix="squals-bench-"))
    states: dict[str, Path] = {}
    try:
        ports = {name: start_upstream(name, procs, args.app_cpu_ms) for name in ("a", "b")}
        direct = [("127.0.0.1", ports["a"]), ("127.0.0.1", ports["b"])]
        config = DealerConfig(
            upstreams={k: f"http://127.0.0.1:{v}" for k, v in ports.items()},
            weights={"a": 50, "b": 50},
        )
        workers = args.workers or worker_count(config)
        config = dataclasses.replace(config, workers=workers)
        targets: dict[str, list[tuple[str, int]]] = {"direct": direct}
        dealers: dict[str, DealerClient] = {}
        pids: dict[str, list[int]] = {}  # the supervisor and its workers (or a baseline's one process)
        loops: dict[str, str] = {}
        builds: dict[str, str] = {}  # each Dealer's request path: interpreted or compiled

        def add_dealer(name: str, checkout: Path | None = None, workers: int = workers) -> str:
            states[name] = workdir / name
            here = Path.cwd()
            if checkout is not None:  # the daemon runs `python -m squals_action.dealer`: cwd comes first
                os.chdir(checkout)
            try:
                dealers[name] = start_dealer(dataclasses.replace(config, workers=workers), states[name])
            finally:
                os.chdir(here)
            targets[name] = [("127.0.0.1", int(dealers[name].url.rsplit(":", 1)[1]))]
            pids[name] = dealer_pids(states[name])
            published = json.loads((states[name] / "dealer.json").read_text())
            loops[name] = published.get("loop", "asyncio")
            builds[name] = published.get("request_path", "interpreted")
            return loops[name]

        if add_dealer("dealer") == "uvloop":
            os.environ["SQUALS_DEALER_LOOP"] = "asyncio"
            try:
                add_dealer("dealer-asyncio")
            finally:
                del os.environ["SQUALS_DEALER_LOOP"]
        if args.compare_workers:
            add_dealer(f"dealer-w{args.compare_workers}", workers=args.compare_workers)
        if args.compiled:
            from compiled import build_compiled

            started = time.monotonic()
            add_dealer("dealer-compiled", build_compiled(workdir / "compiled"))
            if builds["dealer-compiled"] != "compiled":
                raise SystemExit("dealer-compiled runs interpreted: bench/compiled.py's build was not used")
            print(f"compiled       : built in {time.monotonic() - started:.0f} s (bench/compiled.py)")
        if args.baseline is not None:
            os.environ["SQUALS_DEALER_LOOP"] = loops["dealer"]  # a baseline that knows the switch: same loop
            try:
                add_dealer("dealer-baseline", args.baseline.resolve())
            finally:
                del os.environ["SQUALS_DEALER_LOOP"]
        if args.floor:
            targets["python-floor"] = [("127.0.0.1", start_floor(list(ports.values()), procs, workers))]
            pids["python-floor"] = [p.pid for p in procs[-workers:]]
        nginx_port = start_nginx(workdir / "nginx", ports, procs, workers)
        if nginx_port is None:
            print("nginx          : not installed, skipped (apt-get install -y nginx to compare)")
        else:
            targets["nginx"] = [("127.0.0.1", nginx_port)]

        print(
            f"setup          : {len(os.sched_getaffinity(0))} cpus, {args.requests} requests x "
            f"{args.concurrency} connections, {args.latency_requests} requests x 1 connection, "
            f"{args.rounds} rounds, upstream app CPU {args.app_cpu_ms:g} ms/request, loopback, "
            f"Dealer workers {workers}, nginx workers {workers}, "
            f"Dealer event loops {loops}, request paths {builds}, load average {os.getloadavg()[0]:.1f}"
        )
        for target in targets.values():  # warm up connections, caches and pools
            load(target, 2000, args.concurrency)
        through: dict[str, list[Result]] = {name: [] for name in targets}
        single: dict[str, list[Result]] = {name: [] for name in targets}
        dealer_cpu: dict[str, float] = dict.fromkeys(pids, 0.0)  # the Dealers' and the floor's
        busy: dict[str, list[int]] = {name: [0, 0] for name in targets}  # machine busy and total ticks
        for round_no in range(args.rounds):
            for name, target in targets.items():
                before = cpu_seconds(pids[name]) if name in pids else None
                busy_before, total_before = machine_ticks()
                through[name].append(load(target, args.requests, args.concurrency, seed=round_no))
                busy_after, total_after = machine_ticks()
                busy[name][0] += busy_after - busy_before
                busy[name][1] += total_after - total_before
                after = cpu_seconds(pids[name]) if name in pids else None
                if before is not None and after is not None:
                    dealer_cpu[name] += after - before
                single[name].append(load(target, args.latency_requests, 1, seed=round_no))

        def median(results: list[Result], key: str) -> Result:
            ordered = sorted(results, key=lambda r: r.rps if key == "rps" else r.pct(99))
            return ordered[len(ordered) // 2]

        failures = sum(r.failures for rs in (*through.values(), *single.values()) for r in rs)
        kept_t = {name: median(rs, "rps") for name, rs in through.items()}
        kept_s = {name: median(rs, "p99") for name, rs in single.items()}
        for name in targets:
            t, s = kept_t[name], kept_s[name]
            print(
                f"{name:<15}: {t.rps:8.0f} req/s  p50 {t.pct(50):6.2f} ms  p99 {t.pct(99):6.2f} ms"
                f"  (x{args.concurrency})   |  p50 {s.pct(50):5.2f} ms  p99 {s.pct(99):5.2f} ms  (x1)"
            )
        base_t, base_s = kept_t["direct"], kept_s["direct"]
        for name in targets:
            if name == "direct":
                continue
            ratio = kept_t[name].rps / base_t.rps
            added = kept_s[name].pct(99) - base_s.pct(99)
            verdict = "ok" if ratio >= 0.5 and added <= 2.0 else "MISSED"
            print(
                f"ratio          : {name}/direct throughput {ratio:.2f} (goal >= 0.50), "
                f"added p99 {added:+.2f} ms at x1 (goal <= 2 ms), "
                f"added p99 {kept_t[name].pct(99) - base_t.pct(99):+.2f} ms at x{args.concurrency}"
                f"  [{verdict}]"
            )
        if "nginx" in targets:
            for name in pids:
                ratio = kept_t[name].rps / kept_t["nginx"].rps
                print(
                    f"ratio          : {name}/nginx throughput {ratio:.2f} (goal >= 0.65)"
                    f"  [{'ok' if ratio >= 0.65 else 'MISSED'}]"
                )
        for name in pids:
            if dealer_cpu[name]:
                per = 1000.0 * dealer_cpu[name] / (args.rounds * args.requests)
                print(
                    f"cpu            : {name} {per:.3f} ms of CPU per proxied request (x{args.concurrency})"
                )
        print(  # below 100 %: the throughput phase waited on latency (wake-ups, hops), not on the cores
            "machine busy   : "
            + ", ".join(f"{name} {100.0 * b / t:.0f}%" for name, (b, t) in busy.items() if t)
            + f" of {os.cpu_count()} cpus in the throughput phase (x{args.concurrency})"
        )
        for other in (f"dealer-w{args.compare_workers}", "dealer-baseline", "dealer-compiled"):
            if other in dealers:
                cpu_ratio = dealer_cpu["dealer"] / dealer_cpu[other] if dealer_cpu[other] else 0
                print(
                    f"ratio          : dealer/{other} throughput "
                    f"{kept_t['dealer'].rps / kept_t[other].rps:.2f}, CPU per request {cpu_ratio:.2f}"
                )
        sent = 2000 + args.rounds * (args.requests + args.latency_requests)
        checks = []
        for name, dealer in dealers.items():
            tallies = dealer.tallies()
            split = {k: t.activations for k, t in tallies.items()}
            checks.append(
                f"{name} activations {sum(split.values())} of {sent} sent (split {split}), "
                f"errors {sum(t.errors for t in tallies.values())}"
            )
        print(
            f"check          : non-200 answers {failures}; "
            + "; ".join(checks)
            + f"; load average now {os.getloadavg()[0]:.1f}"
        )
        wrk = shutil.which("wrk")
        if wrk and args.wrk_seconds > 0:
            script = workdir / "units.lua"
            script.write_text(WRK_SCRIPT)
            for name, target in targets.items():
                line = run_wrk(wrk, target, args.concurrency, args.wrk_seconds, script)
                print(f"{name:<15}: {line}")
        elif args.wrk_seconds > 0:
            print("wrk            : not installed, cross-check skipped (apt-get install -y wrk)")
        return 0 if failures == 0 else 1
    finally:
        for state in states.values():
            stop_dealer(state)
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
            if proc.stdout is not None:
                proc.stdout.close()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
