"""Support of the gates tests: fixture paths, a git work tree with a bare origin, gate contexts, and OSV's API
replayed on 127.0.0.1 from the recorded exchanges in ``tests/fixtures/vulndb/osv``."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest

from squals_action.gates.interface import GateContext
from tests.support.local_http import LocalServer, QuietHandler

TESTS = Path(__file__).resolve().parent.parent
LOCKFILES = TESTS / "gates" / "data" / "lockfiles"
VULNDB = TESTS / "fixtures" / "vulndb"
OSV_RECORDS = VULNDB / "osv"


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True, timeout=30
    ).stdout


class Repo:
    """A work tree cloned from a bare origin; ``commit`` writes files (bytes or text) and commits them."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def write(self, files: Mapping[str, str | bytes | None]) -> None:
        for name, content in files.items():
            path = self.root / name
            if content is None:
                git(self.root, "rm", "-q", name)
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content)
            git(self.root, "add", name)

    def commit(self, files: Mapping[str, str | bytes | None], message: str = "change") -> str:
        self.write(files)
        git(self.root, "commit", "-q", "-m", message)
        return git(self.root, "rev-parse", "HEAD").strip()

    def branch(self, name: str) -> None:
        git(self.root, "checkout", "-q", "-b", name)


@pytest.fixture
def make_repo(tmp_path: Path) -> Callable[[Mapping[str, str | bytes]], Repo]:
    """A repo whose ``main`` (with ``files``) is pushed to a bare origin, then branch ``feature`` checked out.

    The base of the change is ``origin/main``.
    """

    def make(files: Mapping[str, str | bytes]) -> Repo:
        origin = tmp_path / "origin.git"
        subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(origin)], check=True, timeout=30)
        work = tmp_path / "work"
        subprocess.run(["git", "init", "-q", "-b", "main", str(work)], check=True, timeout=30)
        repo = Repo(work)
        repo.commit(files or {"README.md": "shop\n"}, "initial")
        git(work, "remote", "add", "origin", str(origin))
        git(work, "push", "-q", "origin", "main")
        git(work, "fetch", "-q", "origin")
        repo.branch("feature")
        return repo

    return make


@pytest.fixture
def ctx(tmp_path: Path) -> GateContext:
    repo = tmp_path / "repo"
    repo.mkdir()
    return GateContext(repo=repo, log_dir=tmp_path / "logs")


class OsvReplay(LocalServer):
    """OSV.dev's two endpoints on 127.0.0.1: ``POST /v1/querybatch`` answers a recorded request with its
    recorded response (``querybatch-request-N.json`` -> ``querybatch-response-N.json``) and anything else
    with HTTP 400, as OSV answers a query it cannot read; ``GET /v1/vulns/<id>`` serves ``vulns/<id>.json``
    or 404. ``requests`` records every (method, path) asked."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str]] = []
        exchanges = [
            (json.loads(req.read_text()), req.with_name(req.name.replace("request", "response")).read_bytes())
            for req in sorted(OSV_RECORDS.glob("querybatch-request-*.json"))
        ]
        replay = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:
                replay.requests.append(("POST", self.path))
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"null")
                answer = next((resp for req, resp in exchanges if req == body), None)
                if self.path != "/v1/querybatch" or answer is None:
                    self._send(400, b'{"code": 3, "message": "Invalid query."}')
                else:
                    self._send(200, answer)

            def do_GET(self) -> None:
                replay.requests.append(("GET", self.path))
                record = OSV_RECORDS / "vulns" / f"{self.path.removeprefix('/v1/vulns/')}.json"
                if self.path.startswith("/v1/vulns/") and record.parent.name == "vulns" and record.is_file():
                    self._send(200, record.read_bytes())
                else:
                    self._send(404, b'{"code": 5, "message": "Bug not found."}')

            def _send(self, status: int, body: bytes) -> None:
                self.reply(status, body, {"Content-Type": "application/json"})

        super().__init__(Handler)
        self.start()


@pytest.fixture
def osv_api() -> Iterator[OsvReplay]:
    replay = OsvReplay()
    try:
        yield replay
    finally:
        replay.stop()


class SafetyApi(LocalServer):
    """Safety's data API on 127.0.0.1: ``GET /api/v1/safety/insecure_full.json`` with the key ``key`` in
    ``X-Api-Key`` serves ``tests/fixtures/vulndb/safety``'s database, anything else HTTP 403. ``requests``
    records every (path, key) asked."""

    def __init__(self, key: str) -> None:
        self.requests: list[tuple[str, str | None]] = []
        api = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                given = self.headers.get("X-Api-Key")
                api.requests.append((self.path, given))
                if self.path == "/api/v1/safety/insecure_full.json" and given == key:
                    body = (VULNDB / "safety" / "insecure_full.json").read_bytes()
                    self.reply(200, body, {"Content-Type": "application/json"})
                else:
                    self.reply(403, b'{"detail": "Invalid API key"}', {"Content-Type": "application/json"})

        super().__init__(Handler)
