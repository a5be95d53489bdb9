"""Local costs: CPU-seconds and memory-hours of real island and shared-resource processes, the shared cost
split by the requests each island got through the real Dealer, the parts adding up to the total."""

from __future__ import annotations

import json
import math
import shlex
import subprocess
import sys
import urllib.request
from pathlib import Path

from squals_action.costs import measure_costs
from squals_action.lifecycle.traffic import DealerTraffic
from squals_action.manifest import model
from squals_action.providers import LocalProvider, daemon
from tests.support.providers import Repo

RUN = f"exec {shlex.quote(sys.executable)} shared_server.py"
CACHE = model.SharedResource("cache", "kv", run=RUN, url="tcp://127.0.0.1:$PORT", ready_timeout=10.0)


def _requests(url: str, count: int) -> None:
    for unit in range(count):
        request = urllib.request.Request(url + "/", headers={"Cookie": f"squals_unit=u{unit}"})
        with urllib.request.urlopen(request, timeout=10) as answer:
            answer.read()


def test_islands_and_shared_resources_measured_and_shared_cost_split_by_traffic(
    repo: Repo, local: LocalProvider, spawned: list[daemon.ProcessRecord], tmp_path: Path
) -> None:
    manifest = repo.manifest(shared={"cache": CACHE})
    one = local.provision("pr-1", repo.shas["one"], manifest)
    two = local.provision("pr-2", repo.shas["one"], manifest)
    dealer = DealerTraffic(tmp_path / "dealer")
    try:
        public = dealer.route({"pr-1": one.url, "pr-2": two.url}, {"pr-1": 75.0, "pr-2": 25.0})
        _requests(public, 200)
        cpu, memory = measure_costs(local, dealer_dir=tmp_path / "dealer")
        tallies = dealer.tallies()
    finally:
        dealer.stop()
        local.shared_resources().remove()

    requests = {name: tally.activations for name, tally in tallies.items()}
    assert sum(requests.values()) == 200 and requests["pr-1"] > requests["pr-2"] > 0
    for report in (cpu, memory):
        assert set(report.environments) == {"pr-1", "pr-2"}
        assert all(value is not None and value > 0 for value in report.environments.values())
        assert set(report.shared) == {"cache"} and report.shared["cache"] > 0
        assert dict(report.traffic) == requests
        shares = report.allocation.shares
        assert math.isclose(shares["pr-1"]["cache"] / report.shared["cache"], requests["pr-1"] / 200)
        parts = sum(report.with_shares(env) or 0.0 for env in report.names())
        assert math.isclose(parts, report.total())
    assert (cpu.measure, memory.measure) == ("CPU-seconds", "memory-hours")


def test_squals_costs_without_a_dealer_says_there_is_no_traffic_data(
    repo: Repo, local: LocalProvider
) -> None:
    (repo.path / "squals.yml").write_text(
        f"version: 1\nname: tiny\napp: {{start: '{sys.executable} app.py', health: /healthz}}\n"
    )
    local.provision("pr-1", repo.commit("two"), repo.manifest())
    out = subprocess.run(
        [sys.executable, "-m", "squals_action.cli", "costs", "--format", "json"],
        cwd=repo.path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    cpu, memory = json.loads(out.stdout)
    assert (cpu["measure"], memory["measure"]) == ("CPU-seconds", "memory-hours")
    assert cpu["environments"]["pr-1"] > 0
    assert cpu["traffic"] == {"pr-1": None}
    assert any(note.startswith("no traffic data: no Dealer runs from") for note in cpu["notes"])
    text = subprocess.run(
        [sys.executable, "-m", "squals_action.cli", "costs"],
        cwd=repo.path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    ).stdout
    assert text.startswith("CPU-seconds (since each process started)\n  environment")
    assert "pr-1" in text and "no data" in text and "total " in text
