"""The loopback guard: every form of a loopback address is withheld, nothing else is touched."""

from __future__ import annotations

import pytest

from squals_action.report.loopback import WITHHELD, is_loopback, withhold_loopback
from squals_action.report.model import Problem, Report, Step


@pytest.mark.parametrize(
    "text",
    [
        "http://127.0.0.1:41237/healthz",
        "https://127.8.9.10",
        "http://localhost:8000",
        "http://shop.localhost/",
        "http://[::1]:9000/x?y=1",
        "127.0.0.1:5000",
        "localhost:3000",
    ],
)
def test_loopback_forms(text: str) -> None:
    assert is_loopback(text)
    assert withhold_loopback(Report(intent="preview", status="success", headline=f"at {text}.")).headline == (
        f"at {WITHHELD}."
    )


@pytest.mark.parametrize(
    "text",
    [
        "http://10.0.0.1:8080/",
        "https://shop-alb-123.us-east-1.elb.amazonaws.com",
        "http://127.example.com/",
        "version 1270.0.0.1",
        "",
    ],
)
def test_other_addresses_stay(text: str) -> None:
    assert not is_loopback(text)
    report = Report(intent="preview", status="success", headline=text, url=text or None)
    assert withhold_loopback(report) == report


def test_every_text_of_a_report_is_cleaned() -> None:
    report = Report(
        intent="promote",
        status="success",
        headline="pr-2 is prod at http://127.0.0.1:1/",
        url="http://127.0.0.1:1/",
        gates=(Step("unit", "success", 1.0, detail="GET http://localhost:8000/healthz 200"),),
        rollout="BLUE at http://127.0.0.1:2",
        problems=(Problem("curl http://[::1]:3/ failed", file="squals.yml", line=3),),
        notes=("see http://127.0.0.1:4",),
        outputs={"environment-url": "http://127.0.0.1:5"},
        sections=(("Environments", "| pr-2 | http://127.0.0.1:6 |"),),
    )
    cleaned = withhold_loopback(report)
    assert cleaned.url is None
    assert (
        "127.0.0.1" not in repr(cleaned) and "localhost" not in repr(cleaned) and "::1" not in repr(cleaned)
    )
    assert cleaned.problems[0].file == "squals.yml" and cleaned.gates[0].duration == 1.0
