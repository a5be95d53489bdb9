"""A start on AWS refused for one variant's template creates nothing: every variant's island template (and
the rest of what its provisioning checks before calling AWS) is checked before the first stack is made, so
a later variant's mistake does not cost an earlier variant's stack, created and deleted again."""

from __future__ import annotations

from pathlib import Path

import pytest

from squals_action.experiments.engine import from_lifecycle
from squals_action.experiments.interface import ExperimentError
from squals_action.lifecycle.project import ProjectOptions, open_project
from tests.experiments.test_aws import _shop, _stacks
from tests.support.alb import ISLAND_WITHOUT_GROUP_OUTPUT
from tests.support.aws import Cloud, MotoCalls
from tests.support.lifecycle import git


def test_a_later_variants_template_is_refused_before_any_stack_is_created(
    aws_cloud: Cloud, tmp_path: Path, moto_calls: MotoCalls
) -> None:
    """control's template is fine, green's (its own, named by its variant file) has no ``TargetGroupArn``:
    the start is refused in one line naming green's template, line and commit, and only reads reached AWS
    (before: control's stack was created, then deleted when green's template was read)."""
    _, work, _ = _shop(aws_cloud, tmp_path)
    (work / "infra" / "green-island.yml").write_text(ISLAND_WITHOUT_GROUP_OUTPUT)
    green = work / "green.yml"
    green.write_text(green.read_text().replace("infra/island.yml", "infra/green-island.yml"))
    git(work, "add", "-A")
    git(work, "commit", "-qm", "green's own island forgets its target group")
    sha = git(work, "rev-parse", "HEAD")
    engine = from_lifecycle(open_project(ProjectOptions(repo=work, gates=False)))
    recorded = len(moto_calls())

    with pytest.raises(ExperimentError) as refused:
        engine.start()
    calls = moto_calls()[recorded:]
    assert all(c.startswith(("Describe", "Get")) for c in calls), calls  # none at all, in fact
    assert _stacks(aws_cloud) == {"squals-shop-front-door"}
    line = ISLAND_WITHOUT_GROUP_OUTPUT.splitlines().index("Outputs:") + 2
    assert refused.value.one_line() == (
        f"experiment start refused: variant green: infra/green-island.yml:{line}:3 in commit {sha[:12]}: "
        "expected an output named 'TargetGroupArn': the front door forwards to it; nothing was started"
    )
    assert engine.store.read().experiments() == {}  # nothing claimed either
    engine.store.close()
