"""Validation of squals files end to end: load, schema, semantic checks, variant files, the model.

Problems are collected, not raised, so one run reports everything at once; :func:`load` raises them
together as one :class:`ManifestError` for callers that just need a model.
"""

from __future__ import annotations

import dataclasses
import functools
import gc
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import ParamSpec, TypeVar

from squals_action.manifest.build import Builder
from squals_action.manifest.checks import semantic_problems
from squals_action.manifest.model import Manifest
from squals_action.manifest.paths import find_repo_root
from squals_action.manifest.problems import FileResult, ManifestError, Problem, ValidationReport
from squals_action.manifest.schema import schema_problems
from squals_action.manifest.scripts import Scripts, missing_scripts
from squals_action.manifest.yamlload import Document, decode_source, load_document, parse_text

DISCOVERY_PATTERNS: tuple[str, ...] = ("squals.yml", "squals.yaml", "squals/*.yml", "squals/*.yaml")

P = ParamSpec("P")
R = TypeVar("R")


def gc_paused(func: Callable[P, R]) -> Callable[P, R]:
    """``func`` run with the cyclic garbage collector paused (and resumed after, if it was running).

    A validation allocates a few hundred thousand small objects (YAML nodes and their marks, the data, the
    model) that nearly all stay alive until it ends, so the collections they trigger on the way find
    almost nothing to free: 143 of them for 3,000 entries, a quarter of the CPU time of ``squals validate``
    on 5,000. Reference counting still frees what dies, and the input is bounded (1 MiB, the alias budget).
    """

    @functools.wraps(func)
    def paused(*args: P.args, **kwargs: P.kwargs) -> R:
        if not gc.isenabled():  # already paused by an outer call
            return func(*args, **kwargs)
        gc.disable()
        try:
            return func(*args, **kwargs)
        finally:
            gc.enable()

    return paused


def display_name(path: Path, relative_to: Path | None = None) -> str:
    """How problems name a file: relative to ``relative_to`` (default: the working directory) when inside."""
    base = os.path.abspath(relative_to if relative_to is not None else Path.cwd())
    full = os.path.abspath(path)
    if full == base or full.startswith(base.rstrip(os.sep) + os.sep):
        return os.path.relpath(full, base)
    return full


def discover(repo_root: Path) -> list[Path]:
    """``squals.yml`` and ``squals/*.yml`` under the repository root, in a stable order."""
    found: list[Path] = []
    for pattern in DISCOVERY_PATTERNS:
        found.extend(sorted(p for p in repo_root.glob(pattern) if p.is_file()))
    return found


class Validation:
    """One validation run; caches each file so variants shared by several files are checked once.

    With ``scripts``, the scripts the commands start must exist there (``squals validate``). With
    ``commit``, the files are a checkout of that commit (its short name, as messages give it): every problem
    and every location of the models names it beside the file.
    """

    def __init__(
        self,
        repo_root: Path | None = None,
        relative_to: Path | None = None,
        scripts: Scripts | None = None,
        commit: str = "",
    ) -> None:
        self.repo_root = repo_root
        self.relative_to = relative_to
        self.scripts = scripts
        self.commit = commit
        self.cache: dict[tuple[str, bool], tuple[list[Problem], Manifest | None]] = {}
        #: Where each file's ``name`` stands, for problems that involve several files.
        self.name_positions: dict[str, tuple[int, int]] = {}

    def file(self, path: Path, *, as_variant: bool = False) -> tuple[list[Problem], Manifest | None]:
        key = (os.path.realpath(path), as_variant)
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        self.cache[key] = ([], None)  # a cycle ends here instead of recursing
        problems, manifest = self._check(path, as_variant)
        if self.commit:
            problems = [dataclasses.replace(p, commit=self.commit) for p in problems]
        self.cache[key] = problems, manifest
        return problems, manifest

    def _check(self, path: Path, as_variant: bool) -> tuple[list[Problem], Manifest | None]:
        name = display_name(path, self.relative_to)
        base_dir = path.absolute().parent
        repo_root = self.repo_root if self.repo_root is not None else find_repo_root(base_dir)
        real_root = os.path.realpath(repo_root)
        real = os.path.realpath(path)
        if os.path.exists(real) and not (
            real == real_root or real.startswith(real_root.rstrip(os.sep) + os.sep)
        ):
            # Never read it: its text would end up in problems, annotations and PR comments.
            return [
                Problem(
                    name,
                    1,
                    1,
                    "$",
                    "expected a squals file inside the repository, this one is a symlink "
                    "to a place outside it",
                )
            ], None
        try:
            doc = load_document(path, name)
        except ManifestError as exc:
            return list(exc.problems), None
        return self.document(doc, path, base_dir, repo_root, as_variant)

    def document(
        self, doc: Document, path: Path, base_dir: Path, repo_root: Path, as_variant: bool = False
    ) -> tuple[list[Problem], Manifest | None]:
        """Schema, semantic and variant checks of a parsed document; its model when all pass."""
        name = doc.file
        self.name_positions[os.path.realpath(path)] = doc.position(("name",))
        if doc.data is None:
            return [
                Problem(
                    name, 1, 1, "$", "expected a mapping with the squals file's keys, got an empty document"
                )
            ], None
        problems = schema_problems(doc)
        semantic, variant_refs = semantic_problems(doc, base_dir, repo_root, as_variant=as_variant)
        problems.extend(semantic)
        if self.scripts is not None:
            problems.extend(missing_scripts(doc, base_dir, repo_root, self.scripts))
        variants: dict[str, tuple[str, Manifest | None]] = {}
        me = os.path.realpath(path)
        for ref in variant_refs:
            real = os.path.realpath(ref.file)
            if real == me:
                variants[ref.name] = (real, None)
                continue
            variant_problems, variant_model = self.file(ref.file, as_variant=True)
            problems.extend(variant_problems)
            variants[ref.name] = (str(ref.file.absolute()), variant_model)
        if problems:
            return sorted(set(problems)), None
        return [], Builder(doc, variants, base_dir, repo_root, self.commit).build()


