"""An offline OSV database: a directory of OSV JSON records as OSV publishes them, for air-gapped runners.

Accepted layouts: loose ``<ID>.json`` files at any depth (e.g. a checkout of an advisory repository, or
``PyPI/GHSA-xxxx.json``), and the per-ecosystem archives OSV publishes (``PyPI/all.zip``, ``npm/all.zip``
from ``gs://osv-vulnerabilities``) containing one ``<ID>.json`` per record. Version ranges are evaluated
locally as the OSV schema specifies. Withdrawn records are ignored.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from squals_action.gates.security.interface import (
    Dependency,
    Match,
    VulnSource,
    VulnSourceError,
    normalize_name,
)
from squals_action.gates.security.osv_format import affects, package_keys, to_advisory


class OfflineOsvSource(VulnSource):
    name = "offline"

    def __init__(self, directory: str | Path, *, shown: str | None = None) -> None:
        self.directory = Path(directory)
        #: how messages name the directory: as the squals file writes it (``offline_db``), not the checkout
        #: of the commit it was read from; by default its path
        self.shown = shown or str(self.directory)
        self._index: dict[tuple[str, str], list[dict[str, Any]]] | None = None

    def _shown(self, path: Path) -> str:
        return f"{self.shown}/{path.relative_to(self.directory).as_posix()}"

    def _records(self) -> Iterator[tuple[str, dict[str, Any]]]:
        if not self.directory.is_dir():
            raise VulnSourceError(self.name, f"advisory directory {self.shown} does not exist")
        for path in sorted(self.directory.rglob("*")):
            if path.suffix == ".json" and path.is_file():
                yield str(path), self._load(path.read_bytes(), self._shown(path))
            elif path.suffix == ".zip" and path.is_file():
                try:
                    with zipfile.ZipFile(path) as archive:
                        for member in archive.namelist():
                            if member.endswith(".json"):
                                where = f"{self._shown(path)}!{member}"
                                yield where, self._load(archive.read(member), where)
                except zipfile.BadZipFile as exc:
                    raise VulnSourceError(self.name, f"{self._shown(path)} is not a zip archive") from exc

    def _load(self, data: bytes, where: str) -> dict[str, Any]:
        try:
            record = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise VulnSourceError(self.name, f"{where} is not valid JSON") from exc
        if not isinstance(record, dict) or not isinstance(record.get("id"), str):
            raise VulnSourceError(self.name, f"{where} is not an OSV record (no 'id')")
        return record

    def index(self) -> dict[tuple[str, str], list[dict[str, Any]]]:
        if self._index is None:
            index: dict[tuple[str, str], list[dict[str, Any]]] = {}
            for _, record in self._records():
                if record.get("withdrawn"):
                    continue
                for key in dict.fromkeys(package_keys(record)):
                    index.setdefault(key, []).append(record)
            self._index = index
        return self._index

    def query(self, dependencies: Sequence[Dependency]) -> list[Match]:
        index = self.index()
        matches: list[Match] = []
        for dep in dependencies:
            for record in index.get((dep.ecosystem, normalize_name(dep.name, dep.ecosystem)), ()):
                if affects(record, dep.ecosystem, dep.name, dep.version):
                    matches.append(Match(dep, to_advisory(record, dep.ecosystem, dep.name, self.name)))
        return matches
