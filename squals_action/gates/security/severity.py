"""Severity: CVSS vectors to base scores (v3.x, v2) and scores or database words to a level.

Advisories carry severity in different shapes (an OSV ``severity`` vector, GitHub's ``MODERATE``, safety's
``cvssv3.base_score``); everything is brought to one of ``low|medium|high|critical`` so ``fail_on`` compares
like with like. CVSS 4.0 needs the specification's lookup tables; for those the database word is used.
"""

from __future__ import annotations

import math

from squals_action.manifest.model import SEVERITIES, Severity

_V3_WEIGHTS: dict[str, dict[str, float]] = {
    "AV": {"N": 0.85, "A": 0.62, "L": 0.55, "P": 0.2},
    "AC": {"L": 0.77, "H": 0.44},
    "UI": {"N": 0.85, "R": 0.62},
    "C": {"H": 0.56, "L": 0.22, "N": 0.0},
    "I": {"H": 0.56, "L": 0.22, "N": 0.0},
    "A": {"H": 0.56, "L": 0.22, "N": 0.0},
}
_V3_PR = {"U": {"N": 0.85, "L": 0.62, "H": 0.27}, "C": {"N": 0.85, "L": 0.68, "H": 0.5}}

_V2_WEIGHTS: dict[str, dict[str, float]] = {
    "AV": {"L": 0.395, "A": 0.646, "N": 1.0},
    "AC": {"H": 0.35, "M": 0.61, "L": 0.71},
    "Au": {"M": 0.45, "S": 0.56, "N": 0.704},
    "C": {"N": 0.0, "P": 0.275, "C": 0.660},
    "I": {"N": 0.0, "P": 0.275, "C": 0.660},
    "A": {"N": 0.0, "P": 0.275, "C": 0.660},
}

_WORDS: dict[str, Severity] = {
    "low": "low",
    "moderate": "medium",
    "medium": "medium",
    "high": "high",
    "important": "high",
    "critical": "critical",
}


def _metrics(vector: str) -> dict[str, str]:
    parts = [p for p in vector.strip().split("/") if ":" in p]
    return dict(p.split(":", 1) for p in parts)


def _roundup_31(value: float) -> float:
    """CVSS 3.1 Roundup: the smallest one-decimal number >= value, immune to float noise."""
    scaled = round(value * 100_000)
    if scaled % 10_000 == 0:
        return scaled / 100_000.0
    return (math.floor(scaled / 10_000) + 1) / 10.0


def cvss3_score(vector: str) -> float | None:
    """The base score of a ``CVSS:3.0/...`` or ``CVSS:3.1/...`` vector, or ``None`` if it is malformed."""
    if not vector.startswith("CVSS:3."):
        return None
    m = _metrics(vector)
    try:
        scope = m["S"]
        av, ac, ui = (_V3_WEIGHTS[k][m[k]] for k in ("AV", "AC", "UI"))
        c, i, a = (_V3_WEIGHTS[k][m[k]] for k in ("C", "I", "A"))
        pr = _V3_PR[scope][m["PR"]]
    except KeyError:
        return None
    iss = 1 - (1 - c) * (1 - i) * (1 - a)
    impact = 6.42 * iss if scope == "U" else 7.52 * (iss - 0.029) - 3.25 * (iss - 0.02) ** 15
    exploitability = 8.22 * av * ac * pr * ui
    if impact <= 0:
        return 0.0
    total = impact + exploitability if scope == "U" else 1.08 * (impact + exploitability)
    if vector.startswith("CVSS:3.0/"):
        return math.ceil(min(total, 10.0) * 10) / 10
    return _roundup_31(min(total, 10.0))


def cvss2_score(vector: str) -> float | None:
    """The base score of a CVSS v2 vector (``AV:N/AC:L/Au:N/C:P/I:P/A:P``), or ``None``."""
    m = _metrics(vector.removeprefix("(").removesuffix(")"))
    try:
        av, ac, au = (_V2_WEIGHTS[k][m[k]] for k in ("AV", "AC", "Au"))
        c, i, a = (_V2_WEIGHTS[k][m[k]] for k in ("C", "I", "A"))
    except KeyError:
        return None
    impact = 10.41 * (1 - (1 - c) * (1 - i) * (1 - a))
    exploitability = 20 * av * ac * au
    f = 0.0 if impact == 0 else 1.176
    return round(((0.6 * impact) + (0.4 * exploitability) - 1.5) * f, 1)


def vector_score(vector: str) -> float | None:
    """Score any supported vector (v3.x or v2); v4 and unknown shapes give ``None``."""
    if vector.startswith("CVSS:3."):
        return cvss3_score(vector)
    if vector.startswith("CVSS:4"):
        return None
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