@gc_paused
def validate_file(
    path: str | os.PathLike[str],
    *,
    repo_root: Path | None = None,
    relative_to: Path | None = None,
    commit: str = "",
) -> FileResult:
    """Validate one squals file (and its variant files); never raises for a bad file. ``commit``: the file
    is in a checkout of that commit (:class:`Validation`)."""
    problems, manifest = Validation(repo_root, relative_to, commit=commit).file(Path(path))
    return FileResult(display_name(Path(path), relative_to), manifest, tuple(problems))


@gc_paused
def validate_paths(
    paths: Iterable[str | os.PathLike[str]],
    *,
    repo_root: Path | None = None,
    relative_to: Path | None = None,
    scripts: Scripts | None = None,
) -> ValidationReport:
    """Validate several files; all problems, deduplicated and sorted by file and position.

    ``scripts`` also requires the scripts the commands start to exist (in the working tree or a commit).
    """
    run = Validation(repo_root, relative_to, scripts)
    results: list[FileResult] = []
    every: set[Problem] = set()
    owners: dict[str, str] = {}
    for raw in paths:
        path = Path(raw)
        problems, manifest = run.file(path)
        shown = display_name(path, relative_to)
        if manifest is not None:
            # Environments are named after the app: two files with one name would share them.
            real = os.path.realpath(path)
            other = owners.setdefault(manifest.name, real)
            if other != real:
                line, col = run.name_positions.get(real, (1, 1))
                clash = Problem(
                    shown,
                    line,
                    col,
                    "$.name",
                    f"expected a name no other squals file uses; {manifest.name!r} is also the name in "
                    f"{display_name(Path(other), relative_to)}",
                )
                problems, manifest = [*problems, clash], None
        every.update(problems)
        results.append(FileResult(shown, manifest, tuple(problems)))
    return ValidationReport(
        files=tuple(r.path for r in results),
        problems=tuple(sorted(every)),
        results=tuple(results),
    )


def load(
    path: str | os.PathLike[str],
    repo_root: str | os.PathLike[str] | None = None,
    *,
    relative_to: Path | None = None,
    commit: str = "",
) -> Manifest:
    """The validated model of one squals file, or :class:`ManifestError` carrying every problem.

    A file in a checkout of a commit is loaded with ``relative_to`` the checkout and ``commit`` its short
    name, so that problems and locations read ``squals.yml:12:3 in commit 1a2b3c4d5e6f``, never the
    checkout's temporary path."""
    result = validate_file(
        path,
        repo_root=Path(repo_root) if repo_root is not None else None,
        relative_to=relative_to,
        commit=commit,
    )
    if result.manifest is None or result.problems:
        raise ManifestError.from_problems(result.problems)
    manifest = result.manifest
    assert isinstance(manifest, Manifest)
    return manifest


def load_many(paths: Sequence[str | os.PathLike[str]], repo_root: Path | None = None) -> list[Manifest]:
    """Models of several files, or one :class:`ManifestError` with the problems of all of them."""
    report = validate_paths(paths, repo_root=repo_root)
    if not report.valid:
        raise ManifestError.from_problems(report.problems)
    return [r.manifest for r in report.results if isinstance(r.manifest, Manifest)]


@gc_paused
def validate_bytes(data: bytes, name: str, *, base_dir: Path, repo_root: Path | None = None) -> FileResult:
    """Validate squals-file content that is not (yet) on disk, as if it were ``base_dir/<name>``.

    Applies the same size, encoding and YAML limits as a file; used by property tests and by callers
    that read the file from a git object.
    """
    from squals_action.manifest.yamlload import MAX_BYTES

    root = repo_root if repo_root is not None else find_repo_root(base_dir)
    try:
        if len(data) > MAX_BYTES:
            raise ManifestError(
                name, 1, 1, "$", f"expected at most {MAX_BYTES} bytes (1 MiB), the file has {len(data)}"
            )
        doc = parse_text(decode_source(data, name), name)
    except ManifestError as exc:
        return FileResult(name, None, exc.problems)
    problems, manifest = Validation(root, base_dir).document(doc, base_dir / name, base_dir, root)
    return FileResult(name, manifest, tuple(problems))
