"""A small GitHub REST API on 127.0.0.1 for end-to-end runs of `squals-action` (through GITHUB_API_URL).

It keeps comments, labels, check runs, deployments and statuses in memory, answers with the documented
response examples (from the OpenAPI excerpt) updated with what was stored, and records every request.
"""

from __future__ import annotations

import json
import re
import threading
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.support.github import example
from tests.support.local_http import LocalServer, QuietHandler


class FakeGitHub(LocalServer):
    def __init__(self, repository: str, permissions: dict[str, str] | None = None) -> None:
        self.repository = repository
        self.permissions = permissions or {}
        self.requests: list[tuple[str, str, Any]] = []
        self.comments: dict[int, dict[str, Any]] = {}
        self.labels: dict[str, dict[str, Any]] = {}
        self.check_runs: dict[int, dict[str, Any]] = {}
        #: Commit statuses by commit (the combined status API's ``statuses``), as other CI systems post them.
        self.commit_statuses: dict[str, list[dict[str, Any]]] = {}
        self.deployments: dict[int, dict[str, Any]] = {}
        self.statuses: dict[int, list[dict[str, Any]]] = {}
        self.pulls: dict[int, dict[str, Any]] = {}
        self.pr_labels: dict[int, set[str]] = {}
        #: Answers to give before the real one: (method, path suffix) -> [(status, headers, body), ...].
        self.inject: dict[tuple[str, str], list[tuple[int, dict[str, str], Any]]] = {}
        self._ids = 100
        self._lock = threading.Lock()
        fake = self

        class Handler(QuietHandler):
            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else None
                headers: dict[str, str] = {}
                with fake._lock:
                    injected = fake.injected(self.command, self.path, body)
                    if injected is not None:
                        status, headers, answer = injected
                    else:
                        status, answer = fake.handle(self.command, self.path, body)
                data = b"" if answer is None else json.dumps(answer).encode()
                self.reply(status, data, {**headers, "Content-Type": "application/json; charset=utf-8"})

            do_GET = do_POST = do_PATCH = do_DELETE = _serve

        super().__init__(Handler)

    def _id(self) -> int:
        self._ids += 1
        return self._ids

    def injected(self, method: str, raw_path: str, body: Any) -> tuple[int, dict[str, str], Any] | None:
        path = urlsplit(raw_path).path
        for (verb, suffix), answers in self.inject.items():
            if verb == method and path.endswith(suffix) and answers:
                self.requests.append((method, raw_path, body))
                return answers.pop(0)
        return None

    def handle(self, method: str, raw_path: str, body: Any) -> tuple[int, Any]:
        parts = urlsplit(raw_path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        self.requests.append((method, raw_path, body))
        prefix = f"/repos/{self.repository}"
        if not parts.path.startswith(prefix):
            return 404, {"message": "Not Found"}
        path = parts.path[len(prefix) :]
        base = self.url + prefix
        routes: list[tuple[str, str, Any]] = [
            ("GET", r"/collaborators/([^/]+)/permission", self._permission),
            ("GET", r"/pulls/(\d+)", lambda n: (200, self.pulls[int(n)])),
            (
                "GET",
                r"/issues/(\d+)/comments",
                lambda n: (200, [c for c in self.comments.values() if c["issue"] == int(n)]),
            ),
            ("POST", r"/issues/(\d+)/comments", lambda n: self._comment(int(n), body, base)),
            ("PATCH", r"/issues/comments/(\d+)", lambda i: self._edit_comment(int(i), body)),
            (
                "GET",
                r"/labels/([^/]+)",
                lambda name: (
                    (200, self.labels[name]) if name in self.labels else (404, {"message": "Not Found"})
                ),
            ),
            ("POST", r"/labels", lambda: self._label(body, base)),
            ("DELETE", r"/issues/(\d+)/labels/([^/]+)", self._unlabel),
            ("GET", r"/commits/([0-9a-f]+)/check-runs", lambda sha: (200, self._runs_of(sha, query))),
            ("GET", r"/commits/([0-9a-f]+)/status", lambda sha: (200, self._combined(sha, base))),
            ("POST", r"/check-runs", lambda: self._check_run(body, base)),
            ("PATCH", r"/check-runs/(\d+)", lambda i: self._edit_check_run(int(i), body)),
            ("GET", r"/deployments", lambda: (200, self._deployments_of(query))),
            ("POST", r"/deployments", lambda: self._deployment(body, base)),
            ("GET", r"/deployments/(\d+)/statuses", lambda i: (200, list(reversed(self.statuses[int(i)])))),
            ("POST", r"/deployments/(\d+)/statuses", lambda i: self._status(int(i), body, base)),
        ]
        for verb, pattern, fn in routes:
            match = re.fullmatch(pattern, path)
            if verb == method and match:
                result: tuple[int, Any] = fn(*match.groups())
                return result
        return 404, {"message": "Not Found"}

    # -- handlers --------------------------------------------------------------------------------------

    def _permission(self, user: str) -> tuple[int, Any]:
        role = self.permissions.get(user, "read")
        perm = {"maintain": "write", "triage": "read"}.get(role, role)
        return 200, example(
            "get",
            "/repos/{owner}/{repo}/collaborators/{username}/permission",
            permission=perm,
            role_name=role,
        )

    def _comment(self, issue: int, body: Any, base: str) -> tuple[int, Any]:
        cid = self._id()
        c = example(
            "post",
            "/repos/{owner}/{repo}/issues/{issue_number}/comments",
            "201",
            id=cid,
            body=body["body"],
            url=f"{base}/issues/comments/{cid}",
        )
        c["user"] = dict(c["user"], login="github-actions[bot]", type="Bot")
        c["issue"] = issue
        self.comments[cid] = c
        return 201, c

    def _edit_comment(self, cid: int, body: Any) -> tuple[int, Any]:
        self.comments[cid]["body"] = body["body"]
        return 200, self.comments[cid]

    def _label(self, body: Any, base: str) -> tuple[int, Any]:
        lab = example(
            "post",
            "/repos/{owner}/{repo}/labels",
            "201",
            id=self._id(),
            name=body["name"],
            color=body["color"],
            description=body.get("description"),
            url=f"{base}/labels/{body['name']}",
        )
        self.labels[body["name"]] = lab
        return 201, lab

    def _unlabel(self, issue: str, name: str) -> tuple[int, Any]:
        held = self.pr_labels.setdefault(int(issue), set())
        if name not in held:
            return 404, {"message": "Label does not exist"}
        held.discard(name)
        return 200, [self.labels[n] for n in sorted(held) if n in self.labels]

    def _runs_of(self, sha: str, query: dict[str, str]) -> Any:
        runs = [
            r
            for r in self.check_runs.values()
            if r["head_sha"] == sha and r["name"] == query.get("check_name", r["name"])
        ]
        return {"total_count": len(runs), "check_runs": runs}

    def _combined(self, sha: str, base: str) -> Any:
        statuses = self.commit_statuses.get(sha, [])
        states = {s["state"] for s in statuses}
        state = next((s for s in ("failure", "error", "pending") if s in states), "success")
        return example(
            "get",
            "/repos/{owner}/{repo}/commits/{ref}/status",
            sha=sha,
            state=state,
            statuses=statuses,
            total_count=len(statuses),
            commit_url=f"{base}/commits/{sha}",
        )

    def job(self, sha: str, name: str, conclusion: str | None) -> dict[str, Any]:
        """A check run another job of the workflow made on ``sha`` (completed when ``conclusion`` is set)."""
        _, run = self._check_run({"name": name, "head_sha": sha, "status": "in_progress"}, self.url)
        run["html_url"] = f"https://github.com/{self.repository}/actions/runs/9/job/{run['id']}"
        if conclusion is not None:
            run.update(status="completed", conclusion=conclusion)
        return run

    def _check_run(self, body: Any, base: str) -> tuple[int, Any]:
        rid = self._id()
        run = example(
            "post",
            "/repos/{owner}/{repo}/check-runs",
            "201",
            "example-of-in-progress-conclusion",
            id=rid,
            url=f"{base}/check-runs/{rid}",
            conclusion=None,
            output={},
            annotations=[],
        )
        run.update({k: v for k, v in body.items()})
        run["annotations"] = []
        self.check_runs[rid] = run
        return 201, run

    def _edit_check_run(self, rid: int, body: Any) -> tuple[int, Any]:
        run = self.check_runs[rid]
        for key, value in body.items():
            if key == "output":
                run["annotations"].extend(value.get("annotations", []))
                run["output"] = {k: v for k, v in value.items() if k != "annotations"}
            else:
                run[key] = value
        if "conclusion" in body:
            run["status"] = "completed"
        return 200, run

    def _deployments_of(self, query: dict[str, str]) -> Any:
        found = [
            d
            for d in self.deployments.values()
            if d["sha"] == query.get("sha", d["sha"])
            and d["environment"] == query.get("environment", d["environment"])
        ]
        return sorted(found, key=lambda d: -d["id"])

    def _deployment(self, body: Any, base: str) -> tuple[int, Any]:
        did = self._id()
        dep = example(
            "post",
            "/repos/{owner}/{repo}/deployments",
            "201",
            "simple-example",
            id=did,
            sha=body["ref"],
            ref=body["ref"],
            environment=body.get("environment"),
            description=body.get("description"),
            url=f"{base}/deployments/{did}",
            statuses_url=f"{base}/deployments/{did}/statuses",
            transient_environment=body.get("transient_environment", False),
            production_environment=body.get("production_environment", False),
        )
        self.deployments[did] = dep
        self.statuses[did] = []
        return 201, dep

    def _status(self, did: int, body: Any, base: str) -> tuple[int, Any]:
        st = example(
            "post",
            "/repos/{owner}/{repo}/deployments/{deployment_id}/statuses",
            "201",
            id=self._id(),
            deployment_url=f"{base}/deployments/{did}",
            **body,
        )
        self.statuses[did].append(st)
        return 201, st

    # -- views for assertions --------------------------------------------------------------------------

    def comment_bodies(self, issue: int) -> list[str]:
        return [c["body"] for c in self.comments.values() if c["issue"] == issue]

    def states(self, environment: str) -> list[str]:
        return [
            s["state"]
            for d in sorted(self.deployments.values(), key=lambda d: d["id"])
            if d["environment"] == environment
            for s in self.statuses[d["id"]]
        ]
