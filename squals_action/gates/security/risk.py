"""Change risk: a 0-100 score of a ``BASE...HEAD`` diff from explainable factors, each with its points.

Factors and their caps (points add up, the total is capped at 100):

=================  ===========================================================================  =====
factor             how it scores                                                                cap
=================  ===========================================================================  =====
size               changed lines (20 per 1000) and changed files (0.5 each)                      30
sensitive paths    4 per file touching auth, crypto, migrations, infrastructure, CI, Docker,     20
                   dependency files or the squals file (plus the policy's own globs)
dependencies       3 per new package, 1 per upgraded or downgraded one (dependency files)        15
tests              8 per deleted test file, 2 per net removed assertion, 5 per added skip        20
binaries           5 per binary file                                                             10
secrets            65 for the first added line that looks like a secret, 10 per further one      80
=================  ===========================================================================  =====

A single secret therefore exceeds the default ``max_score`` of 60 on its own. A secret's value is never
stored, logged or reported: only its file, line and kind.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from squals_action.gates.changes import git, matches
from squals_action.gates.diff import numstat, parse_diff, show_file, stream_diff
from squals_action.gates.interface import Finding, Gate, GateContext, GateResult
from squals_action.gates.security.interface import LockfileError, normalize_name
from squals_action.gates.security.lockfiles.registry import is_dependency_file, parse_text
from squals_action.manifest.model import RiskPolicy

MAX_ITEM_FINDINGS = 50
_MAX_LINE = 4096

SENSITIVE: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("auth", ("*auth*", "*login*", "*permission*", "*session*")),
    ("crypto", ("*crypt*", "*secret*", "*.pem", "*.key", "*.p12")),
    ("database migration", ("migrations/", "migration/", "alembic/", "*.sql")),
    (
        "infrastructure",
        (
            "*.tf",
            "*.tfvars",
            "infra/",
            "terraform/",
            "cloudformation/",
            "k8s/",
            "helm/",
            "charts/",
            "*.template.yml",
            "*.template.yaml",
            "*.template.json",
        ),
    ),
    (
        "CI workflow",
        (".github/workflows/", ".gitlab-ci.yml", "Jenkinsfile", ".circleci/", "azure-pipelines.yml"),
    ),
    (
        "Dockerfile",
        ("Dockerfile*", "*.dockerfile", "docker-compose*.yml", "docker-compose*.yaml", "compose.yaml"),
    ),
    (
        "dependency manifest",
        (
            "package.json",
            "pyproject.toml",
            "Pipfile",
            "setup.py",
            "setup.cfg",
            "go.mod",
            "Cargo.toml",
            "Gemfile",
            "Gemfile.lock",
        ),
    ),
    ("squals file", ("squals.yml", "squals.yaml", "squals*.yml")),
)

TEST_PATTERNS: tuple[str, ...] = (
    "tests/",
    "test/",
    "__tests__/",
    "spec/",
    "test_*.py",
    "*_test.py",
    "*_test.go",
    "*.test.js",
    "*.test.ts",
    "*.test.jsx",
    "*.test.tsx",
    "*.spec.js",
    "*.spec.ts",
    "*.spec.tsx",
)
_ASSERTION = re.compile(r"\bassert\w*\b|\bexpect\s*\(|\.should\b|\bt\.(?:Error|Fatal)f?\s*\(|\bself\.fail\b")
_SKIP = re.compile(
    r"@pytest\.mark\.(?:skip|xfail)\b|@unittest\.skip|\bpytest\.skip\s*\(|\b(?:it|describe|test)\.skip\s*\("
    r"|\bx(?:it|describe)\s*\(|\bt\.Skip(?:f|Now)?\s*\("
)

SECRET_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("AWS access key id", re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")),
    (
        "AWS secret access key",
        re.compile(r"(?i)aws.{0,20}?(?:secret|private).{0,20}?[\"'=:\s][A-Za-z0-9/+=]{40}(?![A-Za-z0-9/+=])"),
    ),
    ("private key", re.compile(r"-----BEGIN (?:[A-Z]+ )*PRIVATE KEY-----")),
    ("GitHub token", re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{60,})\b")),
    ("Slack token", re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}")),
    ("Google API key", re.compile(r"\bAIza[0-9A-Za-z_\-]{35}\b")),
    ("Stripe live key", re.compile(r"\b[rs]k_live_[0-9A-Za-z]{20,}\b")),
    ("JSON web token", re.compile(r"\beyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}")),
    (
        "hard-coded password or token",
        re.compile(
            r"(?i)\b(?:password|passwd|secret|api[_-]?key|access[_-]?token|auth[_-]?token)\b[\"']?\s*[:=]\s*"
            r"[\"'](?!\$\{|<|changeme|example|dummy|test|xxx)[^\"'\s]{8,}[\"']"
        ),
    ),
)


@dataclass(frozen=True)
class Factor:
    name: str
    points: float
    reason: str


@dataclass(frozen=True)
class RiskReport:
    score: int
    factors: tuple[Factor, ...]
    findings: tuple[Finding, ...] = ()


def is_test_file(path: str) -> bool:
    return any(matches(path, p) for p in TEST_PATTERNS)


def sensitive_kind(path: str, extra: Sequence[str] = ()) -> str | None:
    for kind, patterns in SENSITIVE:
        if any(matches(path, p) for p in patterns) or (
            kind == "dependency manifest" and is_dependency_file(path)
        ):
            return kind
    if any(matches(path, p) for p in extra):
        return "sensitive (policy)"
    return None


def scan_secrets(line: str) -> str | None:
    """The kind of secret ``line`` seems to contain, or ``None``; never returns the value itself."""
    text = line[:_MAX_LINE]
    for kind, pattern in SECRET_PATTERNS:
        if pattern.search(text):
            return kind
    return None


def _version_map(text: str, path: str) -> dict[tuple[str, str], set[str]]:
    out: dict[tuple[str, str], set[str]] = {}
    for dep in parse_text(text, path).dependencies:
        out.setdefault((dep.ecosystem, normalize_name(dep.name, dep.ecosystem)), set()).add(dep.version)
    return out


def assess(repo: Path, base: str, head: str, policy: RiskPolicy) -> RiskReport:
    """Score the change ``BASE...HEAD`` of ``repo`` against ``policy``."""
    merge_base = git(repo, "merge-base", base, head).decode().strip()
    diff = parse_diff(stream_diff(repo, base, head))
    lines_changed, files_changed = numstat(repo, base, head)
    factors: list[Factor] = []
    items: list[Finding] = []

    size_points = min(20.0, 20.0 * lines_changed / 1000) + min(10.0, 0.5 * files_changed)
    factors.append(Factor("size", size_points, f"{lines_changed} changed lines in {files_changed} files"))

    sensitive: list[tuple[str, str]] = []
    for f in diff:
        kind = sensitive_kind(f.path, policy.sensitive_paths)
        if kind is None and f.old_path != f.path:
            kind = sensitive_kind(f.old_path, policy.sensitive_paths)
        if kind is not None:
            sensitive.append((f.path, kind))
            items.append(
                Finding("sensitive-path", f"{kind} file changed", file=f.path, details={"kind": kind})
            )
    kinds = sorted({k for _, k in sensitive})
    factors.append(
        Factor(
            "sensitive paths",
            min(20.0, 4.0 * len(sensitive)),
            f"{len(sensitive)} sensitive files ({', '.join(kinds)})" if sensitive else "none touched",
        )
    )

    new_deps: list[str] = []
    changed_deps: list[str] = []
    dep_notes: list[str] = []
    for f in diff:
        if f.status == "D" or not is_dependency_file(f.path):
            continue
        try:
            before = (
                _version_map(show_file(repo, merge_base, f.old_path), f.old_path) if f.status != "A" else {}
            )
            after_text = show_file(repo, head, f.path)
            after = _version_map(after_text, f.path)
        except LockfileError as exc:
            dep_notes.append(exc.one_line())
            continue
        for key, versions in after.items():
            if key not in before:
                new_deps.append(f"{key[1]} {'/'.join(sorted(versions))}")
            elif versions != before[key]:
                changed_deps.append(
                    f"{key[1]} {'/'.join(sorted(before[key]))} -> {'/'.join(sorted(versions))}"
                )
    dep_points = min(15.0, 3.0 * len(new_deps) + 1.0 * len(changed_deps))
    reason = f"{len(new_deps)} new, {len(changed_deps)} changed packages"
    if new_deps or changed_deps:
        reason += (
            ": "
            + ", ".join([*new_deps, *changed_deps][:8])
            + (" ..." if len(new_deps) + len(changed_deps) > 8 else "")
        )
    if dep_notes:
        reason += f" (unreadable: {'; '.join(dep_notes)})"
    factors.append(Factor("dependencies", dep_points, reason))

    deleted_tests = [f.path for f in diff if f.status == "D" and is_test_file(f.path)]
    removed_asserts = 0
    skips: list[tuple[str, int]] = []
    for f in diff:
        if f.status == "D" or not is_test_file(f.path):
            continue
        removed = sum(1 for text in f.removed if _ASSERTION.search(text))
        added = sum(1 for _, text in f.added if _ASSERTION.search(text))
        removed_asserts += max(0, removed - added)
        skips.extend((f.path, n) for n, text in f.added if _SKIP.search(text))
    for path in deleted_tests:
        items.append(Finding("test-deleted", "test file deleted", file=path))
    for path, line in skips:
        items.append(Finding("test-skipped", "test skip or xfail marker added", file=path, line=line))
    test_points = min(20.0, 8.0 * len(deleted_tests) + 2.0 * removed_asserts + 5.0 * len(skips))
    factors.append(
        Factor(
            "tests",
            test_points,
            f"{len(deleted_tests)} test files deleted, {removed_asserts} assertions removed, "
            f"{len(skips)} skips added",
        )
    )

    binaries = [f.path for f in diff if f.binary and f.status != "D"]
    for path in binaries:
        items.append(Finding("binary", "binary file added or changed", file=path))
    factors.append(Factor("binaries", min(10.0, 5.0 * len(binaries)), f"{len(binaries)} binary files"))

    secrets: list[Finding] = []
    for f in diff:
        for number, text in f.added:
            kind = scan_secrets(text)
            if kind is not None:
                secrets.append(
                    Finding(
                        "secret",
                        f"added line looks like a {kind} (value not shown)",
                        severity="critical",
                        file=f.path,
                        line=number,
                        blocking=True,
                        details={"kind": kind},
                    )
                )
    secret_points = min(80.0, 65.0 + 10.0 * (len(secrets) - 1)) if secrets else 0.0
    factors.append(Factor("secrets", secret_points, f"{len(secrets)} added lines look like secrets"))

    score = min(100, round(sum(f.points for f in factors)))
    capped = secrets[:MAX_ITEM_FINDINGS] + items[: max(0, MAX_ITEM_FINDINGS - len(secrets))]
    return RiskReport(score, tuple(factors), tuple(capped))


class RiskGate(Gate):
    """Fails when the change's risk score exceeds ``max_score``; skipped without a base to diff against."""

    def __init__(self, policy: RiskPolicy, name: str = "risk") -> None:
        self.policy = policy
        self.name = name
        self.stage = "security"

    def run(self, ctx: GateContext) -> GateResult:
        started, start = time.time(), time.monotonic()
        if not ctx.base:
            return GateResult(
                self.name,
                "security",
                "skip",
                0.0,
                "skipped: no base ref to diff against",
                started_at=started,
                ended_at=started,
            )
        report = assess(ctx.repo, ctx.base, ctx.head, self.policy)
        over = report.score > self.policy.max_score
        top = sorted((f for f in report.factors if f.points > 0), key=lambda f: -f.points)
        parts = ", ".join(f"{f.name} {f.points:.0f}" for f in top) or "no risk factor"
        summary = f"risk {report.score}/100 (max {self.policy.max_score}): {parts}"
        factor_findings = tuple(
            Finding(
                "risk-factor",
                f"{f.name}: {f.points:.1f} points, {f.reason}",
                blocking=over and f.points > 0,
                details={"factor": f.name, "points": round(f.points, 1), "reason": f.reason},
            )
            for f in report.factors
        )
        findings = factor_findings + tuple(
            f
            if over or f.kind != "secret"
            else Finding(f.kind, f.message, f.severity, f.file, f.line, False, f.details)
            for f in report.findings
        )
        duration = time.monotonic() - start
        ctx.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = ctx.log_dir / f"security-{self.name}.log"
        log_path.write_text(
            "\n".join(
                [
                    summary,
                    *(
                        f"{f.file or ''}{':' + str(f.line) if f.line else ''} {f.kind}: {f.message}"
                        for f in findings
                    ),
                ]
            )
            + "\n",
            encoding="utf-8",
        )
        return GateResult(
            self.name,
            "security",
            "fail" if over else "pass",
            duration,
            summary,
            findings,
            log_path,
            started_at=started,
            ended_at=started + duration,
        )
