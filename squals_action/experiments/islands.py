"""The experiment's running parts: one island per variant and the experiment's own Dealer in front of them.

They are started together by a start and stopped together at the end, whatever the end was; stopping
never raises (the record of the end goes on), it logs what could not be destroyed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from squals_action.dealer import DealerClient, DealerConfig, start_dealer, stop_dealer
from squals_action.errors import SqualsError
from squals_action.experiments.interface import Decision
from squals_action.experiments.spec import island_name
from squals_action.manifest.model import Experiment, Manifest
from squals_action.providers.interface import EnvironmentHandle, Provider
from squals_action.state.interface import ExperimentState

Log = Callable[[str], None]


def provision_islands(
    provider: Provider,
    spec: Experiment,
    manifest: Manifest,
    eid: str,
    sha: str,
    log: Log,
    handles: dict[str, EnvironmentHandle],
) -> None:
    """One island ``exp-<variant>`` per variant from its own squals file at ``sha``, into ``handles``.

    ``handles`` is filled as islands come up, so a caller can stop those already running when one fails.
    """
    for name, variant in spec.variants.items():
        log(f"provision {island_name(name)} ({variant.squals}) from {sha[:12]}")
        handles[name] = provider.provision(
            island_name(name),
            sha,
            variant.manifest or manifest,
            extra_env={"SQUALS_EXPERIMENT": eid, "SQUALS_VARIANT": name, "SQUALS_PROJECT": manifest.name},
        )


def start_experiment_dealer(
    eid: str, spec: Experiment, upstreams: Mapping[str, str], dealer_dir: Path, log: Log
) -> DealerClient:
    """The experiment's Dealer: ``split`` as weights, sticky per ``unit``, seeded with the experiment id."""
    stop_dealer(dealer_dir)  # a leftover of a crashed start of this same experiment
    log(f"start the experiment's Dealer ({', '.join(f'{k} {v:g}' for k, v in spec.split.items())})")
    return start_dealer(
        DealerConfig(
            upstreams=dict(upstreams),
            weights={k: float(v) for k, v in spec.split.items()},
            unit_kind=spec.unit.kind,
            unit_name=spec.unit.name,
            seed=eid,
        ),
        dealer_dir,
    )


def exclude_newly(client: DealerClient, doc: ExperimentState, decision: Decision, log: Log) -> None:
    """No more traffic for variants a guardrail excluded in this decision (users first: before the record)."""
    previously = {str(x) for x in doc.extra.get("excluded", [])}
    newly = [x for x in decision.excluded if x not in previously]
    if newly:
        weights = {v: (0.0 if v in decision.excluded else float(doc.split.get(v, 0.0))) for v in doc.variants}
        log(f"guardrail: no more traffic for {', '.join(newly)}")
        client.set_weights(weights)


def stop_all(provider: Provider, handles: Iterable[EnvironmentHandle], dealer_dir: Path, log: Log) -> None:
    """Stop the Dealer and destroy the islands; failures are logged, not raised (the record goes on)."""
    with contextlib.suppress(SqualsError):
        stop_dealer(dealer_dir)  # graceful: in-flight requests finish, tallies are written
    for handle in list(handles):
        try:
            outcome = provider.destroy(handle)
            log(f"{handle.env}: {'destroyed' if outcome.ok else outcome.detail}")
        except SqualsError as exc:
            log(f"{handle.env}: not destroyed: {exc.one_line()}")
