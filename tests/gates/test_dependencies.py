"""The dependency gate end to end: files, sources, fail_on, ignores with reasons and expiry, errors."""

from __future__ import annotations

import shutil
import socket
from datetime import date
from pathlib import Path

import requests
import responses

from squals_action.gates.interface import GateContext
from squals_action.gates.runner import make_context, run_pipeline
from squals_action.gates.security.dependencies import DependencyGate, discover
from squals_action.gates.security.osv import OsvSource
from squals_action.manifest.model import (
    DependencyScan,
    Gates,
    IgnoredAdvisory,
    Location,
    SecurityGate,
)
from tests.support.gates import LOCKFILES, VULNDB, Repo

TODAY = date(2026, 11, 26)


def _ctx(tmp_path: Path) -> GateContext:
    repo = tmp_path / "repo"
    repo.mkdir()
    shutil.copy(LOCKFILES / "requirements.txt", repo / "requirements.txt")
    shutil.copy(LOCKFILES / "yarn-berry.lock", repo / "yarn.lock")
    shutil.copytree(VULNDB / "offline", repo / "advisories")
    shutil.copytree(VULNDB / "safety", repo / "safety-db")
    return GateContext(repo=repo, log_dir=tmp_path / "logs")


def _gate(**kw: object) -> DependencyGate:
    scan = DependencyScan(
        **{
            "files": ("requirements.txt", "yarn.lock"),
            "sources": ("offline",),
            "offline_db": "advisories",
            **kw,
        }  # type: ignore[arg-type]
    )
    return DependencyGate(scan, today=lambda: TODAY)


def test_fails_on_high_with_findings_at_file_lines(tmp_path: Path) -> None:
    result = _gate(fail_on="high").run(_ctx(tmp_path))
    assert result.status == "fail"
    vulns = {
        (f.details["package"], f.details["advisory"]): f for f in result.findings if f.kind == "vulnerability"
    }
    assert set(vulns) == {
        ("requests", "GHSA-j8r2-6x86-q33q"),
        ("Jinja2", "PYSEC-2021-66"),
        ("lodash", "GHSA-p6mc-m468-83gw"),
        ("lodash", "GHSA-35jh-r3h4-6jhm"),
        ("minimist", "GHSA-vh95-rmgr-6w4m"),
        ("minimist", "GHSA-xvch-5gv4-984h"),
    }
    crit = vulns[("minimist", "GHSA-xvch-5gv4-984h")]
    assert (crit.file, crit.line, crit.blocking, crit.severity) == ("yarn.lock", 32, True, "critical")
    assert crit.details["cves"] == ["CVE-2021-44906"]
    assert crit.details["fixed_versions"] == ["0.2.4", "1.2.6"]
    assert "minimist 0.0.8: GHSA-xvch-5gv4-984h (CVE-2021-44906) critical 9.8" in crit.message
    medium = vulns[("requests", "GHSA-j8r2-6x86-q33q")]
    assert (medium.file, medium.line, medium.blocking) == ("requirements.txt", 19, False)
    unknown = vulns[("Jinja2", "PYSEC-2021-66")]
    assert unknown.severity == "unknown" and unknown.blocking  # no severity published: fail closed
    unpinned = [f for f in result.findings if f.kind == "unpinned"]
    assert {f.details["package"] for f in unpinned} >= {"flask", "gunicorn", "django"}
    assert not any(f.blocking for f in unpinned)
    assert result.summary.startswith("6 vulnerabilities; 4 at or above high;")
    assert result.log_path is not None and "BLOCKING" in result.log_path.read_text()


def test_fail_on_critical_and_ignores(tmp_path: Path) -> None:
    ignores = (
        IgnoredAdvisory("CVE-2021-44906", "minimist only parses our own build flags", date(2027, 1, 31)),
        IgnoredAdvisory("PYSEC-2021-66", "urlize is not used", None),
    )
    result = _gate(fail_on="critical", ignore=ignores).run(_ctx(tmp_path))
    assert result.status == "pass", result.summary
    ignored = [f for f in result.findings if f.kind == "ignored"]
    assert {f.details["advisory"] for f in ignored} == {"GHSA-xvch-5gv4-984h", "PYSEC-2021-66"}
    assert "[ignored: minimist only parses our own build flags]" in next(
        f.message for f in ignored if f.details["advisory"] == "GHSA-xvch-5gv4-984h"
    )


