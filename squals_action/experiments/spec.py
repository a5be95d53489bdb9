"""An experiment's identity: its spec as canonical JSON and digest, its id, its islands' names, and the
squals file as it was at the start.

The spec judged is the spec started: a tick reads the squals file (and its variant files) at the
experiment's start commit (:func:`start_at`), never the working tree, and refuses to judge when its
digest is not the recorded one. The digest covers every field a decision depends on; the document keeps
the JSON itself for the record.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from squals_action.lifecycle.source import Source, commit_label, worktree
from squals_action.manifest.model import Experiment, Manifest, frozen_map
from squals_action.state.interface import check_name


def spec_json(spec: Experiment) -> dict[str, Any]:
    """The experiment section as plain JSON (what the digest covers, kept in the document for the record)."""
    return {
        "variants": {name: v.squals for name, v in sorted(spec.variants.items())},
        "control": spec.control,
        "split": {k: float(v) for k, v in sorted(spec.split.items())},
        "unit": {"kind": spec.unit.kind, "name": spec.unit.name},
        "objective": {
            "metric": spec.objective.metric,
            "direction": spec.objective.direction,
            "numerator": spec.objective.numerator,
            "denominator": spec.objective.denominator,
            # new fields only when set: an experiment started before them keeps its digest
            **({"kind": spec.objective.kind} if spec.objective.kind != "proportion" else {}),
        },
        "guardrails": [
            {
                "metric": g.metric,
                "max_increase": g.max_increase,
                "max": g.max,
                **({"max_relative_increase": g.max_relative_increase} if g.max_relative_increase else {}),
            }
            for g in spec.guardrails
        ],
        "min_duration": {"seconds": spec.min_duration.seconds, "activations": spec.min_duration.activations},
        "significance": {"alpha": spec.significance.alpha, "method": spec.significance.method},
        "metrics": {
            name: {
                "source": m.source,
                "query": m.query,
                "url": m.url,
                **({"units": m.units, "squares": m.squares} if m.units or m.squares else {}),
            }
            for name, m in sorted(spec.metrics.items())
        },
        # where it splits, only when not the default: an experiment started before layers keeps its digest
        **({"layer": spec.layer} if spec.layer != "default" else {}),
        **({"share": spec.share} if spec.share != 100.0 else {}),
        **({"assignment": spec.assignment} if spec.assignment != "islands" else {}),
        # only when set: an experiment started before per-unit caps keeps its digest
        **({"events": dict(sorted(spec.events.items()))} if spec.events else {}),
    }


def spec_digest(spec: Experiment) -> str:
    """sha256 of the canonical spec: a tick refuses to judge with a spec other than the one started."""
    text = json.dumps(spec_json(spec), sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


#: An environment name's length limit (``check_env_name``): an island name is clipped to fit it.
_ENV_NAME_MAX = 63


def island_names(experiment_id: str, variants: Iterable[str]) -> dict[str, str]:
    """Each variant's island for a new experiment: ``exp-<variant>-<tag>``, the tag 8 hex digits of the
    experiment id's sha256 (the same for all its islands). The islands are the experiment's own: the winner's
    island becomes prod and keeps its name, so a later experiment's ``green`` must not be named like it (it
    would be provisioned onto prod's stack). The claim records them (``extra.island_names``); every later
    step reads them from there. A variant too long for an environment name is clipped, its tag then hashing
    the variant too (two variants clipped alike keep two islands)."""
    names: dict[str, str] = {}
    for variant in variants:
        name = f"exp-{variant}-{_tag(experiment_id)}"
        if len(name) > _ENV_NAME_MAX:
            clipped = variant[: _ENV_NAME_MAX - len("exp--") - 8]
            name = f"exp-{clipped}-{_tag(experiment_id + '/' + variant)}"
        names[variant] = name  # of a variant's valid name (the schema's), a valid one: the provider checks it
    return names


def _tag(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def legacy_island_name(variant: str) -> str:
    """A variant's island as experiments claimed before ``extra.island_names``: read their documents only
    (and the ``environments:`` key a squals file gives the variant's island: :func:`as_island`)."""
    return f"exp-{variant}"


def as_island(manifest: Manifest, variant: str, island: str) -> Manifest:
    """``manifest`` whose ``environments:`` entry ``exp-<variant>`` (how a squals file names a variant's
    island, whatever its experiment's tag) applies to ``island`` too, at the same place among the others: the
    variant's own app variables and provider parameters follow it to every experiment's island."""
    key = legacy_island_name(variant)
    if key not in manifest.environments or island in manifest.environments:
        return manifest
    aliased = {}
    for name, override in manifest.environments.items():
        aliased[name] = override
        if name == key:
            aliased[island] = override
    return dataclasses.replace(manifest, environments=frozen_map(aliased))


def default_experiment_id(manifest: Manifest, commit: str) -> str:
    """One experiment per project and commit unless named otherwise (a re-run finds the same one)."""
    return check_name("experiment", f"{manifest.name}-{commit[:12]}")


def load_at(tree: Path, squals_file: str, commit: str) -> Manifest:
    """The squals file ``squals_file`` of ``tree`` (a worktree of ``commit``) with its variant files,
    validated, each with its own folder as the base of its relative paths; problems and the model's
    locations name the files as the repository does, and the commit (``variants/green.yml:7:5 in commit
    1a2b3c4d5e6f``), never the worktree's temporary path: the loader a deploy's checkout uses."""
    from squals_action.manifest.validate import load

    return load(tree / squals_file, tree, relative_to=tree, commit=commit_label(commit, False))


@contextmanager
def start_at(repo: Path, commit: str, squals_file: str, remote: str = "origin") -> Iterator[Source]:
    """The squals file ``squals_file`` (relative to the repository) as it is in ``commit``, with its variant
    files, validated (:func:`load_at`), as the source of a command bound to that commit: every step after
    an experiment's start (a tick, the winner's promotion, a stop) binds the provider to its provider
    section, as the start did (``lifecycle.parts.provider_at``), never to the file the command was opened
    with. Its folder is a detached worktree of ``commit`` that lives as long as the context (the winner's
    hooks run from it). A file that no longer validates is a ``ManifestError`` naming its lines."""
    with worktree(repo, commit, remote) as tree:
        manifest = load_at(tree, squals_file, commit)
        yield Source(commit=commit, tree=commit, dirty=False, root=tree, manifest=manifest, read_here=True)
