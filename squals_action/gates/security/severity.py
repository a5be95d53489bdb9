"""Severity: CVSS vectors to base scores (v4.0, v3.x, v2) and scores or database words to a level.

Advisories carry severity in different shapes (an OSV ``severity`` vector, GitHub's ``MODERATE``, safety's
``cvssv3.base_score``); everything is brought to one of ``low|medium|high|critical`` so ``fail_on`` compares
like with like. Scores come from the ``cvss`` package (Red Hat Product Security), which implements FIRST's
specifications, including CVSS 4.0's macrovector lookup tables; a malformed vector scores ``None``.
"""

from __future__ import annotations

from cvss import CVSS2, CVSS3, CVSS4
from cvss.exceptions import CVSSError

from squals_action.manifest.model import SEVERITIES, Severity

_WORDS: dict[str, Severity] = {
    "low": "low",
    "moderate": "medium",
    "medium": "medium",
    "high": "high",
    "important": "high",
    "critical": "critical",
}


def _score(calculator: type[CVSS2 | CVSS3 | CVSS4], vector: str) -> float | None:
    try:
        return float(calculator(vector.strip()).base_score)
    except CVSSError:
        return None


def cvss4_score(vector: str) -> float | None:
    """The score of a ``CVSS:4.0/...`` vector (CVSS-B; threat/environmental metrics count when given)."""
    return _score(CVSS4, vector) if vector.startswith("CVSS:4.") else None


def cvss3_score(vector: str) -> float | None:
    """The base score of a ``CVSS:3.0/...`` or ``CVSS:3.1/...`` vector, or ``None`` if it is malformed."""
    return _score(CVSS3, vector) if vector.startswith("CVSS:3.") else None


def cvss2_score(vector: str) -> float | None:
    """The base score of a CVSS v2 vector (``AV:N/AC:L/Au:N/C:P/I:P/A:P``, in parentheses or not)."""
    return _score(CVSS2, vector.strip().removeprefix("(").removesuffix(")"))


def vector_score(vector: str) -> float | None:
    """Score any vector by its version prefix (none means v2); unknown shapes give ``None``."""
    if vector.startswith("CVSS:4."):
        return cvss4_score(vector)
    if vector.startswith("CVSS:3."):
        return cvss3_score(vector)
    return cvss2_score(vector)


def level_from_score(score: float) -> Severity:
    """CVSS qualitative rating: <4 low, <7 medium, <9 high, else critical (0.0 counts as low)."""
    if score >= 9.0:
        return "critical"
    if score >= 7.0:
        return "high"
    if score >= 4.0:
        return "medium"
    return "low"


def level_from_word(word: object) -> Severity | None:
    """A database's severity word (``MODERATE``, ``High``) as a level, or ``None`` when unknown."""
    if not isinstance(word, str):
        return None
    return _WORDS.get(word.strip().lower())


def rank(level: Severity | None) -> int:
    """Order for comparisons with ``fail_on``; unknown severity ranks above critical (fails closed)."""
    return len(SEVERITIES) if level is None else SEVERITIES.index(level)


def at_least(level: Severity | None, threshold: Severity) -> bool:
    return rank(level) >= rank(threshold)
