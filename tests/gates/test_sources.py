"""Vulnerability sources: OSV's API through ``responses`` (payloads as OSV documents them), the offline OSV
directory and zip archives, and the safety database read offline."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import pytest
import requests
import responses
from responses import matchers

from squals_action.gates.security.interface import Dependency, VulnSourceError
from squals_action.gates.security.offline import OfflineOsvSource
from squals_action.gates.security.osv import OsvSource
from squals_action.gates.security.safety import SafetySource
from tests.support.gates import VULNDB

API = "https://api.osv.dev"
OSV = VULNDB / "osv"

DEPS = [
    Dependency("PyPI", "requests", "2.25.0", "requirements.txt", 19),
    Dependency("npm", "lodash", "4.17.15", "package-lock.json", 4601),
    Dependency("npm", "minimist", "0.0.8", "package-lock.json", 3362),
    Dependency("npm", "express", "4.21.2", "package-lock.json", 1200),
]


def _load(name: str) -> object:
    return json.loads((OSV / name).read_text())


def _register_vulns(rsps: responses.RequestsMock) -> None:
    for path in sorted((OSV / "vulns").glob("*.json")):
        rsps.add(responses.GET, f"{API}/v1/vulns/{path.stem}", json=json.loads(path.read_text()))


def _no_sleep(_: float) -> None:
    return None


def test_osv_querybatch_pagination_and_records() -> None:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        first = rsps.add(
            responses.POST,
            f"{API}/v1/querybatch",
            json=_load("querybatch-response-1.json"),
            match=[matchers.json_params_matcher(_load("querybatch-request-1.json"))],  # type: ignore[arg-type]
        )
        second = rsps.add(
            responses.POST,
            f"{API}/v1/querybatch",
            json=_load("querybatch-response-2.json"),
            match=[matchers.json_params_matcher(_load("querybatch-request-2.json"))],  # type: ignore[arg-type]
        )
        _register_vulns(rsps)
        matches = OsvSource(sleep=_no_sleep).query(DEPS)
        assert first.call_count == 1 and second.call_count == 1
    found = {(m.dependency.name, m.advisory.id): m.advisory for m in matches}
    assert set(found) == {
        ("requests", "GHSA-j8r2-6x86-q33q"),
        ("lodash", "GHSA-p6mc-m468-83gw"),
        ("lodash", "GHSA-35jh-r3h4-6jhm"),  # from the second page
        ("minimist", "GHSA-vh95-rmgr-6w4m"),
        ("minimist", "GHSA-xvch-5gv4-984h"),
    }
    req = found[("requests", "GHSA-j8r2-6x86-q33q")]
    assert req.aliases == ("CVE-2023-32681", "PYSEC-2023-74")
    assert req.cves == ("CVE-2023-32681",)
    assert (req.severity, req.score, req.fixed_versions) == ("medium", 6.1, ("2.31.0",))
    assert req.url == "https://nvd.nist.gov/vuln/detail/CVE-2023-32681"
    crit = found[("minimist", "GHSA-xvch-5gv4-984h")]
    assert (crit.severity, crit.score, crit.fixed_versions) == ("critical", 9.8, ("0.2.4", "1.2.6"))
    # Only lodash's own fixed versions, not lodash-es's (the same record covers both).
    assert found[("lodash", "GHSA-p6mc-m468-83gw")].fixed_versions == ("4.17.19",)


def test_osv_batches_large_queries() -> None:
    deps = [Dependency("npm", f"pkg{i}", "1.0.0", "package-lock.json", i + 1) for i in range(5)]
    with responses.RequestsMock() as rsps:
        sizes: list[int] = []

        def answer(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
            queries = json.loads(request.body or b"{}")["queries"]
            sizes.append(len(queries))
            return 200, {}, json.dumps({"results": [{} for _ in queries]})

        rsps.add_callback(responses.POST, f"{API}/v1/querybatch", callback=answer)
        assert OsvSource(batch_size=2, sleep=_no_sleep).query(deps) == []
    assert sizes == [2, 2, 1]


def test_osv_retries_503_then_succeeds() -> None:
    delays: list[float] = []
    with responses.RequestsMock() as rsps:
        rsps.add(responses.POST, f"{API}/v1/querybatch", status=503)
        rsps.add(responses.POST, f"{API}/v1/querybatch", status=429, headers={"Retry-After": "2"})
        rsps.add(responses.POST, f"{API}/v1/querybatch", json={"results": [{}]})
        source = OsvSource(sleep=delays.append, backoff=0.5)
        assert source.query(DEPS[:1]) == []
    assert delays == [0.5, 2.0]


def test_osv_network_error_names_the_source() -> None:
    with responses.RequestsMock() as rsps:
        rsps.add(responses.POST, f"{API}/v1/querybatch", body=requests.ConnectionError("refused"))
        with pytest.raises(VulnSourceError) as err:
            OsvSource(attempts=2, sleep=_no_sleep).query(DEPS[:1])
    message = err.value.one_line()
    assert message.startswith("osv: POST https://api.osv.dev/v1/querybatch failed after 2 attempts")
    assert "connection failed" in message


def test_osv_client_error_is_not_retried() -> None:
    with responses.RequestsMock() as rsps:
        rsps.add(
            responses.POST,
            f"{API}/v1/querybatch",
            status=400,
            json={"code": 3, "message": "Invalid query."},
        )
        with pytest.raises(VulnSourceError, match=r"osv: .* returned HTTP 400: .*Invalid query"):
            OsvSource(sleep=_no_sleep).query(DEPS[:1])


def test_offline_directory_and_zip(tmp_path: Path) -> None:
    db = tmp_path / "osv"
    shutil.copytree(VULNDB / "offline" / "PyPI", db / "PyPI")
    # npm as OSV publishes it: one all.zip per ecosystem with <ID>.json members.
    (db / "npm").mkdir()
    with zipfile.ZipFile(db / "npm" / "all.zip", "w") as archive:
        for path in sorted((VULNDB / "offline" / "npm").glob("*.json")):
            archive.write(path, path.name)
    source = OfflineOsvSource(db)
    deps = [
        *DEPS,
        Dependency("PyPI", "Jinja2", "2.4.1", "requirements.txt", 23),
        Dependency("PyPI", "setuptools", "65.5.0", "requirements.txt", 30),
        Dependency("PyPI", "requests", "2.31.0", "requirements.txt", 31),
        Dependency("npm", "minimist", "1.2.6", "package-lock.json", 40),
        Dependency("npm", "lodash", "4.17.21", "package-lock.json", 50),
    ]
    found = sorted((m.dependency.name, m.dependency.version, m.advisory.id) for m in source.query(deps))
    assert found == [
        ("Jinja2", "2.4.1", "PYSEC-2021-66"),
        ("lodash", "4.17.15", "GHSA-35jh-r3h4-6jhm"),
        ("lodash", "4.17.15", "GHSA-p6mc-m468-83gw"),
        ("minimist", "0.0.8", "GHSA-vh95-rmgr-6w4m"),
        ("minimist", "0.0.8", "GHSA-xvch-5gv4-984h"),
        ("requests", "2.25.0", "GHSA-j8r2-6x86-q33q"),  # the withdrawn twin is ignored
        ("setuptools", "65.5.0", "GHSA-h4gh-qq45-vh27"),
    ]
    by_id = {m.advisory.id: m.advisory for m in source.query(deps)}
    assert by_id["GHSA-h4gh-qq45-vh27"].severity == "high"  # CVSS 4.0 only: the database word decides
    assert by_id["GHSA-h4gh-qq45-vh27"].score is None
    assert by_id["PYSEC-2021-66"].severity is None  # no severity published: unknown
    assert by_id["PYSEC-2021-66"].aliases == ("CVE-2020-28493", "GHSA-g3rq-g295-4j3m")


def test_offline_errors_name_the_source(tmp_path: Path) -> None:
    with pytest.raises(VulnSourceError, match=r"^offline: advisory directory .* does not exist"):
        OfflineOsvSource(tmp_path / "missing").query(DEPS)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(VulnSourceError, match=r"^offline: .*bad.json is not valid JSON"):
        OfflineOsvSource(tmp_path).query(DEPS)
    # a database read from a commit's checkout is named as the squals file writes it, not by the checkout
    (tmp_path / "db").mkdir()
    (tmp_path / "db" / "old.zip").write_text("not a zip")
    with pytest.raises(VulnSourceError) as raised:
        OfflineOsvSource(tmp_path / "db", shown="advisories").query(DEPS)
    assert raised.value.one_line() == "offline: advisories/old.zip is not a zip archive"


def test_safety_database_read_offline() -> None:
    source = SafetySource(VULNDB / "safety")
    deps = [
        Dependency("PyPI", "requests", "2.25.0", "requirements.txt", 19),
        Dependency("PyPI", "Jinja2", "2.4.1", "requirements.txt", 23),
        Dependency("PyPI", "gunicorn", "20.0.0", "Pipfile.lock", 46),
        Dependency("PyPI", "gunicorn", "20.0.1", "Pipfile.lock", 47),
        Dependency("npm", "requests", "2.25.0", "package-lock.json", 9),
    ]
    found = {(m.dependency.name, m.dependency.version): m.advisory for m in source.query(deps)}
    assert set(found) == {("requests", "2.25.0"), ("Jinja2", "2.4.1"), ("gunicorn", "20.0.0")}
    req = found[("requests", "2.25.0")]
    assert (req.id, req.aliases, req.severity, req.score) == (
        "pyup.io-58755",
        ("CVE-2023-32681",),
        "medium",
        6.1,
    )
    assert req.fixed_versions == ("2.31.0",)
    assert req.url == "https://data.safetycli.com/vulnerabilities/CVE-2023-32681/58755/"
    jinja = found[("Jinja2", "2.4.1")]
    assert (jinja.severity, jinja.score) == ("high", 8.6)
    old_format = found[("gunicorn", "20.0.0")]
    assert (old_format.id, old_format.aliases, old_format.severity) == (
        "pyup.io-40104",
        ("PVE-2021-40104",),
        None,
    )


def test_safety_schema_1_and_errors(tmp_path: Path) -> None:
    legacy = {
        "$meta": {"advisory": "PyUp.io metadata", "timestamp": 1600000000},
        "django": [
            {
                "advisory": "Django 2.2.11 fixes CVE-2020-9402.",
                "cve": "CVE-2020-9402",
                "id": "pyup.io-38010",
                "specs": ["<1.11.29", ">=2.0a1,<2.2.11"],
                "v": "<1.11.29,>=2.0a1,<2.2.11",
            }
        ],
    }
    (tmp_path / "insecure_full.json").write_text(json.dumps(legacy))
    matches = SafetySource(tmp_path).query([Dependency("PyPI", "Django", "2.2.10", "requirements.txt", 3)])
    assert [(m.advisory.id, m.advisory.cves) for m in matches] == [("pyup.io-38010", ("CVE-2020-9402",))]
    with pytest.raises(VulnSourceError, match=r"^safety: database file .* does not exist"):
        SafetySource(tmp_path / "nope").query([])
    with pytest.raises(VulnSourceError) as raised:
        SafetySource(tmp_path / "nope", shown="safety-db").query([])
    assert raised.value.one_line() == "safety: database file safety-db/insecure_full.json does not exist"
    with pytest.raises(VulnSourceError, match=r"^safety: needs a database directory"):
        SafetySource(None)


def test_safety_api_key_fetches_the_same_file() -> None:
    body = json.loads((VULNDB / "safety" / "insecure_full.json").read_text())
    with responses.RequestsMock() as rsps:
        rsps.add(
            responses.GET,
            "https://data.safetycli.com/api/v1/safety/insecure_full.json",
            json=body,
            match=[matchers.header_matcher({"X-Api-Key": "k-123", "schema-version": "2.0.0"})],
        )
        matches = SafetySource(api_key="k-123").query([Dependency("PyPI", "requests", "2.30.0", "r.txt", 1)])
    assert [m.advisory.id for m in matches] == ["pyup.io-58755"]
    with responses.RequestsMock() as rsps:
        rsps.add(responses.GET, "https://data.safetycli.com/api/v1/safety/insecure_full.json", status=403)
        with pytest.raises(VulnSourceError, match=r"^safety: GET .* returned HTTP 403"):
            SafetySource(api_key="bad").query([])
