"""The experiment report: documents built by the real records (claim, running, ticks decided by ``decide()``),
rendered as the PR comment and ``squals experiment status --format markdown`` show them."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from squals_action.experiments import records
from squals_action.experiments.decide import decide
from squals_action.experiments.interface import Observation
from squals_action.experiments.spec import spec_digest
from squals_action.experiments.sufficient import Mean, Proportion, Sufficient
from squals_action.manifest import model
from squals_action.report.experiments import experiment_markdown
from squals_action.state import Documents, ExperimentState, Transition, open_store

T0 = datetime(2026, 1, 1, tzinfo=UTC)
HOSTILE = "<img src=x>@team|`"


def spec(variants: tuple[str, ...], kind: str = "proportion", guard: bool = False) -> model.Experiment:
    return model.Experiment(
        variants={v: model.Variant(v, "squals.yml") for v in variants},
        control=variants[0],
        split=dict.fromkeys(variants, 100.0 / len(variants)),
        objective=model.Objective(
            "revenue" if kind == "mean" else "conversion",
            "maximize",
            "x",
            kind=kind,  # type: ignore[arg-type]
        ),
        guardrails=(model.Guardrail("error_rate", max_increase=0.5),) if guard else (),
    )


def run(exp: model.Experiment, ticks: list[dict[str, tuple[int, Sufficient, int]]]) -> ExperimentState:
    """The document after ``ticks`` (variant -> units, objective statistics, errors), each recorded by
    :func:`records.record_tick` with the decision ``decide()`` takes on it."""
    docs = Documents()
    req = records.StartRequest(
        eid="shop-1",
        spec=exp,
        digest=spec_digest(exp),
        commit="c0ffee",
        pr=7,
        now=T0,
        token="t",
        squals_file="squals.yml",
    )
    records.claim(docs, req)
    records.mark_running(docs, "shop-1", "t", {}, T0)
    for i, tick in enumerate(ticks):
        at = T0 + timedelta(hours=i + 1)
        observations = {
            v: Observation(
                v,
                n,
                0,
                n,
                at,
                errors=errors,
                metrics={"error_rate": 100 * errors / n},
                stats={exp.objective.metric: s},
            )
            for v, (n, s, errors) in tick.items()
        }
        doc = docs.experiment("shop-1")
        assert doc is not None
        judged = records.Judgement(
            observations=observations, decision=decide(observations, exp, T0, at), at=at
        )
        assert records.record_tick(docs, doc, judged) is not None
    final = docs.experiment("shop-1")
    assert final is not None
    return final


def rate(n: int, conv: int, errors: int = 0) -> tuple[int, Sufficient, int]:
    return n, Proportion(units=n, converters=conv), errors


def mermaid(text: str) -> str:
    found = re.search(r"```mermaid\n(.*?)```", text, re.S)
    assert found, text
    return found.group(1)


def test_a_proportion_report_shows_each_variant_in_percent_and_charts_every_tick() -> None:
    exp = spec(("control", "green"))
    doc = run(
        exp,
        [
            {"control": rate(1000, 100), "green": rate(1000, 110)},
            {"control": rate(2000, 200), "green": rate(2000, 240)},
            {"control": rate(8000, 800), "green": rate(8000, 1120)},
        ],
    )
    assert doc.status == "promoting"
    text = experiment_markdown(doc)
    lines = text.splitlines()
    assert lines[0].startswith(
        "| variant | units | conversion | vs control [interval] | lift [interval] | p-value |"
    )
    control = next(line for line in lines if line.startswith("| <code>control</code>"))
    green = next(line for line in lines if line.startswith("| <code>green</code>"))
    assert "| 8,000 | 10.00 % |" in control and "| control |" in control and "| 50.0 % of 50.0 % |" in control
    assert "| 8,000 | 14.00 % | +4.00 pts [+" in green and "| +40.0 % [+" in green
    assert "🏆 winner" in green
    p = re.search(r"\| ([0-9.e-]+) \| 🏆", green)
    assert p and float(p.group(1)) <= 0.05
    assert "sequential test, alpha 0.05; sample ratio: chi-square p=1 (halts below 0.001)" in text
    chart = mermaid(text)
    assert 'x-axis "tick" 1 --> 3' in chart and 'y-axis "conversion (%)"' in chart
    assert "line [10, 10, 10]" in chart and "line [11, 12, 14]" in chart
    assert "Lines in order: 1. <code>control</code>, 2. <code>green</code>." in text
    assert "- green proportion 0.14 vs control 0.1" in text


def test_a_mean_is_shown_in_its_own_unit_not_in_percent() -> None:
    exp = spec(("control", "b"), kind="mean")

    def mean(n: int, avg: float, sd: float) -> tuple[int, Sufficient, int]:
        return n, Mean(n=n, total=n * avg, sum_squares=n * (sd * sd + avg * avg)), 0

    doc = run(
        exp,
        [
            {"control": mean(500, 50, 20), "b": mean(500, 51, 20)},
            {"control": mean(1000, 50, 20), "b": mean(1000, 52.5, 20)},
        ],
    )
    text = experiment_markdown(doc)
    b = next(line for line in text.splitlines() if line.startswith("| <code>b</code>"))
    assert "| 52.5 | +2.5 [" in b and "pts" not in b and "| +5.0 % [" in b
    assert "%" not in b.split("|")[3]
    chart = mermaid(text)
    assert 'y-axis "revenue" ' in chart and "line [50, 50]" in chart and "line [51, 52.5]" in chart


def test_guardrails_srm_and_untrusted_names_in_the_report() -> None:
    exp = spec(("control", HOSTILE, "c"), guard=True)
    doc = run(
        exp,
        [
            {"control": rate(3000, 300, 30), HOSTILE: rate(3000, 300, 300), "c": rate(3000, 300, 30)},
            {"control": rate(6000, 600, 60), HOSTILE: rate(6000, 600, 600), "c": rate(6000, 600, 60)},
        ],
    )
    text = experiment_markdown(doc)
    hostile = next(line for line in text.splitlines() if "&lt;img" in line)
    assert "excluded by a guardrail" in hostile and "✗ error\\_rate 10 vs control 1" in hostile
    assert "| not served |" in hostile  # excluded: no traffic any more, left out of the sample ratio
    c = next(line for line in text.splitlines() if line.startswith("| <code>c</code>"))
    assert "| 50.0 % of 50.0 % |" in c and "✓ error\\_rate 1" in c and "| not significant |" in c
    assert "<img" not in text and "@team" not in text
    chart = mermaid(text)
    assert "img" not in chart and "@" not in chart and chart.count("line [") == 3
    assert "3. <code>c</code>" in text and "2. <code>&lt;img src=x&gt;&#64;team&#124;&#96;</code>" in text

    halted = run(spec(("control", "b")), [{"control": rate(20000, 2000), "b": rate(20900, 2508)}])
    assert halted.status == "ending"
    text = experiment_markdown(halted)
    b = next(line for line in text.splitlines() if line.startswith("| <code>b</code>"))
    assert "| halted: sample-ratio mismatch | 51.1 % of 50.0 % |" in b
    assert "sample ratio: chi-square p=8.6e-06 (halts below 0.001) — **halted**" in text
    assert "units control 20000, b 20900 against the declared split 50/50" in text
    assert "mermaid" not in text  # one tick: nothing to chart yet


def test_status_markdown_is_the_same_report_from_the_state_branch(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    subprocess.run(["git", "init", "-q", str(repo)], check=True, timeout=30)
    doc = run(
        spec(("control", "green")),
        [
            {"control": rate(1000, 100), "green": rate(1000, 110)},
            {"control": rate(2000, 200), "green": rate(2000, 230)},
        ],
    )
    with open_store(repo, remote=None) as store:
        store.put_experiment(doc, Transition("experiment-tick", "seed"))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "squals_action.cli",
            "experiment",
            "status",
            "--format",
            "markdown",
            "--repo",
            str(repo),
            "--local-state",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("### Experiment <code>shop-1</code>: running\n")
    # a running experiment's islands' costs: no squals file in this repository, so no data, and why
    why = f"no data: no squals file in {repo.resolve()}: expected squals.yml (or pass --file)"
    assert experiment_markdown(doc, {"control": why, "green": why}) in done.stdout


def test_an_experiment_without_a_judged_tick_says_so_instead_of_an_empty_table() -> None:
    running = run(spec(("control", "green")), [])
    assert experiment_markdown(running) == "No tick was judged: running.\n"
    stopped = ExperimentState(
        "shop-2",
        "d",
        ("control", "green"),
        status="stopped",
        decision={"outcome": "stopped", "reason": "wrong <b>colour</b>"},
    )
    assert experiment_markdown(stopped) == "No tick was judged: wrong &lt;b&gt;colour&lt;/b&gt;.\n"


def test_each_variant_shows_its_island_cost_next_to_its_objective() -> None:
    from squals_action.costs import CostReport
    from squals_action.report.costs import direct_costs

    exp = spec(("control", "green"))
    doc = run(exp, [{"control": rate(1000, 100), "green": rate(1000, 110)}])
    cpu = CostReport(measure="CPU-seconds", period="p", environments={"exp-control": 1.5, "exp-green": None})
    usd = CostReport(measure="USD", period="p", environments={"exp-control": 0.25})
    costs = direct_costs((cpu, usd), {"control": "exp-control", "green": "exp-green"})
    assert costs == {"control": "1.500 CPU-seconds · 0.25 USD", "green": "no data"}
    lines = experiment_markdown(doc, costs).splitlines()
    assert lines[0].endswith("| guardrails | island cost so far |")
    control = next(line for line in lines if line.startswith("| <code>control</code>"))
    green = next(line for line in lines if line.startswith("| <code>green</code>"))
    assert control.endswith("| 1\\.500 CPU-seconds · 0.25 USD |") and green.endswith("| no data |")
    assert "island cost so far" not in experiment_markdown(doc)  # no cost source asked: no column
