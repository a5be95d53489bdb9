"""The OSV.dev API: ``POST /v1/querybatch`` for the ids, then ``GET /v1/vulns/{id}`` for each record.

``querybatch`` answers in input order with ids only; a result carrying ``next_page_token`` has more ids,
fetched by repeating that query with ``page_token``. Requests are batched (at most 1000 queries each, as
the API allows), retried by :mod:`squals_action.http_session` with exponential backoff on connection
errors, 429 and 5xx (honouring ``Retry-After`` up to 30 s), and every call has a timeout. Failures raise
:class:`VulnSourceError` naming ``osv``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import quote

import requests

from squals_action.gates.security.interface import Dependency, Match, VulnSource, VulnSourceError
from squals_action.gates.security.osv_format import to_advisory
from squals_action.http_session import TRANSIENT_STATUSES, retrying_session

DEFAULT_URL = "https://api.osv.dev"
MAX_BATCH = 1000
RETRY_AFTER_CAP = 30.0
MAX_PAGES = 100


class OsvSource(VulnSource):
    name = "osv"

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        timeout: tuple[float, float] = (5.0, 30.0),
        attempts: int = 4,
        backoff: float = 0.5,
        batch_size: int = MAX_BATCH,
        workers: int = 8,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._session: requests.Session | None = None
        self.timeout = timeout
        self.attempts = max(1, attempts)
        self.backoff = backoff
        self.batch_size = max(1, min(batch_size, MAX_BATCH))
        self.workers = max(1, workers)
        self._sleep = sleep

    @property
    def session(self) -> requests.Session:
        if self._session is None:
            # querybatch is a read: repeating the POST is safe, so it is retried like the GETs.
            self._session = retrying_session(
                attempts=self.attempts,
                backoff=self.backoff,
                methods=("GET", "POST"),
                retry_after_cap=RETRY_AFTER_CAP,
                pause=self._sleep,
            )
        return self._session

    # --- HTTP (retries are the session's) -----------------------------------------------------------

    def _request(self, method: str, path: str, body: object | None = None) -> Any:
        url = f"{self.base_url}{path}"
        failed = f"{method} {url} failed after {self.attempts} attempts"
        try:
            response = self.session.request(method, url, json=body, timeout=self.timeout)
        except requests.Timeout as exc:
            raise VulnSourceError(self.name, f"{failed}: timed out after {self.timeout[1]:g}s") from exc
        except requests.ConnectionError as exc:
            raise VulnSourceError(self.name, f"{failed}: connection failed ({type(exc).__name__})") from exc
        except requests.RequestException as exc:
            raise VulnSourceError(self.name, f"{method} {url} failed: {exc}") from exc
        if response.status_code in TRANSIENT_STATUSES:
            raise VulnSourceError(
                self.name, f"{failed}: HTTP {response.status_code} {response.reason or ''}".strip()
            )
        if response.status_code == 404 and method == "GET":
            return None
        if response.status_code >= 400:
            text = " ".join(response.text.split())[:200]
            raise VulnSourceError(self.name, f"{method} {url} returned HTTP {response.status_code}: {text}")
        try:
            return response.json()
        except ValueError as exc:
            raise VulnSourceError(self.name, f"{method} {url} returned a body that is not JSON") from exc

    # --- the two endpoints ---------------------------------------------------------------------------

    def query_ids(self, keys: Sequence[tuple[str, str, str]]) -> list[list[str]]:
        """Vulnerability ids per ``(ecosystem, name, version)``, following every ``next_page_token``."""
        ids: list[list[str]] = [[] for _ in keys]
        pending: list[tuple[int, str | None]] = [(i, None) for i in range(len(keys))]
        pages = 0
        while pending:
            pages += 1
            if pages > MAX_PAGES * max(1, len(keys) // self.batch_size + 1):
                raise VulnSourceError(self.name, "querybatch kept returning next_page_token; giving up")
            next_round: list[tuple[int, str | None]] = []
            for start in range(0, len(pending), self.batch_size):
                chunk = pending[start : start + self.batch_size]
                queries = []
                for index, token in chunk:
                    ecosystem, name, version = keys[index]
                    query: dict[str, object] = {
                        "package": {"name": name, "ecosystem": ecosystem},
                        "version": version,
                    }
                    if token:
                        query["page_token"] = token
                    queries.append(query)
                answer = self._request("POST", "/v1/querybatch", {"queries": queries})
                results = answer.get("results") if isinstance(answer, dict) else None
                if not isinstance(results, list) or len(results) != len(chunk):
                    raise VulnSourceError(
                        self.name,
                        f"querybatch answered {len(results or [])} results for {len(chunk)} queries",
                    )
                for (index, _), result in zip(chunk, results, strict=True):
                    for vuln in (result or {}).get("vulns") or ():
                        vid = vuln.get("id")
                        if isinstance(vid, str) and vid not in ids[index]:
                            ids[index].append(vid)
                    token = (result or {}).get("next_page_token")
                    if token:
                        next_round.append((index, str(token)))
            pending = next_round
        return ids

    def fetch(self, vuln_ids: Iterable[str]) -> dict[str, dict[str, Any] | None]:
        """The full records (``GET /v1/vulns/{id}``); a 404 gives ``None``."""
        unique = sorted(set(vuln_ids))
        if not unique:
            return {}
        with ThreadPoolExecutor(max_workers=min(self.workers, len(unique))) as pool:
            records = list(
                pool.map(lambda vid: self._request("GET", f"/v1/vulns/{quote(vid, safe='')}"), unique)
            )
        return dict(zip(unique, records, strict=True))

    def query(self, dependencies: Sequence[Dependency]) -> list[Match]:
        by_key: dict[tuple[str, str, str], list[Dependency]] = {}
        for dep in dependencies:
            by_key.setdefault((dep.ecosystem, dep.name, dep.version), []).append(dep)
        keys = list(by_key)
        ids = self.query_ids(keys)
        records = self.fetch(vid for found in ids for vid in found)
        matches: list[Match] = []
        for key, found in zip(keys, ids, strict=True):
            ecosystem, name, _ = key
            for vid in found:
                record = records.get(vid) or {"id": vid, "summary": "record not available from OSV"}
                advisory = to_advisory(record, ecosystem, name, self.name)
                matches.extend(Match(dep, advisory) for dep in by_key[key])
        return matches
