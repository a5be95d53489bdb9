"""The dependency gate: parse the dependency files, ask every source, apply ignores and ``fail_on``.

The gate fails when a finding reaches ``fail_on`` (unknown severity counts as reaching it: fail closed) or
an ``ignore`` entry has expired. When a source cannot answer, the gate's status is ``error`` and the
summary names the source; it never passes on missing data.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import date
from pathlib import Path

from squals_action.gates.interface import Finding, Gate, GateContext, GateError, GateResult, GateStatus
from squals_action.gates.security.interface import (
    Advisory,
    Dependency,
    LockfileError,
    Match,
    ParsedFile,
    VulnSource,
    VulnSourceError,
)
from squals_action.gates.security.lockfiles.registry import is_dependency_file, parse_text
from squals_action.gates.security.registry import build_source
from squals_action.gates.security.severity import at_least
from squals_action.manifest.model import DependencyScan, IgnoredAdvisory

SKIP_DIRS = frozenset({"node_modules", ".git", ".venv", "venv", "__pycache__", ".tox"})


def discover(repo: Path) -> list[str]:
    """Dependency files tracked in ``repo`` (``git ls-files``), or found on disk outside vendored trees."""
    try:
        proc = subprocess.run(
            ["git", "-C", str(repo), "ls-files", "-z"],
            capture_output=True,
            timeout=60,
            check=True,
            stdin=subprocess.DEVNULL,
        )
        candidates = [p for p in proc.stdout.decode("utf-8", "replace").split("\0") if p]
    except (OSError, subprocess.SubprocessError):
        candidates = []
        for root, dirs, files in os.walk(repo):
            dirs[:] = [d for d in dirs if d not in SKIP_DIRS]
            for name in files:
                candidates.append(str((Path(root) / name).relative_to(repo)))
    found = [p for p in candidates if is_dependency_file(p) and not set(Path(p).parts) & SKIP_DIRS]
    return sorted(found)


def merge(matches: Sequence[Match]) -> list[tuple[Dependency, Advisory, tuple[str, ...]]]:
    """One entry per (dependency, vulnerability), merging advisories of several sources that share an id."""
    merged: list[tuple[Dependency, Advisory, list[str]]] = []
    for match in matches:
        for index, (dep, adv, sources) in enumerate(merged):
            if dep == match.dependency and adv.ids & match.advisory.ids:
                better = (
                    adv if adv.severity is not None or match.advisory.severity is None else match.advisory
                )
                aliases = tuple(sorted((adv.ids | match.advisory.ids) - {better.id}))
                fixed = tuple(dict.fromkeys((*adv.fixed_versions, *match.advisory.fixed_versions)))
                combined = Advisory(
                    id=better.id,
                    source=better.source,
                    summary=better.summary or adv.summary or match.advisory.summary,
                    aliases=aliases,
                    severity=better.severity,
                    score=better.score,
                    fixed_versions=fixed,
                    url=better.url,
                )
                if match.advisory.source not in sources:
                    sources.append(match.advisory.source)
                merged[index] = (dep, combined, sources)
                break
        else:
            merged.append((match.dependency, match.advisory, [match.advisory.source]))
    return [(dep, adv, tuple(src)) for dep, adv, src in merged]


def _describe(dep: Dependency, adv: Advisory) -> str:
    level = adv.severity or "unknown severity"
    score = f" {adv.score:.1f}" if adv.score is not None else ""
    cves = [a for a in adv.cves if a != adv.id]
    alias = f" ({', '.join(cves)})" if cves else ""
    fixed = f"; fixed in {', '.join(adv.fixed_versions)}" if adv.fixed_versions else "; no fixed version"
    summary = f": {adv.summary}" if adv.summary else ""
    return f"{dep.name} {dep.version}: {adv.id}{alias} {level}{score}{summary}{fixed}"


class DependencyGate(Gate):
    """Vulnerable dependencies in the change's dependency files."""

    def __init__(
        self,
        scan: DependencyScan,
        *,
        sources: Mapping[str, VulnSource] | None = None,
        today: Callable[[], date] = date.today,
        name: str = "dependencies",
    ) -> None:
        self.scan = scan
        self.name = name
        self.stage = "security"
        self._sources = dict(sources or {})
        self._today = today

    def _files(self, ctx: GateContext) -> list[Path]:
        """Declared files (relative to the squals file), or every dependency file tracked in the repo."""
        if not self.scan.files:
            return [ctx.repo / rel for rel in discover(ctx.repo)]
        paths = [ctx.squals_dir / f for f in self.scan.files]
        missing = [p for p in paths if not p.is_file()]
        if missing:
            shown = ctx.repo_relative(missing[0])  # as the repository names it, not a checkout's path
            raise GateError(f"{self.scan.location}: dependency file {shown} does not exist")
        return paths

    def _parse(self, ctx: GateContext, files: Sequence[Path]) -> list[ParsedFile]:
        parsed: list[ParsedFile] = []
        for path in files:
            rel = ctx.repo_relative(path)
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise GateError(f"{rel}: cannot read dependency file ({exc})") from exc
            try:
                parsed.append(parse_text(text, rel))
            except ValueError as exc:
                if isinstance(exc, LockfileError):
                    raise
                raise GateError(f"{self.scan.location}: {rel} is not a supported dependency file") from exc
        return parsed

    def run(self, ctx: GateContext) -> GateResult:
        started, start = time.time(), time.monotonic()
        findings: list[Finding] = []
        errors: list[str] = []
        parsed = self._parse(ctx, self._files(ctx))
        deps = [d for p in parsed for d in p.dependencies]
        for p in parsed:
            for item in p.unpinned:
                findings.append(
                    Finding(
                        "unpinned",
                        f"{item.name} is not pinned to one version ({item.spec}); it cannot be checked",
                        file=item.file,
                        line=item.line,
                        details={"package": item.name, "spec": item.spec},
                    )
                )
        matches: list[Match] = []
        used: list[str] = []
        for source_name in self.scan.sources:
            try:
                source = self._sources.get(source_name) or build_source(
                    source_name, self.scan, ctx.squals_dir, ctx.source_env
                )
                if deps:
                    matches.extend(source.query(deps))
                used.append(source.name)  # only a source that answered has checked anything
            except VulnSourceError as exc:
                errors.append(exc.one_line())
        findings.extend(self._ignore_findings())
        vulnerable = self._vulnerability_findings(merge(matches))
        findings.extend(vulnerable)
        blocking = [f for f in findings if f.blocking]
        status: GateStatus
        if blocking:
            status = "fail"
        elif errors:
            status = "error"
        else:
            status = "pass"
        summary = self._summary(deps, vulnerable, blocking, errors, used)
        duration = time.monotonic() - start
        log_path = self._write_log(ctx, findings, errors, summary)
        return GateResult(
            self.name,
            "security",
            status,
            duration,
            summary,
            tuple(findings),
            log_path,
            started_at=started,
            ended_at=started + duration,
        )

    def _ignored(self, adv: Advisory) -> IgnoredAdvisory | None:
        today = self._today()
        for entry in self.scan.ignore:
            if entry.id in adv.ids and (entry.expires is None or entry.expires >= today):
                return entry
        return None

    def _ignore_findings(self) -> list[Finding]:
        today = self._today()
        out: list[Finding] = []
        for entry in self.scan.ignore:
            if entry.expires is not None and entry.expires < today:
                out.append(
                    Finding(
                        "ignore-expired",
                        f"the ignore of {entry.id} expired on {entry.expires.isoformat()} "
                        f"(reason given: {entry.reason}); fix the dependency or renew the ignore",
                        severity="high",
                        file=entry.location.file if entry.location.file != "<unknown>" else None,
                        line=entry.location.line if entry.location.file != "<unknown>" else None,
                        blocking=True,
                        details={
                            "id": entry.id,
                            "expires": entry.expires.isoformat(),
                            "reason": entry.reason,
                        },
                    )
                )
        return out

    def _vulnerability_findings(
        self, merged: Sequence[tuple[Dependency, Advisory, tuple[str, ...]]]
    ) -> list[Finding]:
        out: list[Finding] = []
        for dep, adv, sources in sorted(merged, key=lambda t: (t[0].file, t[0].line, t[1].id)):
            ignored = self._ignored(adv)
            details: dict[str, object] = {
                "package": dep.name,
                "version": dep.version,
                "ecosystem": dep.ecosystem,
                "advisory": adv.id,
                "aliases": list(adv.aliases),
                "cves": list(adv.cves),
                "severity": adv.severity or "unknown",
                "score": adv.score,
                "fixed_versions": list(adv.fixed_versions),
                "sources": list(sources),
                "url": adv.url,
                "dev": dep.dev,
            }
            message = _describe(dep, adv)
            if ignored is not None:
                details["ignored"] = {"reason": ignored.reason, "expires": str(ignored.expires or "")}
                message += f" [ignored: {ignored.reason}]"
            out.append(
                Finding(
                    "ignored" if ignored else "vulnerability",
                    message,
                    severity=adv.severity or "unknown",
                    file=dep.file,
                    line=dep.line,
                    blocking=ignored is None and at_least(adv.severity, self.scan.fail_on),
                    details=details,
                )
            )
        return out

    def _summary(
        self,
        deps: Sequence[Dependency],
        vulnerable: Sequence[Finding],
        blocking: Sequence[Finding],
        errors: Sequence[str],
        used: Sequence[str],
    ) -> str:
        """What was found by the sources that answered; a source that did not answer comes first, and
        without any answer nothing is said about vulnerabilities (no data is not a pass)."""
        parts: list[str] = []
        if errors:
            parts.append("source error: " + "; ".join(errors))
        active = [f for f in vulnerable if f.kind == "vulnerability"]
        if active:
            parts.append(f"{len(active)} vulnerabilit{'y' if len(active) == 1 else 'ies'}")
            parts.append(f"{sum(1 for f in active if f.blocking)} at or above {self.scan.fail_on}")
        elif used:
            parts.append("no known vulnerabilities")
        expired = sum(1 for f in blocking if f.kind == "ignore-expired")
        if expired:
            parts.append(f"{expired} expired ignore{'s' if expired > 1 else ''}")
        if used:
            parts.append(f"{len(deps)} dependencies checked with {', '.join(used)}")
        else:
            parts.append(f"{len(deps)} dependencies not checked")
        return "; ".join(parts)

    def _write_log(
        self, ctx: GateContext, findings: Sequence[Finding], errors: Sequence[str], summary: str
    ) -> Path:
        ctx.log_dir.mkdir(parents=True, exist_ok=True)
        path = ctx.log_dir / f"security-{self.name}.log"
        lines = [summary, *errors]
        for f in findings:
            where = f"{f.file}:{f.line}: " if f.file else ""
            flag = "BLOCKING " if f.blocking else ""
            lines.append(f"{where}{flag}{f.kind}: {f.message}")
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return path
