"""The safety vulnerability database (pyup.io / Safety CLI), read offline from its documented JSON files.

safety 3.x's CLI contacts its server at start-up even with ``check --db DIR`` and fails without network,
so this source does not run the CLI. It reads the database files directly, in the format the safety
package itself reads with ``fetch_database_file`` (``DIR/insecure_full.json``, schema 2.x):

* ``vulnerable_packages``: package name -> list of advisories ``{"specs": ["<1.2", ">=2,<2.1"],
  "id": "pyup.io-123" | "ids": [{"type": "pyup", "id": "123"}, {"type": "cve", "id": "CVE-..."}],
  "cve": "CVE-...", "advisory": "...", "fixed_versions": [...], "more_info_path": "/v/123/..."}``
* ``meta.severities``: ``CVE-... -> {"cvssv3": {"base_score": 7.5, "vector_string": ...}, "cvssv2": ...}``
* the older schema 1 (``$meta`` plus package names at the top level) is read too.

With ``SAFETY_API_KEY`` (and no directory) the same file is fetched from Safety's data API, with the
key in ``X-Api-Key``, retried on connection failures, 429 and 5xx by :mod:`squals_action.http_session`.
Only PyPI dependencies are checked. A missing or malformed file is an error naming the source, never a
silent pass.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import requests

from squals_action.gates.security.interface import (
    Advisory,
    Dependency,
    Match,
    VulnSource,
    VulnSourceError,
    normalize_name,
)
from squals_action.gates.security.severity import level_from_score, level_from_word, vector_score
from squals_action.http_session import TRANSIENT_STATUSES, retrying_session

DB_FILE = "insecure_full.json"
API_URL = "https://data.safetycli.com/api/v1/safety/"
SCHEMA_VERSION = "2.0.0"


class SafetySource(VulnSource):
    name = "safety"

    def __init__(
        self,
        db_dir: str | Path | None = None,
        *,
        shown: str | None = None,
        api_key: str | None = None,
        api_url: str = API_URL,
        timeout: tuple[float, float] = (5.0, 60.0),
        attempts: int = 3,
        backoff: float = 1.0,
    ) -> None:
        if db_dir is None and not api_key:
            raise VulnSourceError(
                self.name, "needs a database directory (safety_db) or SAFETY_API_KEY in the environment"
            )
        self.db_dir = Path(db_dir) if db_dir is not None else None
        #: how messages name the directory: as the squals file writes it (``safety_db``), not the checkout of
        #: the commit it was read from; by default its path
        self.shown = shown or str(self.db_dir)
        self.api_key = api_key
        self.api_url = api_url.rstrip("/") + "/"
        self.timeout = timeout
        self.attempts = attempts
        self.backoff = backoff
        self._db: dict[str, Any] | None = None

    # --- loading -------------------------------------------------------------------------------------

    def database(self) -> dict[str, Any]:
        if self._db is None:
            self._db = self._read_dir() if self.db_dir is not None else self._fetch()
        return self._db

    def _read_dir(self) -> dict[str, Any]:
        assert self.db_dir is not None
        path, shown = self.db_dir / DB_FILE, f"{self.shown}/{DB_FILE}"
        if not path.is_file():
            raise VulnSourceError(self.name, f"database file {shown} does not exist")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            raise VulnSourceError(self.name, f"cannot read {shown}: {reason}") from exc
        except json.JSONDecodeError as exc:
            raise VulnSourceError(self.name, f"{shown}:{exc.lineno}: not valid JSON ({exc.msg})") from exc
        return self._check(data, shown)

    def _fetch(self) -> dict[str, Any]:
        session = retrying_session(attempts=self.attempts, backoff=self.backoff)
        url = self.api_url + DB_FILE
        headers = {"X-Api-Key": self.api_key or "", "schema-version": SCHEMA_VERSION}
        failed = f"GET {url} failed after {self.attempts} attempts"
        try:
            with session:
                response = session.get(url, headers=headers, timeout=self.timeout)
        except requests.RequestException as exc:
            raise VulnSourceError(self.name, f"{failed}: connection failed ({type(exc).__name__})") from exc
        if response.status_code in TRANSIENT_STATUSES:
            raise VulnSourceError(self.name, f"{failed}: HTTP {response.status_code}")
        if response.status_code >= 400:
            raise VulnSourceError(self.name, f"GET {url} returned HTTP {response.status_code}")
        try:
            return self._check(response.json(), url)
        except ValueError as exc:
            raise VulnSourceError(self.name, f"GET {url} returned a body that is not JSON") from exc

    def _check(self, data: object, where: str) -> dict[str, Any]:
        if not isinstance(data, dict):
            raise VulnSourceError(self.name, f"{where}: expected a JSON object")
        if isinstance(data.get("vulnerable_packages"), dict):
            return data
        if "$meta" in data:  # schema 1: package names at the top level
            packages = {k: v for k, v in data.items() if k != "$meta"}
            return {"meta": data["$meta"], "vulnerable_packages": packages}
        raise VulnSourceError(self.name, f"{where}: no 'vulnerable_packages' (not a safety database)")

    # --- matching ------------------------------------------------------------------------------------

    def _index(self) -> dict[str, list[Mapping[str, Any]]]:
        packages = self.database()["vulnerable_packages"]
        return {normalize_name(name, "PyPI"): entries for name, entries in packages.items()}

    def query(self, dependencies: Sequence[Dependency]) -> list[Match]:
        from packaging.specifiers import InvalidSpecifier, SpecifierSet
        from packaging.version import InvalidVersion, Version

        index = self._index()
        severities = (self.database().get("meta") or {}).get("severities") or {}
        matches: list[Match] = []
        for dep in dependencies:
            if dep.ecosystem != "PyPI":
                continue
            entries = index.get(normalize_name(dep.name, "PyPI"), [])
            try:
                version = Version(dep.version)
            except InvalidVersion:
                continue
            for entry in entries:
                if not isinstance(entry, dict):
                    continue  # insecure.json's bare specifiers carry no advisory
                hit = False
                for spec in entry.get("specs") or ([entry["v"]] if isinstance(entry.get("v"), str) else []):
                    try:
                        if SpecifierSet(spec).contains(version, prereleases=True):
                            hit = True
                            break
                    except InvalidSpecifier:
                        continue
                if hit:
                    matches.append(Match(dep, self._advisory(entry, severities)))
        return matches

    def _advisory(self, entry: Mapping[str, Any], severities: Mapping[str, Any]) -> Advisory:
        ids = [i for i in entry.get("ids") or () if isinstance(i, dict)]
        pyup = next((str(i.get("id")) for i in ids if i.get("type") == "pyup"), None)
        raw_id = str(entry.get("id") or "")
        vuln_id = f"pyup.io-{pyup}" if pyup else raw_id or "pyup.io-unknown"
        aliases = {str(i.get("id")) for i in ids if i.get("type") in ("cve", "pve") and i.get("id")}
        cve = entry.get("cve")
        if isinstance(cve, str) and cve:
            aliases.add(cve)
        aliases.discard(vuln_id)
        score: float | None = None
        level = None
        for alias in sorted(aliases):
            meta = severities.get(alias) or {}
            for kind in ("cvssv3", "cvssv2"):
                data = meta.get(kind) or {}
                value = data.get("base_score")
                if value is None and isinstance(data.get("vector_string"), str):
                    value = vector_score(data["vector_string"])
                if isinstance(value, (int, float)):
                    score = float(value)
                    break
                level = level or level_from_word(data.get("base_severity"))
            if score is not None:
                break
        if score is not None:
            level = level_from_score(score)
        base = "https://data.safetycli.com"
        more = entry.get("more_info_path")
        return Advisory(
            id=vuln_id,
            source=self.name,
            summary=str(entry.get("advisory") or "")[:300],
            aliases=tuple(sorted(aliases)),
            severity=level,
            score=score,
            fixed_versions=tuple(str(v) for v in entry.get("fixed_versions") or () if v),
            url=f"{base}{more}" if isinstance(more, str) else None,
        )
