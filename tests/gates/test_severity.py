"""CVSS vectors to scores and levels, checked against scores NVD publishes for these vectors."""

from __future__ import annotations

import pytest

from squals_action.gates.security.severity import (
    at_least,
    cvss2_score,
    cvss3_score,
    level_from_score,
    level_from_word,
    vector_score,
)


@pytest.mark.parametrize(
    ("vector", "score"),
    [
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", 9.8),
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H", 10.0),
        ("CVSS:3.1/AV:N/AC:H/PR:N/UI:R/S:C/C:H/I:N/A:N", 6.1),
        ("CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:N/I:H/A:H", 7.4),
        ("CVSS:3.1/AV:N/AC:L/PR:H/UI:N/S:U/C:H/I:H/A:H", 7.2),
        ("CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:L/I:L/A:L", 5.6),
        ("CVSS:3.0/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:N/A:N", 8.6),
        ("CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:N/I:N/A:N", 0.0),
    ],
)
def test_cvss3(vector: str, score: float) -> None:
    assert cvss3_score(vector) == score


def test_cvss2_and_dispatch() -> None:
    assert cvss2_score("AV:N/AC:L/Au:N/C:P/I:P/A:P") == 7.5
    assert cvss2_score("AV:N/AC:M/Au:N/C:P/I:P/A:P") == 6.8
    assert vector_score("AV:N/AC:L/Au:N/C:C/I:C/A:C") == 10.0
    assert vector_score("CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N") is None
    assert cvss3_score("CVSS:3.1/AV:X") is None


def test_levels() -> None:
    assert [level_from_score(s) for s in (0.0, 3.9, 4.0, 6.9, 7.0, 8.9, 9.0)] == [
        "low",
        "low",
        "medium",
        "medium",
        "high",
        "high",
        "critical",
    ]
    assert level_from_word("MODERATE") == "medium"
    assert level_from_word("Critical") == "critical"
    assert level_from_word("whatever") is None
    assert at_least("high", "high") and not at_least("medium", "high")
    assert at_least(None, "critical")  # unknown severity fails closed
