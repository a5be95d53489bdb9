"""OSV records (the OpenSSF Open Source Vulnerability schema), shared by the OSV API and offline sources.

One record describes one vulnerability across packages; here it becomes an :class:`Advisory` for one package
(its fixed versions, aliases, severity), and :func:`affects` evaluates a record's ranges for a version the way
the schema specifies (events sorted by version: ``introduced`` opens, ``fixed``/``last_affected`` close).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from squals_action.gates.security.interface import Advisory, normalize_name
from squals_action.gates.security.severity import level_from_score, level_from_word, vector_score
from squals_action.manifest.model import Severity

OSV_URL = "https://osv.dev/vulnerability/"

Record = Mapping[str, Any]


def _affected_for(record: Record, ecosystem: str, name: str) -> list[Mapping[str, Any]]:
    wanted = normalize_name(name, ecosystem)
    out: list[Mapping[str, Any]] = []
    for entry in record.get("affected") or ():
        package = entry.get("package") or {}
        eco = str(package.get("ecosystem", "")).split(":")[0]
        if eco == ecosystem and normalize_name(str(package.get("name", "")), ecosystem) == wanted:
            out.append(entry)
    return out


def _severity_of(entries: Sequence[Mapping[str, Any]]) -> float | None:
    best: float | None = None
    for kind in ("CVSS_V3", "CVSS_V2"):
        for item in entries:
            if item.get("type") == kind and isinstance(item.get("score"), str):
                score = vector_score(item["score"])
                if score is not None and (best is None or score > best):
                    best = score
        if best is not None:
            return best
    return best


def severity(record: Record, affected: Sequence[Mapping[str, Any]]) -> tuple[Severity | None, float | None]:
    """The level and CVSS score of a record: a computed vector first, then the database's word."""
    score = _severity_of(record.get("severity") or ())
    if score is None:
        for entry in affected:
            score = _severity_of(entry.get("severity") or ())
            if score is not None:
                break
    if score is not None:
        return level_from_score(score), score
    words: list[object] = [(record.get("database_specific") or {}).get("severity")]
    for entry in affected:
        words.append((entry.get("database_specific") or {}).get("severity"))
        words.append((entry.get("ecosystem_specific") or {}).get("severity"))
    for word in words:
        level = level_from_word(word)
        if level is not None:
            return level, None
    return None, None


def fixed_versions(affected: Sequence[Mapping[str, Any]]) -> tuple[str, ...]:
    out: list[str] = []
    for entry in affected:
        for rng in entry.get("ranges") or ():
            for event in rng.get("events") or ():
                fixed = event.get("fixed")
                if isinstance(fixed, str) and fixed not in out:
                    out.append(fixed)
    return tuple(out)


def to_advisory(record: Record, ecosystem: str, name: str, source: str) -> Advisory:
    """The record as seen from package ``name``: its fixed versions, every alias, the severity."""
    affected = _affected_for(record, ecosystem, name)
    level, score = severity(record, affected)
    vuln_id = str(record.get("id", "?"))
    aliases = tuple(sorted({str(a) for a in record.get("aliases") or () if a != vuln_id}))
    references = record.get("references") or ()
    url = next(
        (str(r["url"]) for r in references if r.get("type") == "ADVISORY" and r.get("url")),
        OSV_URL + vuln_id,
    )
    summary = str(record.get("summary") or (record.get("details") or "").split("\n")[0])[:300]
    return Advisory(
        id=vuln_id,
        source=source,
        summary=summary,
        aliases=aliases,
        severity=level,
        score=score,
        fixed_versions=fixed_versions(affected),
        url=url,
    )


# --- version comparison for offline evaluation -------------------------------------------------------

_SEMVER = re.compile(r"^v?(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?$")


def _semver_key(version: str) -> tuple[Any, ...]:
    m = _SEMVER.match(version.strip())
    if m is None:
        return (float("inf"), version)
    major, minor, patch = (int(x or 0) for x in m.group(1, 2, 3))
    pre = m.group(4)
    if pre is None:
        return (major, minor, patch, 1, ())
    parts = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in pre.split("."))
    return (major, minor, patch, 0, parts)


def _version_key(ecosystem: str, version: str) -> Any:
    if ecosystem == "PyPI":
        from packaging.version import InvalidVersion, Version

        try:
            return (0, Version(version))
        except InvalidVersion:
            return None
    return _semver_key(version)


def _range_affects(events: Sequence[Mapping[str, str]], key: Any, ecosystem: str) -> bool:
    ordered: list[tuple[int, Any, str]] = []
    for event in events:
        for kind in ("introduced", "fixed", "last_affected"):
            value = event.get(kind)
            if not isinstance(value, str):
                continue
            if kind == "introduced" and value == "0":
                ordered.append((0, None, kind))
                continue
            vkey = _version_key(ecosystem, value)
            if vkey is None:
                continue
            ordered.append((1, vkey, kind))
    ordered.sort(key=lambda t: (t[0], t[1]) if t[1] is not None else (t[0],))
    affected = False
    for _, vkey, kind in ordered:
        if kind == "introduced" and (vkey is None or key >= vkey):
            affected = True
        elif (kind == "fixed" and key >= vkey) or (kind == "last_affected" and key > vkey):
            affected = False
    return affected


def affects(record: Record, ecosystem: str, name: str, version: str) -> bool:
    """Whether ``name==version`` is affected: listed in ``versions`` or inside an ECOSYSTEM/SEMVER range."""
    key = _version_key(ecosystem, version)
    for entry in _affected_for(record, ecosystem, name):
        if version in (entry.get("versions") or ()):
            return True
        if key is None:
            continue
        for rng in entry.get("ranges") or ():
            if rng.get("type") in ("ECOSYSTEM", "SEMVER") and _range_affects(
                rng.get("events") or (), key, ecosystem
            ):
                return True
    return False


def package_keys(record: Record) -> list[tuple[str, str]]:
    """``(ecosystem, normalized name)`` of every package a record affects, for indexing."""
    keys: list[tuple[str, str]] = []
    for entry in record.get("affected") or ():
        package = entry.get("package") or {}
        eco = str(package.get("ecosystem", "")).split(":")[0]
        name = package.get("name")
        if eco and isinstance(name, str):
            keys.append((eco, normalize_name(name, eco)))
    return keys
