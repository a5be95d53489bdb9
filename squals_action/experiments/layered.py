"""An experiment beside others on the project's own Dealer: prod's, the one blue/green promotion switches.

A layered experiment (``experiment.layer``, ``share`` or ``assignment``, :mod:`.layering`) gets no Dealer of
its own. Its slot (layer, range, weights, islands or app-side) is chosen in the claim's state transaction and
recorded in its document; :class:`LayeredSplit` then drives prod's Dealer with it:

* **open** adds its slot with ``PUT /layers/<experiment>``, and its variants' islands as upstreams
  ``<experiment>.<variant>`` (weight 0: only the slot sends units there) in the same switch of the Dealer: the
  other experiments keep their ranges, so their units never move; units outside every range stay on prod,
  blue/green going on;
* a **tick** reads this experiment's own tallies, the Dealer's cells summed by
  :func:`~squals_action.dealer.layers.experiment_tallies`;
* a guardrail's exclusion gives the variant weight 0 inside the slot (``PUT /layers/<experiment>?replace=1``:
  an experiment stopped meanwhile does not get its slot back);
* the **end** (winner, no difference, halt, stop, failed start) removes this slot (``DELETE
  /layers/<experiment>``), waits for the islands' requests to drain and drops their upstreams one by one
  (``DELETE /upstreams/<name>``); the islands are destroyed after that.

Each is one step of the Dealer on this experiment's slot alone, never the whole plan read and written back,
so experiments starting and ending at the same moment keep each other's changes.

Everything comes from the document (the slot, the Dealer's directory), so a new process ticks and stops it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from squals_action.dealer import connect_dealer, dealer_status
from squals_action.dealer.client import DealerClient
from squals_action.dealer.config import CONFIG_FILE, load_config
from squals_action.dealer.interface import DealerError
from squals_action.dealer.layers import Slot, experiment_tallies, island_upstreams
from squals_action.experiments.cloudwatch_source import AwsPlace
from squals_action.experiments.interface import ExperimentError
from squals_action.experiments.layering import LAYERS, describe, slot_of
from squals_action.experiments.splitters import Log, Split, Tallies, split_of
from squals_action.manifest.model import Experiment, StickyUnit
from squals_action.providers.interface import EnvironmentHandle
from squals_action.state.interface import ExperimentState

#: How long the end waits for requests in flight to the islands before dropping their upstreams.
DRAIN_TIMEOUT = 10.0


class LayeredSplit:
    """The experiment's slot on the project's Dealer in ``dealer_dir``."""

    def __init__(self, dealer_dir: Path, slot: Slot) -> None:
        self.dealer_dir = dealer_dir
        self.slot = slot

    def _gone(self) -> str | None:
        if dealer_status(self.dealer_dir).state == "running":
            return None
        return f"prod's Dealer, which holds its slot, does not run in {self.dealer_dir}"

    def _connect(self) -> DealerClient:
        gone = self._gone()
        if gone is not None:
            raise ExperimentError(gone)
        return connect_dealer(self.dealer_dir)

    def prepare(
        self, islands: Mapping[str, EnvironmentHandle], recorded: Mapping[str, Any], log: Log
    ) -> None:
        """Nothing to read: the slot, all :meth:`release` removes, was recorded by the claim."""

    def open(self, eid: str, spec: Experiment, islands: Mapping[str, EnvironmentHandle], log: Log) -> str:
        client = self._connect()
        try:
            urls = {self.slot.key(v): islands[v].url for v in self.slot.weights} if self.slot.islands else {}
            log(f"place {eid} on prod's Dealer: {describe(self.slot)}")
            client.put_slot(self.slot, urls)
            return str(client.url)
        finally:
            client.close()

    def record(self) -> dict[str, Any]:
        return {"traffic": {"kind": LAYERS, "dealer_dir": str(self.dealer_dir), "slot": self.slot.to_json()}}

    def unavailable(self) -> str | None:
        gone = self._gone()
        if gone is not None:
            return gone
        client = connect_dealer(self.dealer_dir)
        try:
            placed = {s.experiment for s in client.plan()[2]}
        finally:
            client.close()
        if self.slot.experiment not in placed:
            return f"its slot ({describe(self.slot)}) is not in the plan of prod's Dealer ({self.dealer_dir})"
        return None

    @contextmanager
    def measuring(self) -> Iterator[tuple[Tallies | None, AwsPlace | None]]:
        client = self._connect()
        try:
            yield (lambda: experiment_tallies(client.tallies(), self.slot.experiment)), None
        finally:
            client.close()

    def set_weights(self, weights: Mapping[str, float], log: Log) -> None:
        client = self._connect()
        try:
            mine = replace(self.slot, weights={v: float(weights.get(v, 0.0)) for v in self.slot.weights})
            if not client.put_slot(mine, replace_only=True):  # ended meanwhile: it must not come back
                log(f"{mine.experiment} has no slot on prod's Dealer any more: no traffic left to exclude")
        finally:
            client.close()

    def release(self, *, restore: bool, log: Log) -> None:
        """This slot removed (the others' units stay where they are), then the islands' upstreams dropped
        once drained. Nothing to do when prod's Dealer is gone (it took the plan with it)."""
        if self._gone() is not None:
            return
        client = connect_dealer(self.dealer_dir)
        try:
            if client.remove_slot(self.slot.experiment):
                log(f"removed {self.slot.experiment} from prod's Dealer ({describe(self.slot)})")
            gone = sorted(island_upstreams([self.slot]) & set(client.upstreams()))
            if gone:
                client.wait_drained(gone, timeout=DRAIN_TIMEOUT)
                for name in gone:
                    client.remove_upstream(name)
        finally:
            client.close()


def check_prod_dealer(dealer_dir: Path, spec: Experiment) -> None:
    """Refuse, before anything is claimed, a layered start with no prod's Dealer to place it on (it splits
    prod's traffic), or one whose ``events:`` prod's Dealer does not count that way: its tallies are counted
    under prod's Dealer's caps, so purchases per visitor declared ``count: all`` would silently read at most
    one per unit."""
    if dealer_status(dealer_dir).state != "running":
        raise ExperimentError(
            f"{spec.location}: a layered experiment runs on prod's Dealer and none runs in {dealer_dir}: "
            "promote a prod first (`squals deploy --pr N` then `squals promote --pr N`); nothing was started"
        )
    try:
        caps = load_config(dealer_dir / CONFIG_FILE).event_caps
    except DealerError as exc:
        why = exc.one_line()
        raise ExperimentError(f"{spec.location}: prod's Dealer: {why}; nothing was started") from exc
    for kind, cap in sorted(spec.events.items()):
        counted = caps.get(kind, 1)
        if cap != counted:
            raise ExperimentError(
                f"{spec.location}: experiment.events.{kind} counts up to {cap} per unit, but a layered "
                f"experiment is counted by prod's Dealer, which counts {kind} up to {counted} per unit: run "
                "it alone (without layer, share and assignment) or count it as prod does; nothing was started"
            )


def layered_split_of(doc: ExperimentState, unit: StickyUnit, default_dealer_dir: Path) -> Split:
    """The splitter a document recorded: its slot on prod's Dealer, else :func:`.splitters.split_of`."""
    slot = slot_of(doc)
    if slot is None:
        return split_of(doc, unit, default_dealer_dir)
    traffic = doc.extra["traffic"]
    where = traffic.get("dealer_dir")
    if not isinstance(where, str):
        raise ExperimentError(f"experiment {doc.id}: its document names no Dealer for its slot")
    return LayeredSplit(Path(where), slot)
