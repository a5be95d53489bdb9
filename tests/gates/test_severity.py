"""CVSS vectors to scores and levels, checked against scores NVD publishes for these vectors."""

from __future__ import annotations

import pytest

from squals_action.gates.security.severity import (
    at_least,
    cvss2_score,
    cvss3_score,
    cvss4_score,
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
    assert vector_score("CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N") == 9.3
    assert cvss3_score("CVSS:3.1/AV:X") is None


@pytest.mark.parametrize(
    ("vector", "score"),
    [
        # By hand from FIRST's CVSS 4.0 rules: no impact on any system scores 0.0 ...
        ("CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:N/VI:N/VA:N/SC:N/SI:N/SA:N", 0.0),
        # ... and the worst possible vector (highest of macrovector 000100, table value 10) scores 10.
        ("CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:H/SI:H/SA:H/E:A", 10.0),
        # FIRST calculator values, as in the cvss package's own test vectors.
        ("CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N", 9.3),
        ("CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:N/VI:N/VA:H/SC:N/SI:N/SA:N", 8.7),
        ("CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:N/VI:N/VA:H/SC:N/SI:N/SA:N/AR:L", 7.9),
        ("CVSS:4.0/AV:N/AC:L/AT:P/PR:N/UI:A/VC:N/VI:N/VA:N/SC:L/SI:N/SA:N", 2.1),
    ],
)
def test_cvss4(vector: str, score: float) -> None:
    assert cvss4_score(vector) == score
    assert vector_score(vector) == score


def test_malformed_cvss4_vectors_score_none() -> None:
    assert cvss4_score("CVSS:4.0/AV:N/AC:L") is None  # mandatory metrics missing
    assert cvss4_score("CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:N/VI:N/VA:N/SC:N/SI:N/SA:J") is None
    assert cvss4_score("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H") is None


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
