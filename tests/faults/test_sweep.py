"""The fault sweep (issue 14, item 8): ``squals deploy``, ``promote``, ``rollback`` and ``experiment tick``
SIGKILLed at each step they record (every hook stage, before and after each state commit and each traffic
switch), then the next command. After the kill and after the next command: the documents parse, there is
one prod, prod answers through the Dealer, no environment runs twice; the next command proceeds or names
the one ``squals ...`` to run, and after that no lock is left and the Dealer routes what the state records.

The full sweep sets a project up from scratch for each of its ~75 steps (about 20 s each on an idle
2-core machine, ``SQUALS_FAULT_SWEEP_JOBS`` at once, default 3): it is ``slow`` and runs only when asked
(``SQUALS_FAULT_SWEEP=full``), because CI runs the slow tests too; a representative step of each command
runs always (4 cases). Both check their rows against docs/reliability.md; ``SQUALS_WRITE_RELIABILITY=1``
with the full sweep rewrites the table from what it saw.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.faults.sweep import DOC, SCENARIOS, Row, Scenario, documented, steps, sweep_one, table

#: One step per command that a regular run sweeps: a hook stage, a promotion left baked (promote names
#: rollback), a switch not yet recorded, a winner made prod by a tick that died holding its locks.
REPRESENTATIVE = {
    "deploy": "hook:after_preprod",
    "promote": "hook:promote",
    "rollback": "before-commit:rollback@pr-2",
    "experiment tick": "after-commit:complete@pr-7",
}


@pytest.mark.slow
@pytest.mark.parametrize("command", sorted(REPRESENTATIVE))
def test_a_kill_at_a_representative_step_leaves_a_state_the_next_command_works_from(
    command: str, tmp_path: Path
) -> None:
    row = sweep_one(SCENARIOS[command], REPRESENTATIVE[command], tmp_path)
    assert documented().get((row.command, row.step)) == row.markdown(), (
        "docs/reliability.md disagrees with the sweep; run the slow sweep with SQUALS_WRITE_RELIABILITY=1"
    )


@pytest.mark.slow
@pytest.mark.timeout(3600)  # ~75 cases of ~20 s, a few at once: far past the suite's 300 s per test
@pytest.mark.skipif(
    os.environ.get("SQUALS_FAULT_SWEEP") != "full", reason="the full fault sweep: SQUALS_FAULT_SWEEP=full"
)
def test_every_step_of_every_command_survives_a_kill(tmp_path: Path) -> None:
    cases = []
    for command, scenario in SCENARIOS.items():
        where = tmp_path / command.replace(" ", "-")
        found = steps(scenario, where / "trace")
        assert REPRESENTATIVE[command] in found, found
        cases += [(scenario, step, where / str(index)) for index, step in enumerate(found)]
    # most of a case is waiting (health checks, hooks, the bake): a few at once use the cores better
    with ThreadPoolExecutor(int(os.environ.get("SQUALS_FAULT_SWEEP_JOBS", "3"))) as pool:
        outcomes = list(pool.map(_attempt, cases))
    failures = [o for o in outcomes if isinstance(o, str)]
    assert not failures, "\n".join(failures)
    rows = [o for o in outcomes if isinstance(o, Row)]
    generated = table(rows)
    text = DOC.read_text()
    start, end = text.index("<!-- sweep -->\n"), text.index("<!-- /sweep -->")
    if os.environ.get("SQUALS_WRITE_RELIABILITY") == "1":
        DOC.write_text(text[: start + len("<!-- sweep -->\n")] + generated + text[end:])
    else:
        assert text[start + len("<!-- sweep -->\n") : end] == generated, (
            "docs/reliability.md disagrees with the sweep; run it with SQUALS_WRITE_RELIABILITY=1"
        )


def _attempt(case: tuple[Scenario, str, Path]) -> Row | str:
    """One kill and what followed; a failure as its message, so the sweep reports every step that fails."""
    scenario, step, root = case
    try:
        return sweep_one(scenario, step, root)
    except AssertionError as exc:
        return f"{scenario.line} at {step}: {exc}"
