"""A small blocking client of the Dealer's admin endpoint: the :class:`Dealer` the lifecycle holds.

Every call has a timeout; connection failures are retried twice with backoff (all admin calls are idempotent
except ``record_event``, which is never retried), then raised as :class:`DealerError`.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from squals_action.dealer.interface import DealerError, VariantTally
from squals_action.dealer.layers import CELL_SEPARATOR, Slot, check_slots
from squals_action.dealer.tally import tallies_from_json

if TYPE_CHECKING:
    import requests

#: The admin API's protocol, published by the daemon in ``dealer.json`` (``"protocol"``; a file without it is
#: protocol 1, every daemon before the number existed). Bumped whenever a request's meaning changes, so that
#: a squals upgraded under a running daemon restarts it rather than speak to it in the old sense
#: (:func:`~squals_action.dealer.daemon.connect_dealer`). 2: ``PUT /upstreams`` keeps the islands of the
#: placed experiment slots it does not name (protocol 1 answers such a switch 400 while slots are placed).
ADMIN_PROTOCOL = 2


class DealerClient:
    """Talks to one running Dealer; cheap to build, opens its HTTP session on first use."""

    def __init__(
        self, url: str, admin_url: str, token: str, *, timeout: float = 5.0, pid: int | None = None
    ) -> None:
        self._url = url
        self.admin_url = admin_url.rstrip("/")
        self._token = token
        self.timeout = timeout
        self.pid = pid
        self._session: requests.Session | None = None

    def __repr__(self) -> str:  # never show the token
        return f"DealerClient(url={self._url!r}, admin_url={self.admin_url!r}, pid={self.pid})"

    @property
    def url(self) -> str:
        return self._url

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    def _call(
        self, method: str, path: str, body: Mapping[str, Any] | None = None, *, retry: bool = True
    ) -> Any:
        import requests

        if self._session is None:
            self._session = requests.Session()
            self._session.trust_env = False  # loopback only: never through a proxy from the environment
        attempts = 3 if retry else 1
        for attempt in range(attempts):
            try:
                response = self._session.request(
                    method,
                    self.admin_url + path,
                    json=body,
                    headers={"Authorization": f"Bearer {self._token}"},
                    timeout=self.timeout,
                )
            except requests.ConnectionError as exc:
                if attempt + 1 < attempts:
                    time.sleep(0.1 * 3**attempt)
                    continue
                raise DealerError(
                    f"Dealer admin at {self.admin_url} unreachable: {type(exc).__name__}"
                ) from exc
            except requests.RequestException as exc:
                raise DealerError(f"Dealer admin at {self.admin_url}: {type(exc).__name__}: {exc}") from exc
            try:
                payload = response.json()
            except ValueError:
                payload = {}
            if response.status_code >= 400:
                message = payload.get("error") if isinstance(payload, dict) else None
                raise DealerError(
                    f"Dealer {method} {path}: HTTP {response.status_code}: {message or response.text}"
                )
            return payload
        raise AssertionError("unreachable")  # pragma: no cover

    def health(self) -> bool:
        """True when the admin endpoint answers (it needs no token)."""
        try:
            self._call("GET", "/healthz", retry=False)
        except DealerError:
            return False
        return True

    def load_figures(self, *, reset_lag: bool = False) -> dict[str, Any]:
        """``GET /healthz``: units held, bytes of the unit store and the loop's largest lag in ms (since the
        start or the last ``reset_lag``)."""
        answer: dict[str, Any] = self._call(
            "GET", "/healthz?reset=1" if reset_lag else "/healthz", retry=False
        )
        return answer

    def routing(self) -> tuple[dict[str, str], dict[str, float]]:
        data = self._call("GET", "/routing")
        return dict(data["upstreams"]), {k: float(v) for k, v in data["weights"].items()}

    def weights(self) -> Mapping[str, float]:
        return self.routing()[1]

    def upstreams(self) -> Mapping[str, str]:
        return self.routing()[0]

    def set_weights(self, weights: Mapping[str, float]) -> None:
        self._call("PUT", "/weights", {"weights": dict(weights)})

    def set_upstreams(self, upstreams: Mapping[str, str], weights: Mapping[str, float] | None = None) -> None:
        """``PUT /upstreams``: a blue/green switch; the Dealer keeps the placed slots' islands not named."""
        body: dict[str, Any] = {"upstreams": dict(upstreams)}
        if weights is not None:
            body["weights"] = dict(weights)
        self._call("PUT", "/upstreams", body)

    def plan(self) -> tuple[dict[str, str], dict[str, float], tuple[Slot, ...]]:
        """``GET /routing`` whole: upstreams, weights and the experiments placed in layers."""
        data = self._call("GET", "/routing")
        upstreams = dict(data["upstreams"])
        slots = check_slots(list(data.get("layers") or []), upstreams)
        return upstreams, {k: float(v) for k, v in data["weights"].items()}, slots

    def set_layers(self, slots: Sequence[Slot]) -> None:
        """Place several experiments at once (:mod:`.layers`); ``[]`` goes back to the weights alone."""
        self._call("PUT", "/layers", {"layers": [s.to_json() for s in slots]})

    def put_slot(
        self, slot: Slot, islands: Mapping[str, str] | None = None, *, replace_only: bool = False
    ) -> bool:
        """``PUT /layers/<experiment>``: add or replace this experiment's slot beside the others in one step
        of the Dealer, with its islands' upstreams (``<experiment>.<variant>``: URL, weight 0); a slot that
        cannot be placed beside the others is a :class:`DealerError` with ``HTTP 409``. ``replace_only``:
        change a slot in place, never add it; returns whether the slot is in the plan now."""
        body = {k: v for k, v in slot.to_json().items() if k != "experiment"}
        if islands:
            body["upstreams"] = dict(islands)
        query = "?replace=1" if replace_only else ""
        return bool(self._call("PUT", f"/layers/{slot.experiment}{query}", body)["placed"])

    def remove_slot(self, experiment: str) -> bool:
        """``DELETE /layers/<experiment>``: the plan without this experiment's slot; False when it was not
        placed."""
        return bool(self._call("DELETE", f"/layers/{experiment}")["removed"])

    def remove_upstream(self, name: str) -> None:
        """``DELETE /upstreams/<name>``: drop one upstream (an ended experiment's drained island)."""
        self._call("DELETE", f"/upstreams/{quote(name, safe='')}")

    def tallies(self) -> Mapping[str, VariantTally]:
        return tallies_from_json(self._call("GET", "/tallies")["variants"])

    def record_event(
        self,
        event: str,
        *,
        unit: str | None = None,
        variant: str | None = None,
        count: int = 1,
        value: float = 0.0,
    ) -> None:
        body: dict[str, Any] = {"event": event, "count": count, "value": value}
        if unit is not None:
            body["unit"] = unit
        if variant is not None:
            body["variant"] = variant
        self._call("POST", "/events", body, retry=False)

    def set_faults(self, faults: Mapping[str, Mapping[str, Any]]) -> None:
        """Put exactly these faults in force, by upstream (``{}`` clears them; format in dealer/faults.py)."""
        self._call("PUT", "/faults", {"faults": {name: dict(f) for name, f in faults.items()}})

    def faults(self) -> dict[str, Any]:
        """``{"faults": {...}, "injected": {upstream: {"requests", "delayed", "aborted"}}}``."""
        found: dict[str, Any] = self._call("GET", "/faults")
        return found

    def persist(self) -> None:
        """Compact the tally journal into a snapshot now (every change is written as it is counted)."""
        self._call("POST", "/persist")

    def wait_drained(self, names: Iterable[str], timeout: float = 30.0, poll: float = 0.05) -> None:
        """Wait until no request is in flight to these variants (before stopping their upstreams)."""
        wanted = set(names)
        deadline = time.monotonic() + timeout
        while True:
            busy: dict[str, int] = {}
            # GET /healthz sums the workers' in-flight requests without merging their books (which costs
            # seconds at millions of units); a Dealer started by older code answers them in its tallies only
            in_flight = self.load_figures().get("in_flight")
            if in_flight is None:
                in_flight = {cell: tally.in_flight for cell, tally in self.tallies().items()}
            for cell, count in in_flight.items():  # under layers an upstream's requests are in its cells
                name = cell.split(CELL_SEPARATOR)[0]
                if name in wanted and count:
                    busy[name] = busy.get(name, 0) + count
            if not busy:
                return
            if time.monotonic() > deadline:
                raise DealerError(f"requests still in flight after {timeout:g}s: {busy}")
            time.sleep(poll)
