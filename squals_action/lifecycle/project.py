"""Build a :class:`~squals_action.lifecycle.engine.Lifecycle` for a repository on disk, as the CLI needs it.

One place decides where things live for a project: the squals file (``squals.yml`` at the repository root
unless given), the state store (the ``squals/state`` branch of the ``origin`` remote; of the repository
itself when it has no remote, or when asked to keep the state local), the provider the
squals file names, the traffic splitter (:func:`~squals_action.lifecycle.parts.traffic_for`: the local
Dealer in ``<repo>/.squals/dealer``, or the front door's ALB on aws) and the logs (``<repo>/.squals/logs``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from squals_action.errors import SqualsError, UsageError
from squals_action.gitcmd import repo_top
from squals_action.lifecycle.engine import Lifecycle, Progress
from squals_action.lifecycle.parts import signals_for, traffic_for
from squals_action.lifecycle.source import Source
from squals_action.manifest.model import Manifest
from squals_action.own_files import own_dir


class ProjectError(SqualsError):
    """The repository is not set up for the lifecycle (no git, no squals file)."""


@dataclass(frozen=True, kw_only=True)
class ProjectOptions:
    """What the command line may override."""

    repo: Path | None = None
    squals_file: Path | None = None
    #: the remote that holds the state branch; ``""``: local-only (the repository's own branch). A repository
    #: with no remote at all keeps its state locally whatever this says.
    remote: str = "origin"
    state_branch: str = "squals/state"
    run_id: str | None = None
    actor: str | None = None
    gates: bool = True


def squals_dir(repo: Path) -> Path:
    """Where the lifecycle keeps the Dealer and the logs (created, with its ``.gitignore``)."""
    return own_dir(repo)


def load_project_manifest(options: ProjectOptions) -> tuple[Path, Manifest]:
    """The repository top and the squals file ``options`` name (default: ``squals.yml`` at the top)."""
    from squals_action.manifest import discover, load

    repo = repo_top((options.repo or Path.cwd()).resolve(), error=ProjectError)
    if options.squals_file is not None:
        path = options.squals_file if options.squals_file.is_absolute() else Path.cwd() / options.squals_file
        if not path.is_file():
            raise UsageError(f"no such squals file: {options.squals_file}")
    else:
        found = [p for p in discover(repo) if p.name in ("squals.yml", "squals.yaml")] or discover(repo)
        if not found:
            # a usage error like a missing --file: every missing squals file exits 2 (README)
            raise UsageError(f"no squals file in {repo}: expected squals.yml (or pass --file)")
        path = found[0]
    return repo, load(path, repo)


def open_project(options: ProjectOptions, progress: Progress | None = None) -> Lifecycle:
    """The lifecycle of the repository at ``options.repo`` (default: the current directory's)."""
    from squals_action.providers import get_provider
    from squals_action.state import choose_remote, open_store

    repo, manifest = load_project_manifest(options)
    # no remote at all (a project on a laptop) or --local-state: the state branch is the repository's own
    store = open_store(repo, remote=choose_remote(repo, options.remote), branch=options.state_branch)
    provider = get_provider(manifest.provider.kind, repo, manifest.provider)
    traffic = traffic_for(manifest, provider, dealer_dir(repo))
    lifecycle = Lifecycle(
        repo=repo,
        manifest=manifest,
        store=store,
        provider=provider,
        traffic=traffic,
        signals=signals_for(manifest, traffic),
        log_dir=squals_dir(repo) / "logs",
        run_id=options.run_id,
        actor=options.actor,
    )
    if progress is not None:
        lifecycle.progress = progress
    if options.gates and (manifest.gates.compile or manifest.gates.test or manifest.gates.security):
        lifecycle.gates = _gates_runner(lifecycle)
    return lifecycle


def _gates_runner(lifecycle: Lifecycle) -> Callable[[Source], tuple[bool, str]]:
    """The gates of the squals file, run on the files of the commit being deployed, summarised in one
    line."""

    def run(source: Source) -> tuple[bool, str]:
        from squals_action.gates.runner import all_ok, make_context, run_pipeline

        ctx = make_context(
            source.root,
            lifecycle.log_dir / "gates",
            head=source.tree,
            base_dir=Path(source.manifest.base_dir),
            passthrough=source.manifest.env_passthrough,
        )
        results = run_pipeline(source.manifest.gates, ctx)
        counts: dict[str, int] = {}
        for result in results:
            counts[result.status] = counts.get(result.status, 0) + 1
        failed = [f"{r.name} ({r.status}: {r.summary})" for r in results if not r.ok]
        summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "no gates"
        if failed:
            summary += "; " + "; ".join(failed)
        return all_ok(results), summary

    return run


def dealer_dir(repo: Path) -> Path:
    """Where the project's local Dealer keeps its pid, ports and tallies (``squals status`` reads it too)."""
    return squals_dir(repo) / "dealer"
