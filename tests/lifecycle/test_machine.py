"""The state machine, exhaustively: every (status, event) pair, and random event sequences on whole fleets."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from squals_action.lifecycle import machine as m
from squals_action.lifecycle.machine import Env, Event, InvalidTransition, Status

S, E = Status, Event

# The expected table, by hand, row by row (status -> {event: next}); every pair not listed is invalid.
EXPECTED: dict[Status, dict[Event, Status]] = {
    S.ABSENT: {E.DEPLOY: S.PREPARING},
    S.PREPARING: {
        E.DEPLOY: S.PREPARING,
        E.HOOKS_OK: S.PROVISIONING,
        E.HOOKS_FAILED: S.ABORTED,
        E.TEARDOWN: S.RETIRED,
        E.DOWN: S.RETIRED,
    },
    S.ABORTED: {E.DEPLOY: S.PREPARING, E.TEARDOWN: S.RETIRED, E.DOWN: S.RETIRED},
    S.PROVISIONING: {
        E.DEPLOY: S.PREPARING,
        E.PROVISION: S.PROVISIONED,
        E.PROVISION_FAILED: S.FAILED,
        E.TEARDOWN: S.RETIRED,
        E.DOWN: S.RETIRED,
    },
    S.PROVISIONED: {
        E.DEPLOY: S.PREPARING,
        E.HOOKS_OK: S.VERIFYING,
        E.HOOKS_FAILED: S.FAILED,
        E.TEARDOWN: S.RETIRED,
        E.DOWN: S.RETIRED,
    },
    S.VERIFYING: {
        E.DEPLOY: S.PREPARING,
        E.EXIT_TESTS_OK: S.READY,
        E.EXIT_TESTS_FAILED: S.FAILED,
        E.TEARDOWN: S.RETIRED,
        E.DOWN: S.RETIRED,
    },
    S.READY: {E.DEPLOY: S.PREPARING, E.PROMOTE_START: S.BLUE, E.TEARDOWN: S.RETIRED, E.DOWN: S.RETIRED},
    S.FAILED: {E.DEPLOY: S.PREPARING, E.TEARDOWN: S.RETIRED, E.DOWN: S.RETIRED},
    S.BLUE: {
        E.STEP: S.BLUE,
        E.CHAOS: S.BLUE,
        E.BAKE_OK: S.BAKED,
        E.BAKE_BREACH: S.FAILED,
        E.BAKE_INCONCLUSIVE: S.READY,
        E.ABORT: S.READY,
        E.DOWN: S.RETIRED,
    },
    S.BAKED: {E.COMPLETE: S.PROD, E.PROMOTE_HOOK_FAILED: S.READY, E.ABORT: S.READY, E.DOWN: S.RETIRED},
    S.PROD: {
        E.COMPLETE: S.POSTPROD,
        E.ROLLBACK: S.POSTPROD,
        E.HOOKS_OK: S.PROD,
        E.HOOKS_FAILED: S.PROD,
        E.DOWN: S.RETIRED,
    },
    S.POSTPROD: {
        E.COMPLETE: S.RETIRED,
        E.ROLLBACK: S.PROD,
        E.PROMOTE_START: S.BLUE,
        E.DOWN: S.RETIRED,
    },
    S.RETIRED: {E.DEPLOY: S.PREPARING, E.TEARDOWN: S.RETIRED, E.DOWN: S.RETIRED},
}


@pytest.mark.parametrize("status", list(Status))
@pytest.mark.parametrize("event", list(Event))
def test_every_pair(status: Status, event: Event) -> None:
    expected = EXPECTED[status].get(event)
    if expected is None:
        with pytest.raises(InvalidTransition) as info:
            m.step("pr-1", status, event)
        assert info.value.one_line().startswith(f"pr-1 is {status.value}: cannot {event.value}")
    else:
        assert m.step("pr-1", status, event) is expected


def test_table_has_nothing_beyond_the_expected() -> None:
    listed = {(s, e) for s, row in EXPECTED.items() for e in row}
    assert set(m.TRANSITIONS) == listed


def test_every_status_is_reachable_from_absent() -> None:
    seen, frontier = {S.ABSENT}, [S.ABSENT]
    while frontier:
        status = frontier.pop()
        for (src, _event), dst in m.TRANSITIONS.items():
            if src is status and dst not in seen:
                seen.add(dst)
                frontier.append(dst)
    assert seen == set(Status)


def test_refusals_say_why() -> None:
    with pytest.raises(InvalidTransition, match="rollback target"):
        m.step("pr-3", S.POSTPROD, E.TEARDOWN)
    with pytest.raises(InvalidTransition, match="never deployed"):
        m.step("pr-3", S.ABSENT, E.PROMOTE_START)


def _ready(name: str) -> Env:
    return Env(name=name, status=S.READY, handle={"pid": 1}, url="http://127.0.0.1:1")


def _promote(fleet: m.Fleet, name: str, share: float = 10.0) -> dict[str, Env]:
    fleet = m.apply(fleet, E.PROMOTE_START, name, blue_share=share)
    fleet = m.apply(fleet, E.BAKE_OK, name)
    return m.apply(fleet, E.COMPLETE, name)


def test_story_promotions_and_rollback() -> None:
    fleet: dict[str, Env] = {"pr-1": _ready("pr-1")}
    fleet = m.apply(fleet, E.PROMOTE_START, "pr-1", blue_share=10)
    assert fleet["pr-1"].share == 100.0  # first promotion: no GREEN to share with
    fleet = m.apply(m.apply(fleet, E.BAKE_OK, "pr-1"), E.COMPLETE, "pr-1")
    assert m.prod(fleet) == fleet["pr-1"]

    fleet["pr-2"] = _ready("pr-2")
    fleet = m.apply(fleet, E.PROMOTE_START, "pr-2", blue_share=25)
    assert m.weights(fleet) == {"pr-1": 75.0, "pr-2": 25.0}
    fleet = m.apply(m.apply(fleet, E.BAKE_OK, "pr-2"), E.COMPLETE, "pr-2")
    assert (fleet["pr-1"].status, fleet["pr-2"].status) == (S.POSTPROD, S.PROD)
    assert m.weights(fleet) == {"pr-1": 0.0, "pr-2": 100.0}

    fleet["pr-3"] = _ready("pr-3")
    fleet = _promote(fleet, "pr-3")
    assert fleet["pr-1"].status is S.RETIRED and fleet["pr-1"].handle is None
    assert m.weights(fleet) == {"pr-2": 0.0, "pr-3": 100.0}

    fleet = m.apply(fleet, E.ROLLBACK, "pr-3")
    assert (fleet["pr-2"].status, fleet["pr-3"].status) == (S.PROD, S.POSTPROD)
    assert m.weights(fleet) == {"pr-2": 100.0, "pr-3": 0.0}


def test_breach_returns_all_traffic_to_green_with_the_reason() -> None:
    fleet: dict[str, Env] = {"pr-1": Env(name="pr-1", status=S.PROD, share=100.0), "pr-2": _ready("pr-2")}
    fleet = m.apply(fleet, E.PROMOTE_START, "pr-2", blue_share=10)
    fleet = m.apply(fleet, E.BAKE_BREACH, "pr-2", reason="error_rate 40 % > 1 %")
    assert fleet["pr-1"].share == 100.0 and fleet["pr-2"].share == 0.0
    assert fleet["pr-2"].status is S.FAILED and fleet["pr-2"].reason == "error_rate 40 % > 1 %"


def test_steps_grow_blue_and_inconclusive_returns_traffic_leaving_blue_ready() -> None:
    fleet: dict[str, Env] = {"pr-1": Env(name="pr-1", status=S.PROD, share=100.0), "pr-2": _ready("pr-2")}
    fleet = m.apply(fleet, E.PROMOTE_START, "pr-2", blue_share=10)
    fleet = m.apply(fleet, E.STEP, "pr-2", blue_share=25)
    assert m.weights(fleet) == {"pr-1": 75.0, "pr-2": 25.0} and fleet["pr-2"].status is S.BLUE
    with pytest.raises(InvalidTransition, match="share strictly between 0 and 100"):
        m.apply(fleet, E.STEP, "pr-2", blue_share=100)
    why = "no data: BLUE pr-2 served 0 requests during the bake (at least 1 expected)"
    fleet = m.apply(fleet, E.BAKE_INCONCLUSIVE, "pr-2", reason=why)
    assert (fleet["pr-1"].share, fleet["pr-2"].share, fleet["pr-2"].status) == (100.0, 0.0, S.READY)
    assert fleet["pr-2"].reason == why and fleet["pr-2"].last_event is E.BAKE_INCONCLUSIVE
    fleet = m.apply(fleet, E.PROMOTE_START, "pr-2", blue_share=10)  # promotable again
    assert fleet["pr-2"].status is S.BLUE


def test_second_candidate_refused_and_input_unchanged() -> None:
    fleet: dict[str, Env] = {
        "pr-1": Env(name="pr-1", status=S.PROD, share=100.0),
        "pr-2": _ready("pr-2"),
        "pr-3": _ready("pr-3"),
    }
    fleet = m.apply(fleet, E.PROMOTE_START, "pr-2", blue_share=10)
    before = dict(fleet)
    with pytest.raises(InvalidTransition, match="already being promoted"):
        m.apply(fleet, E.PROMOTE_START, "pr-3", blue_share=10)
    assert fleet == before


def test_env_documents_round_trip() -> None:
    env = Env(
        name="pr-4",
        status=S.FAILED,
        pr=4,
        commit="abc",
        url="http://127.0.0.1:9",
        handle={"pid": 3},
        reason="exit test e2e failed",
        checks=(
            m.Check(kind="exit-test", stage="exit", name="e2e", ok=False, detail="exit 1", duration=0.5),
            m.Check(kind="kpi", stage="bake", name="error_rate", ok=True, detail="no data", no_data=True),
        ),
        previous=S.VERIFYING,
        last_event=E.EXIT_TESTS_FAILED,
    )
    assert Env.from_doc(env.to_doc()) == env


NAMES = ["pr-1", "pr-2", "pr-3"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(list(Event)), st.sampled_from(NAMES)), max_size=40))
def test_random_sequences_keep_the_fleet_sound(moves: list[tuple[Event, str]]) -> None:
    fleet: dict[str, Env] = {}
    for event, name in moves:
        before = dict(fleet)
        try:
            extra = {"handle": {"pid": 1}} if event is E.PROVISION else {}
            fleet = m.apply(fleet, event, name, blue_share=10.0, **extra)
        except (InvalidTransition, m.FleetInvariantError):
            assert fleet == before
            continue
        assert m.invariants(fleet) == []


def test_docs_show_the_current_transition_table() -> None:
    from pathlib import Path

    docs = (Path(__file__).resolve().parents[2] / "docs" / "lifecycle.md").read_text(encoding="utf-8")
    start, end = "<!-- transitions:start -->\n", "\n<!-- transitions:end -->"
    shown = docs[docs.index(start) + len(start) : docs.index(end)]
    assert shown == m.table_markdown(), "regenerate docs/lifecycle.md's table with machine.table_markdown()"
