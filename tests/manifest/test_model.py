"""The model built from valid files: units converted, defaults filled, locations kept, variants loaded."""

from __future__ import annotations

import datetime
import os
import shutil
from pathlib import Path

import pytest

from squals_action.manifest import ManifestError, load, validate_file
from squals_action.manifest.model import DEALER_METRICS, Location, Manifest
from squals_action.manifest.units import format_duration, parse_amount, parse_duration, parse_percentage
from tests.support.corpus import CASES

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def full(tmp_path: Path) -> Manifest:
    repo = tmp_path / "repo"
    shutil.copytree(CASES / "valid" / "full", repo)
    return load(repo / "squals.yml", repo)


def test_full_model_values(full: Manifest) -> None:
    assert full.name == "shop" and full.version == 1
    assert full.provider.kind == "aws" and full.provider.region == "us-east-1"
    assert dict(full.provider.parameters) == {"InstanceType": "t3.small", "Count": "2", "Public": "false"}
    assert full.app.health_timeout == 90.0
    assert dict(full.app.env) == {"LOG_LEVEL": "info", "WORKERS": "4"}
    assert [g.name for g in full.gates.compile] == ["bundle"]
    unit = full.gates.test[0]
    assert (unit.name, unit.kind, unit.paths, unit.timeout) == (
        "unit",
        "unit",
        ("src/**", "tests/unit/**"),
        600.0,
    )
    security = full.gates.security
    assert security is not None and security.timeout == 300.0
    assert security.dependencies is not None and security.dependencies.fail_on == "critical"
    assert security.dependencies.sources == ("osv", "offline")
    assert security.dependencies.ignore[0].expires == datetime.date(2030, 1, 31)
    assert security.risk is not None and security.risk.max_score == 70
    assert [h.name for h in full.hooks.before_preprod] == ["before_preprod-1"]
    assert dict(full.hooks.promote[0].env) == {"DRY": "0"}
    assert full.exit_tests[0].timeout == 1200.0
    assert (
        full.rollout.blue_share == 12.5
        and full.rollout.bake == 7200.0
        and full.rollout.check_interval == 30.0
    )
    assert [(k.metric, k.max, k.min) for k in full.rollout.kpis] == [
        ("error_rate", 1.0, None),
        ("p95_latency_ms", 400.0, 0.0),
        ("revenue", None, 10.0),
    ]


def test_full_experiment(full: Manifest) -> None:
    exp = full.experiment
    assert exp is not None
    assert exp.control == "control"
    assert dict(exp.split) == {"control": 50.0, "green-button": 25.0, "blue-button": 25.0}
    assert (exp.unit.kind, exp.unit.name) == ("header", "X-User-Id")
    assert (
        exp.objective.direction,
        exp.objective.metric,
        exp.objective.numerator,
        exp.objective.denominator,
    ) == ("minimize", "cost", "revenue", "activations")
    assert [(g.metric, g.max_increase, g.max) for g in exp.guardrails] == [
        ("error_rate", 0.5, None),
        ("p99_latency_ms", None, 900.0),
    ]
    assert exp.min_duration.seconds == 7 * 86400 and exp.min_duration.activations == 10000
    assert (exp.significance.alpha, exp.significance.method) == (0.01, "fixed")
    assert exp.metrics["revenue"].source == "prometheus"
    control = exp.variants["control"]
    assert (
        control.manifest is None and control.file == os.path.realpath(full.path)
    ) or control.file.endswith("squals.yml")
    green = exp.variants["green-button"]
    assert green.manifest is not None and green.manifest.name == "shop-green"
    assert green.file == full.resolve("variants/green.yml")


def test_locations_point_into_the_file(full: Manifest) -> None:
    assert full.app.location.line == 9
    assert full.gates.test[1].location.line == 18
    assert full.rollout.kpis[2].location == Location(full.path, 43, 7)
    assert str(full.hooks.promote[0].location).endswith(":32:13")


def test_paths_and_environments(full: Manifest) -> None:
    assert Path(full.base_dir).is_absolute() and full.repo_root == full.base_dir
    assert full.resolve("src") == os.path.join(full.base_dir, "src")
    assert dict(full.app_env_for("pr-12")) == {"LOG_LEVEL": "debug", "WORKERS": "4"}
    assert dict(full.app_env_for("prod")) == {"LOG_LEVEL": "info", "WORKERS": "4"}
    assert dict(full.environments["prod"].provider_parameters) == {"InstanceType": "t3.large"}
    assert full.shared["db"].type == "postgres" and dict(full.shared["db"].options) == {"version": "16"}


