"""A deploy runs exactly the commit it records (issue 14, finding 1), through the real command line.

The app answers with ``$WORKERS``, which only the squals file sets: so what answers says whose squals file
started it. Hooks append their commit's name to a log, so the log says whose hooks ran.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from squals_action.lifecycle.source import dirty_files
from squals_action.state import open_store
from tests.support.lifecycle import Project, get, git

SQUALS = [sys.executable, "-m", "squals_action.cli"]

APP = r"""
import http.server, os

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = os.environ["WORKERS"].encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"""


def squals(project: Project, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SQUALS, *args, "--report", "none"], cwd=project.path, capture_output=True, text=True, timeout=180
    )


def squals_file(workers: int, who: str, log: Path) -> str:
    return (
        "version: 1\nname: shop\n"
        f"app: {{start: '{sys.executable} workers.py', health: /, env: {{WORKERS: '{workers}'}}}}\n"
        "hooks:\n"
        f"  before_preprod: [{{run: 'echo deploy-{who} >> {log}'}}]\n"
        f"  promote: [{{run: 'echo promote-{who} >> {log}'}}]\n"
    )


@pytest.fixture
def commits(project: Project, tmp_path: Path) -> dict[str, str]:
    """Commit ``x`` says 1 worker, ``HEAD`` 2, and the working tree (uncommitted) 4."""
    log = tmp_path / "hooks.log"
    (project.path / "workers.py").write_text(APP)
    out: dict[str, str] = {}
    for who, workers in (("x", 1), ("head", 2)):
        (project.path / "squals.yml").write_text(squals_file(workers, who, log))
        git(project.path, "add", "-A")
        git(project.path, "commit", "-q", "-m", f"{workers} workers")
        out[who] = git(project.path, "rev-parse", "HEAD")
    (project.path / "squals.yml").write_text(squals_file(4, "tree", log))
    out["log"] = str(log)
    return out


def _served(project: Project, env: str) -> str:
    with open_store(project.path) as store:
        doc = store.read().environment(env)
    assert doc is not None and doc.url
    status, body = get(doc.url)
    assert status == 200
    return body


@pytest.mark.slow
def test_a_deploy_of_a_commit_runs_that_commits_squals_file_and_hooks(
    project: Project, commits: dict[str, str]
) -> None:
    x = commits["x"]
    out = squals(project, "deploy", "--pr", "40", "--commit", x[:7])
    assert out.returncode == 0, out.stderr
    assert _served(project, "pr-40") == "1"  # not HEAD's 2, not the working tree's 4
    assert Path(commits["log"]).read_text().split() == ["deploy-x"]
    with open_store(project.path) as store:
        assert f"deploy {x[:12]} to pr-40" in [e.summary for e in store.history("pr-40")]
        doc = store.read().environment("pr-40")
    assert doc is not None and doc.commit == x and "dirty" not in doc.extra

    promote = squals(project, "promote", "--pr", "40")  # the promote hooks of the commit pr-40 runs
    assert promote.returncode == 0, promote.stderr
    assert Path(commits["log"]).read_text().split() == ["deploy-x", "promote-x"]
    assert squals(project, "down").returncode == 0


@pytest.mark.slow
def test_uncommitted_changes_are_refused_unless_allowed_and_then_recorded_as_dirty(
    project: Project, commits: dict[str, str]
) -> None:
    before = git(project.path, "status", "--porcelain")
    refused = squals(project, "deploy", "--pr", "41")
    assert refused.returncode == 1
    assert refused.stderr.count("\n") == 1, refused.stderr
    assert refused.stderr.startswith("squals: error: uncommitted changes in ")
    assert "squals.yml; commit them, or deploy them as they are with --allow-dirty" in refused.stderr
    with open_store(project.path) as store:
        assert store.read().environment("pr-41") is None and store.history("pr-41") == []

    both = subprocess.run(
        [*SQUALS, "deploy", "--pr", "41", "--allow-dirty", "--commit", "HEAD"],
        cwd=project.path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert both.returncode == 2 and "cannot be combined with --commit" in both.stderr

    dirty = squals(project, "deploy", "--pr", "41", "--allow-dirty")
    assert dirty.returncode == 0, dirty.stderr
    assert _served(project, "pr-41") == "4"
    assert Path(commits["log"]).read_text().split() == ["deploy-tree"]
    head = commits["head"]
    with open_store(project.path) as store:
        assert f"deploy {head[:12]}+dirty to pr-41" in [e.summary for e in store.history("pr-41")]
        doc = store.read().environment("pr-41")
    assert doc is not None and doc.commit == head
    assert doc.extra["dirty"] is True and doc.version == f"{head[:12]}+dirty"
    # the user's files, index and HEAD are as they were
    assert git(project.path, "status", "--porcelain") == before
    assert git(project.path, "rev-parse", "HEAD") == head

    # committed, the same change deploys clean: the record says so
    git(project.path, "commit", "-qam", "4 workers")
    clean = squals(project, "deploy", "--pr", "41")
    assert clean.returncode == 0, clean.stderr
    with open_store(project.path) as store:
        doc = store.read().environment("pr-41")
    assert doc is not None and "dirty" not in doc.extra and doc.version is None
    assert squals(project, "down").returncode == 0


def test_dirty_files_name_renames_deletions_and_untracked_files_once(project: Project) -> None:
    git(project.path, "mv", "VERSION", "RENAMED")
    (project.path / "app.py").unlink()
    (project.path / "new file.txt").write_text("x")
    index = (project.path / ".git" / "index").stat().st_mtime_ns
    assert sorted(dirty_files(project.path)) == ["RENAMED", "app.py", "new file.txt"]
    assert (project.path / ".git" / "index").stat().st_mtime_ns == index  # looking wrote nothing


def _leaks(out: subprocess.CompletedProcess[str]) -> list[str]:
    """What names a temporary checkout (its folder, or anything under /tmp) in what the user saw."""
    return [word for word in ("/tmp/", "squals-source") if word in out.stdout + out.stderr]


def test_an_invalid_squals_file_in_the_deployed_commit_is_named_by_its_repository_path_and_commit(
    project: Project, commits: dict[str, str]
) -> None:
    """The deployed commit's squals file is read from a temporary checkout, but its error names the file as
    the repository does, its line and the commit: ``squals.yml:4:1 in commit 1a2b3c4d5e6f``, in one line."""
    good = (project.path / "squals.yml").read_text()  # the working tree's: valid, uncommitted
    (project.path / "squals.yml").write_text(good.replace("hooks:\n", "colour: blue\nhooks:\n"))
    git(project.path, "commit", "-qam", "an unknown key")
    bad = git(project.path, "rev-parse", "HEAD")
    (project.path / "squals.yml").write_text(good)

    out = squals(project, "deploy", "--pr", "43", "--commit", bad)
    assert out.returncode == 1
    assert out.stderr == (
        f"squals: error: squals.yml:4:1 in commit {bad[:12]}: $.colour: unknown key 'colour'; "
        "did you mean 'rollout'?\n"
    )
    assert _leaks(out) == [], out.stdout
    with open_store(project.path) as store:
        assert store.read().environment("pr-43") is None  # nothing recorded


def test_a_hooks_missing_workdir_in_the_deployed_commit_is_named_as_the_squals_file_writes_it(
    project: Project, commits: dict[str, str]
) -> None:
    """A hook whose ``workdir`` the commit lacks fails naming that workdir, where the squals file declares it
    and the commit, not the folder of the temporary checkout it would have run in."""
    text = (project.path / "squals.yml").read_text()
    (project.path / "squals.yml").write_text(text.replace("preprod: [{", "preprod: [{workdir: gone, "))
    git(project.path, "commit", "-qam", "a hook in a folder the commit lacks")
    sha = git(project.path, "rev-parse", "HEAD")

    out = squals(project, "deploy", "--pr", "44")
    assert out.returncode == 1
    line = next(line for line in out.stderr.splitlines() if "failed:" in line)
    assert line.endswith(
        f"before_preprod hook before_preprod-1 failed: cannot run 'echo deploy-tree >> {commits['log']}': "
        f"workdir 'gone' (squals.yml:5:20 in commit {sha[:12]}) is not a folder; nothing was provisioned"
    ), line
    assert "squals-source" not in out.stdout + out.stderr


def test_a_dependency_scan_of_the_deployed_commit_names_its_files_as_the_repository_does(
    project: Project, commits: dict[str, str]
) -> None:
    """The gates run on the temporary checkout of the deployed commit; a dependency file or an offline
    advisory database the commit lacks is named as the squals file writes it, not by the checkout's path."""
    text = (project.path / "squals.yml").read_text()
    scan = (
        "gates:\n  security:\n    dependencies:\n      files: [requirements.txt]\n"
        "      sources: [offline]\n      offline_db: advisories\n"
    )
    (project.path / "squals.yml").write_text(text.replace("hooks:\n", scan + "hooks:\n"))
    git(project.path, "commit", "-qam", "scan requirements.txt, which is not committed yet")
    first = git(project.path, "rev-parse", "HEAD")
    no_file = squals(project, "deploy", "--pr", "45")
    assert no_file.returncode == 1
    assert (
        f"(error: squals.yml:7:7 in commit {first[:12]}: dependency file requirements.txt does not exist); "
        "nothing was provisioned"
    ) in no_file.stderr, no_file.stderr

    (project.path / "requirements.txt").write_text("requests==2.0.0\n")
    git(project.path, "add", "requirements.txt")
    git(project.path, "commit", "-qm", "requirements.txt, but no advisories")
    no_db = squals(project, "deploy", "--pr", "45")
    assert no_db.returncode == 1
    assert "offline: advisory directory advisories does not exist" in no_db.stderr, no_db.stderr
    assert [out for out in (no_file, no_db) if "squals-source" in out.stdout + out.stderr] == []
