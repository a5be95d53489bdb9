"""The lifecycle's markdown report: what users wrote is escaped, the fleet is a table, failures unfolded."""

from __future__ import annotations

from squals_action.lifecycle.engine import Outcome
from squals_action.lifecycle.machine import Check, Env, Status
from squals_action.report.lifecycle import markdown


def test_markdown_escapes_what_users_wrote() -> None:
    fleet = {
        "pr-1": Env(name="pr-1", status=Status.PROD, share=100.0, commit="a" * 40, url="http://127.0.0.1:1"),
        "pr-2": Env(name="pr-2", status=Status.FAILED, commit="b" * 40, url="http://127.0.0.1:2"),
    }
    evil = "@octocat <img src=x> | ![x](http://evil)"
    outcome = Outcome(
        operation="deploy",
        ok=False,
        message=f"exit test e2e failed: exit 1; last output: {evil}",
        env="pr-2",
        fleet=fleet,
        checks=(Check(kind="exit-test", stage="exit", name="e2e <b>", ok=False, detail=evil, duration=1.5),),
        public_url="http://127.0.0.1:9",
    )
    text = markdown(outcome)
    assert "### ❌ Deploy of <code>pr-2</code>" in text
    assert "@octocat" not in text and "<img" not in text and "![x](http://evil)" not in text
    assert "| <code>pr-1</code> | 🟢 prod | <code>aaaaaaaaaaaa</code> | 100 % |" in text
    assert "<details open>" in text  # a failure is shown unfolded


def test_chaos_tests_have_their_own_table_and_are_not_counted_as_hooks() -> None:
    passed = Check(kind="chaos", stage="bake", name="kill", ok=True, detail="chaos test kill passed: kill")
    failed = Check(
        kind="chaos", stage="bake", name="slow", ok=False, detail="chaos test slow failed: no data"
    )
    hook = Check(kind="hook", stage="promote", name="notify", ok=True)
    outcome = Outcome(
        operation="promote",
        ok=False,
        message="chaos test slow failed",
        env="pr-2",
        fleet={"pr-2": Env(name="pr-2", status=Status.FAILED)},
        checks=(passed, failed, hook),
    )
    text = markdown(outcome)
    assert "|   | chaos test | outcome |" in text
    assert "| ✅ | <code>kill</code> | chaos test kill passed: kill |" in text
    assert "| ❌ | <code>slow</code> |" in text
    assert "Hooks and tests: 1 passed</summary>" in text


def test_bake_figures_call_the_visitors_count_what_it_is_new_visitors() -> None:
    """A roll-forward's BLUE serves units it saw before: the bake's visitors count (a difference of distinct
    units) is 0 while requests arrive, and must not read as "no visitors"."""
    kpi = Check(kind="kpi", stage="bake", name="error_rate", ok=True, detail="error_rate 0 (max 1)")
    outcome = Outcome(
        operation="promote",
        ok=True,
        message="pr-2 is prod",
        env="pr-2",
        fleet={"pr-2": Env(name="pr-2", status=Status.PROD)},
        checks=(kpi,),
        metrics={"visitors": 0.0, "activations": 31.0, "error_rate": 0.0, "p95_latency_ms": 2.0},
    )
    text = markdown(outcome)
    assert "BLUE's traffic during the bake: new visitors 0, activations 31, error\\_rate 0" in text