def test_rollout_steps_and_their_bakes(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(CASES / "valid" / "rollout_steps", repo)
    rollout = load(repo / "squals.yml", repo).rollout
    assert [(s.share, s.bake) for s in rollout.plan()] == [(10.0, 300.0), (25.0, 60.0), (50.0, 300.0)]
    assert (rollout.min_requests, rollout.on_no_data, rollout.alarms) == (50, "promote", ())
    assert rollout.total_bake == 660.0


def test_blue_share_is_one_step_and_no_data_is_inconclusive_by_default(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(CASES / "valid" / "rollout_alarms_aws", repo)
    rollout = load(repo / "squals.yml", repo).rollout
    assert [(s.share, s.bake) for s in rollout.plan()] == [(20.0, 900.0)]
    assert (rollout.min_requests, rollout.on_no_data) == (1, "inconclusive")
    assert rollout.alarms == ("shop-5xx", "shop-latency")


def test_model_is_frozen_and_hashable(full: Manifest) -> None:
    with pytest.raises(AttributeError):
        full.name = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        full.app.env["X"] = "y"  # type: ignore[index]
    assert hash(full.app) == hash(full.app)


def test_example_shop_is_valid_and_deployable() -> None:
    shop = load(REPO / "examples" / "shop" / "squals.yml")
    assert shop.app.start == "python3 app.py"
    assert shop.experiment is not None and shop.experiment.variants["green"].manifest is not None
    assert dict(shop.experiment.variants["green"].manifest.app.env) == {"SHOP_BUTTON_COLOR": "seagreen"}
    assert {k.metric for k in shop.rollout.kpis} <= DEALER_METRICS
    assert all(Path(shop.resolve(h.workdir)).is_dir() for h in shop.hooks.promote)


def test_load_raises_every_problem(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()
    bad = tmp_path / "squals.yml"
    bad.write_text("version: 1\nname: shop\napp: {start: x, helth: /}\nrollout: {bake: 0s}\n")
    with pytest.raises(ManifestError) as caught:
        load(bad, tmp_path)
    error = caught.value
    assert (error.line, error.col, error.where) == (3, 17, "$.app.helth")
    assert len(error.problems) == 2
    assert error.one_line().endswith("(and 1 more problem)")
    assert error.exit_code == 1


def test_validate_file_never_raises_for_missing_file(tmp_path: Path) -> None:
    result = validate_file(tmp_path / "absent.yml", tmp_path)
    assert result.manifest is None
    assert result.problems[0].message == "expected an existing file, it does not exist"


def test_units() -> None:
    assert parse_duration("90s") == 90 and parse_duration("1.5h") == 5400 and parse_duration("7d") == 604800
    assert parse_percentage("0.5%") == 0.5 and parse_amount(3) == 3.0 and parse_amount("10%") == 10.0
    assert format_duration(900) == "15m" and format_duration(90) == "90s" and format_duration(86400) == "1d"
    for bad in ("15", "1h30m", "-1s", "1.s", "s"):
        with pytest.raises(ValueError):
            parse_duration(bad)
    with pytest.raises(ValueError):
        parse_amount(True)


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        (
            "aws_front_door_template",
            (
                "infra/front-door.yml",
                {"VpcId": "vpc-0abc1234", "Subnets": "subnet-1,subnet-2", "HttpsOnly": "false"},
                None,
            ),
        ),
        (
            "aws_front_door_listener",
            (
                None,
                {},
                "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/shop/50dc6c495c0c9188/f2f7dc8efc522ab2",
            ),
        ),
    ],
)
def test_front_door_model(
    case: str, expected: tuple[str | None, dict[str, str], str | None], tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(CASES / "valid" / case, repo)
    door = load(repo / "squals.yml", repo).provider.front_door
    assert door is not None
    assert (door.template, dict(door.parameters), door.listener_arn) == expected
    declared = (repo / "squals.yml").read_text().splitlines().index("  front_door:") + 1
    assert (door.location.line, door.location.col) == (declared + 1, 5)  # where its mapping starts


def test_env_passthrough_names_reach_the_model(tmp_path: Path, full: Manifest) -> None:
    repo = tmp_path / "passthrough"
    shutil.copytree(CASES / "valid" / "env_passthrough", repo)
    manifest = load(repo / "squals.yml", repo)
    assert manifest.env_passthrough == ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
    assert full.env_passthrough == ()  # by default no secret passes


def test_chaos_tests_are_built_with_their_defaults_and_names() -> None:
    from squals_action.manifest.model import Chaos

    manifest = load(CASES / "valid" / "rollout_chaos" / "squals.yml")
    chaos = [
        (c.name, c.kind, c.expect, c.after, c.duration, c.share, c.delay, c.status)
        for c in manifest.rollout.chaos
    ]
    assert chaos == [
        ("kill", "kill", "back-to-green", 5.0, 30.0, 100.0, 1.0, 503),
        ("slow-blue", "latency", "back-to-green", 0.0, 20.0, 50.0, 2.0, 503),
        ("abort-3", "abort", "survive", 0.0, 30.0, 0.5, 1.0, 500),
        ("abort-4", "abort", "back-to-green", 0.0, 30.0, 100.0, 1.0, 503),
    ]
    assert all(isinstance(c, Chaos) and c.location.line for c in manifest.rollout.chaos)
    assert manifest.rollout.total_bake == 900.0 + 5 + 30 + 20 + 30 + 30


def test_the_shop_chaos_example_is_valid() -> None:
    shop = Path(__file__).resolve().parents[2] / "examples" / "shop" / "squals-chaos.yml"
    manifest = load(shop)
    assert [(c.name, c.kind, c.expect) for c in manifest.rollout.chaos] == [
        ("blue-crashes", "kill", "back-to-green"),
        ("slow-blue", "latency", "back-to-green"),
        ("rare-503s", "abort", "survive"),
    ]
