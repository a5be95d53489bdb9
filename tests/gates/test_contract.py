"""Contracts of the security gate's two registries, run over every entry so a new one is covered at once:
each vulnerability source in ``SOURCES`` is built by name and answers a query (or says it cannot), each
dependency-file parser in ``PARSERS`` reads its sample with a line for every package. An entry without a
sample here fails: a new source or parser brings its sample with it."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

import pytest

from squals_action.gates.security.interface import (
    Dependency,
    LockfileError,
    VulnSource,
    VulnSourceError,
)
from squals_action.gates.security.lockfiles.registry import PARSERS, Parser, parse_text, parser_for
from squals_action.gates.security.registry import SOURCES, build_source
from squals_action.manifest.model import DependencyScan
from tests.support.gates import LOCKFILES, VULNDB, OsvReplay

#: What every source is asked: the recorded OSV query's packages (express 4.21.2 has no advisory).
DEPS = [
    Dependency("PyPI", "requests", "2.25.0", "requirements.txt", 19),
    Dependency("npm", "lodash", "4.17.15", "package-lock.json", 4601),
    Dependency("npm", "minimist", "0.0.8", "package-lock.json", 3362),
    Dependency("npm", "express", "4.21.2", "package-lock.json", 1200),
]
#: The OSV advisories of DEPS, in the recorded API answers and in the offline copy of the database.
OSV_MATCHES = frozenset(
    {
        ("requests", "GHSA-j8r2-6x86-q33q"),
        ("lodash", "GHSA-p6mc-m468-83gw"),
        ("lodash", "GHSA-35jh-r3h4-6jhm"),
        ("minimist", "GHSA-vh95-rmgr-6w4m"),
        ("minimist", "GHSA-xvch-5gv4-984h"),
    }
)


@dataclass(frozen=True)
class SourceSample:
    """A registered source's settings (database paths relative to ``tests/fixtures/vulndb``, the repository
    root of these tests) and environment when it can answer and when it cannot, and what it must find."""

    scan: DependencyScan
    env: dict[str, str]
    broken_scan: DependencyScan
    broken_env: dict[str, str]
    expected: frozenset[tuple[str, str]]


def _source_samples(osv_url: str) -> dict[str, SourceSample]:
    return {
        "osv": SourceSample(
            DependencyScan(),
            {"SQUALS_OSV_URL": osv_url},
            DependencyScan(),
            {"SQUALS_OSV_URL": f"{osv_url}/not-osv"},
            OSV_MATCHES,
        ),
        "safety": SourceSample(
            DependencyScan(safety_db="safety"),
            {},
            DependencyScan(safety_db="missing"),
            {},
            frozenset({("requests", "pyup.io-58755")}),
        ),
        "offline": SourceSample(
            DependencyScan(offline_db="offline"),
            {},
            DependencyScan(offline_db="missing"),
            {},
            OSV_MATCHES,
        ),
    }


def _source_sample(name: str, osv_api: OsvReplay) -> SourceSample:
    samples = _source_samples(osv_api.url)
    if name not in samples:
        pytest.fail(f"vulnerability source {name!r} is registered but {__name__} has no sample for it")
    return samples[name]


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_every_source_answers_a_query(name: str, osv_api: OsvReplay) -> None:
    sample = _source_sample(name, osv_api)
    source = build_source(name, sample.scan, VULNDB, sample.env)
    assert isinstance(source, VulnSource) and source.name == name
    matches = source.query(DEPS)
    assert {(m.dependency.name, m.advisory.id) for m in matches} == sample.expected
    assert all(m.dependency in DEPS and m.advisory.source == name for m in matches), matches


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_every_source_that_cannot_answer_says_so(name: str, osv_api: OsvReplay) -> None:
    sample = _source_sample(name, osv_api)
    with pytest.raises(VulnSourceError) as err:
        build_source(name, sample.broken_scan, VULNDB, sample.broken_env).query(DEPS)
    assert err.value.source == name and err.value.one_line().startswith(f"{name}: "), err.value.one_line()


#: Per registered file-name glob: the samples in ``tests/gates/data/lockfiles`` and the name each is read as.
PARSER_SAMPLES: dict[str, tuple[tuple[str, str], ...]] = {
    "requirements*.txt": (("requirements.txt", "requirements.txt"),),
    "poetry.lock": (("poetry.lock", "poetry.lock"),),
    "Pipfile.lock": (("Pipfile.lock", "Pipfile.lock"),),
    "package-lock.json": (("workspaces-package-lock.json", "package-lock.json"),),
    "npm-shrinkwrap.json": (("workspaces-package-lock.json", "npm-shrinkwrap.json"),),
    "yarn.lock": (("yarn-v1.lock", "yarn.lock"), ("yarn-berry.lock", "yarn.lock")),
}


def _parser_samples(pattern: str, parser: Parser) -> tuple[tuple[str, str], ...]:
    if pattern not in PARSER_SAMPLES:
        pytest.fail(f"dependency-file parser {pattern!r} is registered but {__name__} has no sample for it")
    samples = PARSER_SAMPLES[pattern]
    for _, as_name in samples:  # the registry sends the sample's name to this very entry
        assert fnmatch.fnmatchcase(as_name, pattern) and parser_for(as_name) is parser, as_name
    return samples


@pytest.mark.parametrize(("pattern", "parser"), PARSERS, ids=[pattern for pattern, _ in PARSERS])
def test_every_parser_reads_its_sample_with_a_line_per_package(pattern: str, parser: Parser) -> None:
    for sample, as_name in _parser_samples(pattern, parser):
        text = (LOCKFILES / sample).read_text()
        lines = text.splitlines()
        parsed = parse_text(text, as_name)
        assert parsed.path == as_name and parsed.dependencies, sample
        assert len({dep.ecosystem for dep in parsed.dependencies}) == 1, sample
        for dep in parsed.dependencies:
            assert dep.file == as_name and dep.version and 1 <= dep.line <= len(lines), (sample, dep)
            assert dep.name.lower() in lines[dep.line - 1].lower(), (sample, dep, lines[dep.line - 1])
        for loose in parsed.unpinned:
            assert loose.file == as_name and 1 <= loose.line <= len(lines), (sample, loose)


@pytest.mark.parametrize(("pattern", "parser"), PARSERS, ids=[pattern for pattern, _ in PARSERS])
def test_every_parser_names_what_it_cannot_read(pattern: str, parser: Parser) -> None:
    """Not a dependency file: an error at ``file:line``, or that line reported unrecognised; never a pass."""
    as_name = _parser_samples(pattern, parser)[0][1]
    try:
        parsed = parse_text("{{{ [[ not = a dependency file\n", as_name)
    except LockfileError as exc:
        assert (exc.file, exc.line) == (as_name, 1) and str(exc).startswith(f"{as_name}:1: "), str(exc)
    else:
        assert parsed.dependencies == ()
        assert [(loose.file, loose.line) for loose in parsed.unpinned] == [(as_name, 1)]
