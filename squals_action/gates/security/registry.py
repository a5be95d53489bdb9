"""The vulnerability sources by name, as the squals file's ``dependencies.sources`` lists them.

Each factory builds its source from the scan settings, the repository root (relative database directories
are inside the repository) and squals' environment (:data:`SOURCE_VARIABLES`, the variables docs/gates.md
documents). Sources import their heavy libraries only when they run.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from squals_action.gates.security.interface import VulnSource, VulnSourceError
from squals_action.manifest.model import DependencyScan

SourceFactory = Callable[[DependencyScan, Path, Mapping[str, str]], VulnSource]

#: The environment variables the sources read: a mirror of OSV's API, Safety's data API key and a mirror of
#: that API. Every entry point hands them over through :func:`source_environment`.
SOURCE_VARIABLES = ("SQUALS_OSV_URL", "SAFETY_API_KEY", "SQUALS_SAFETY_URL")


def source_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The sources' variables that ``environ`` sets (an empty value counts as unset)."""
    return {name: environ[name] for name in SOURCE_VARIABLES if environ.get(name)}


def _osv(scan: DependencyScan, repo: Path, env: Mapping[str, str]) -> VulnSource:
    from squals_action.gates.security.osv import DEFAULT_URL, OsvSource

    return OsvSource(env.get("SQUALS_OSV_URL") or DEFAULT_URL)


def _safety(scan: DependencyScan, repo: Path, env: Mapping[str, str]) -> VulnSource:
    from squals_action.gates.security.safety import API_URL, SafetySource

    db_dir = repo / scan.safety_db if scan.safety_db else None
    return SafetySource(
        db_dir,
        shown=scan.safety_db,
        api_key=env.get("SAFETY_API_KEY") or None,
        api_url=env.get("SQUALS_SAFETY_URL") or API_URL,
    )


def _offline(scan: DependencyScan, repo: Path, env: Mapping[str, str]) -> VulnSource:
    from squals_action.gates.security.offline import OfflineOsvSource

    if not scan.offline_db:
        raise VulnSourceError("offline", "needs 'offline_db': a directory of OSV JSON advisories")
    return OfflineOsvSource(repo / scan.offline_db, shown=scan.offline_db)


SOURCES: dict[str, SourceFactory] = {"osv": _osv, "safety": _safety, "offline": _offline}


def build_source(name: str, scan: DependencyScan, repo: Path, env: Mapping[str, str]) -> VulnSource:
    factory = SOURCES.get(name)
    if factory is None:
        raise VulnSourceError(name, f"unknown vulnerability source (known: {', '.join(sorted(SOURCES))})")
    return factory(scan, repo, env)