def test_expired_ignore_fails_loudly(tmp_path: Path) -> None:
    where = Location("squals.yml", 14, 9)
    ignores = (IgnoredAdvisory("GHSA-xvch-5gv4-984h", "waiting for upstream", date(2026, 11, 1), where),)
    result = _gate(fail_on="critical", ignore=ignores).run(_ctx(tmp_path))
    assert result.status == "fail"
    expired = [f for f in result.findings if f.kind == "ignore-expired"]
    assert len(expired) == 1 and expired[0].blocking
    assert (expired[0].file, expired[0].line) == ("squals.yml", 14)
    assert "expired on 2026-11-01" in expired[0].message and "waiting for upstream" in expired[0].message
    assert "1 expired ignore" in result.summary
    # The advisory itself is no longer ignored.
    crit = next(f for f in result.findings if f.details.get("advisory") == "GHSA-xvch-5gv4-984h")
    assert crit.kind == "vulnerability" and crit.blocking


def test_sources_merge_by_alias(tmp_path: Path) -> None:
    result = _gate(sources=("offline", "safety"), safety_db="safety-db", fail_on="critical").run(
        _ctx(tmp_path)
    )
    requests_findings = [
        f for f in result.findings if f.kind == "vulnerability" and f.details["package"] == "requests"
    ]
    assert len(requests_findings) == 1
    details = requests_findings[0].details
    assert details["sources"] == ["offline", "safety"]
    assert "pyup.io-58755" in details["aliases"] and "CVE-2023-32681" in details["cves"]  # type: ignore[operator]


def test_network_error_gives_status_error_naming_the_source(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    scan = DependencyScan(files=("requirements.txt",), sources=("osv",), fail_on="high")
    with responses.RequestsMock() as rsps:
        rsps.add(
            responses.POST, "https://api.osv.dev/v1/querybatch", body=requests.ConnectionError("no route")
        )
        gate = DependencyGate(scan, sources={"osv": OsvSource(attempts=2, sleep=lambda _: None)})
        result = gate.run(ctx)
    assert result.status == "error"
    assert (
        "source error: osv: POST https://api.osv.dev/v1/querybatch failed after 2 attempts" in result.summary
    )


def _closed_port_url() -> str:
    """A URL of 127.0.0.1 where nothing listens: connections are refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def test_an_unreachable_source_reads_as_an_error_never_as_no_vulnerabilities(tmp_path: Path) -> None:
    """Issue 14, finding 4: an unreachable OSV read "no known vulnerabilities; 15 dependencies checked"."""
    url = _closed_port_url()
    ctx = _ctx(tmp_path)
    failed = f"source error: osv: POST {url}/v1/querybatch failed after 2 attempts: connection failed"

    def gate(*sources: str) -> DependencyGate:
        scan = DependencyScan(
            files=("requirements.txt",), sources=sources, offline_db="advisories", fail_on="critical"
        )
        return DependencyGate(scan, sources={"osv": OsvSource(url, attempts=2, sleep=lambda _: None)})

    result = gate("osv").run(ctx)
    assert result.status == "error"
    assert result.summary == f"{failed} (ConnectionError); 6 dependencies not checked"
    result = gate("offline", "osv").run(ctx)
    assert result.status == "fail" and result.summary.startswith(failed), result.summary  # a critical one
    assert result.summary.endswith("; 6 dependencies checked with offline"), result.summary


def test_misconfigured_source_is_an_error_not_a_pass(tmp_path: Path) -> None:
    result = _gate(sources=("offline",), offline_db=None).run(_ctx(tmp_path))
    assert result.status == "error"
    assert "offline: needs 'offline_db'" in result.summary


def test_discovery_and_pipeline(make_repo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    repo: Repo = make_repo(
        {
            "requirements.txt": "requests==2.31.0\n",
            "web/package-lock.json": (LOCKFILES / "workspaces-package-lock.json").read_text(),
            "node_modules/x/package-lock.json": "{}",
            "package.json": "{}",
        }
    )
    assert discover(repo.root) == ["requirements.txt", "web/package-lock.json"]
    shutil.copytree(VULNDB / "offline", repo.root / "advisories")
    model = Gates(
        security=SecurityGate(
            dependencies=DependencyScan(sources=("offline",), offline_db="advisories", fail_on="high")
        )
    )
    ctx = make_context(repo.root, tmp_path / "logs")
    (result,) = run_pipeline(model, ctx)
    assert result.name == "dependencies" and result.status == "fail"
    blocking = {(f.file, f.details["package"], f.details["version"]) for f in result.findings if f.blocking}
    assert blocking == {
        ("web/package-lock.json", "lodash", "4.17.15"),
        ("web/package-lock.json", "minimist", "0.0.8"),
    }
    assert "389 dependencies checked with offline" in result.summary


def test_bad_lockfile_is_an_error_with_file_and_line(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    (ctx.repo / "yarn.lock").write_text('lodash@^4:\n  version "4.17.21"\nbroken line\n')
    from squals_action.gates.runner import run_one

    result = run_one(_gate(), ctx)
    assert result.status == "error"
    assert result.summary.startswith("yarn.lock:3: expected")
