"""The Dealer's admin endpoint: a loopback aiohttp app behind a bearer token, over an :class:`AdminBackend`.

Request bodies are checked here and turned into calls on the backend; a :class:`DealerError` the backend
raises answers ``400 {"error": "one line"}``, a :class:`SlotConflict` (slots that cannot be placed together)
``409``, a missing or wrong token ``401``. Every change of the routing is an edit of the routing in force
that the backend applies under its switch lock (:meth:`AdminBackend.change`), so two admin calls at once
never lose each other's change: ``PUT /layers/<experiment>`` and ``DELETE /layers/<experiment>`` change one
experiment's slot without reading and writing the whole plan, and ``PUT /upstreams`` (a blue/green switch)
keeps the islands of the slots in force that it does not name. A change of a request's meaning bumps
``client.ADMIN_PROTOCOL``, which the daemon publishes so that a newer squals restarts an older daemon.
"""

from __future__ import annotations

import hmac
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any, Protocol

from aiohttp import web
from yarl import URL

from squals_action.dealer.bucketing import normalise_weights
from squals_action.dealer.config import check_upstreams
from squals_action.dealer.interface import DealerError, VariantTally
from squals_action.dealer.layers import SlotConflict, check_slots, island_upstreams, with_slot
from squals_action.dealer.proxy import event_value, valid_event
from squals_action.dealer.routing import Routing, make_routing
from squals_action.dealer.tally import tally_to_json


class AdminBackend(Protocol):
    """What the admin endpoint drives."""

    @property
    def routing(self) -> Routing: ...

    async def change(self, edit: Callable[[Routing], Routing]) -> Routing:
        """Make ``edit(routing in force)`` the one in force in one step (no other change in between) and
        remember it across restarts; returns it. A :class:`DealerError` from ``edit`` changes nothing."""

    async def tallies(self) -> Mapping[str, VariantTally]: ...

    async def health(self, reset: bool) -> dict[str, Any]:
        """Load figures: ``loop_lag_max_ms`` (since the start or the last reset), ``units``,
        ``unit_store_bytes``, and ``workers``: each worker's own."""

    async def record_event(
        self, event: str, count: int, value: float, unit: str | None, variant: str | None
    ) -> dict[str, Any]:
        """Count ``count`` events of ``value`` for the unit (refused when never assigned) or for ``variant``;
        returns ``{"variant", "counted"}``."""

    async def persist(self) -> None:
        """Write the tallies now."""

    async def faults(self, faults: Mapping[str, Any] | None) -> dict[str, Any]:
        """The latency and abort faults in force, replaced first by ``faults`` when given."""


def admin_app(backend: AdminBackend, token: str) -> web.Application:
    """The admin routes of docs/dealer.md; every route but ``GET /healthz`` needs ``Bearer <token>``."""
    expected = f"Bearer {token}".encode()

    @web.middleware
    async def auth(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path != "/healthz":
            given = request.headers.get("Authorization", "")
            if not hmac.compare_digest(given.encode(), expected):
                return web.json_response({"error": "missing or wrong admin token"}, status=401)
        try:
            response: web.StreamResponse = await handler(request)
        except DealerError as exc:
            status = 409 if isinstance(exc, SlotConflict) else 400
            return web.json_response({"error": exc.one_line()}, status=status)
        return response

    async def health(request: web.Request) -> web.Response:
        """Liveness, and the workers' loop lag and unit stores (``?reset=1`` starts a new lag measurement)."""
        answer: dict[str, Any] = {"pid": os.getpid(), "time": time.time()}
        try:
            answer.update(ok=True, **await backend.health(request.query.get("reset") == "1"))
        except DealerError as exc:  # the worker is restarting: the Dealer does not serve right now
            return web.json_response({**answer, "ok": False, "error": exc.one_line()}, status=503)
        return web.json_response(answer)

    async def tallies(request: web.Request) -> web.Response:
        found = await backend.tallies()
        return web.json_response({"variants": {name: tally_to_json(t) for name, t in found.items()}})

    async def routing(request: web.Request) -> web.Response:
        return web.json_response(backend.routing.to_json())

    async def weights(request: web.Request) -> web.Response:
        body = await _json_body(request)
        weights = body.get("weights")
        if not isinstance(weights, dict):
            raise DealerError('expected {"weights": {name: weight}}')

        def edit(current: Routing) -> Routing:
            return replace(current, weights=normalise_weights(weights, tuple(current.upstreams)))

        return web.json_response((await backend.change(edit)).to_json())

    async def upstreams(request: web.Request) -> web.Response:
        """``PUT /upstreams``: the whole upstream list of a blue/green switch (and its weights). The islands
        the plan's slots use stay upstreams at weight 0 when the list does not name them, decided inside the
        switch's edit: a switch racing an experiment's start or end neither is refused nor puts back an
        ended experiment's island."""
        body = await _json_body(request)
        upstreams = body.get("upstreams")
        weights = body.get("weights")
        if not isinstance(upstreams, dict):
            raise DealerError('expected {"upstreams": {name: url}, "weights": {...}}')
        if weights is not None and not isinstance(weights, dict):
            raise DealerError("weights must be an object")

        def edit(current: Routing) -> Routing:
            named = check_upstreams(upstreams)
            islands = _islands_kept(current, named)
            given = weights if weights is not None else {k: current.weights.get(k, 0.0) for k in named}
            switched = normalise_weights(given, tuple(named))
            return make_routing(
                {**named, **islands},
                {**switched, **dict.fromkeys(islands, 0.0)},
                [s.to_json() for s in current.layers],
            )

        return web.json_response((await backend.change(edit)).to_json())

    async def layers(request: web.Request) -> web.Response:
        """``PUT /layers``: the experiments placed at once (an empty list: back to the weights alone)."""
        body = await _json_body(request)

        def edit(current: Routing) -> Routing:
            return replace(current, layers=check_slots(body.get("layers"), current.upstreams))

        return web.json_response((await backend.change(edit)).to_json())

    async def put_slot(request: web.Request) -> web.Response:
        """``PUT /layers/<experiment>``: add or replace one experiment's slot beside the others, with the
        upstreams of its islands (``<experiment>.<variant>``, weight 0) in the same switch. With
        ``?replace=1`` only a slot in place is replaced (a guardrail's exclusion must not put back the slot
        of an experiment ended meanwhile); ``placed`` says whether the slot is in the plan now."""
        experiment = request.match_info["experiment"]
        replace_only = request.query.get("replace") == "1"
        body = await _json_body(request)
        islands = body.pop("upstreams", {})
        if not isinstance(islands, dict):
            raise DealerError(f"slot {experiment!r}: upstreams must be an object {{name: url}}")
        foreign = sorted(name for name in islands if not str(name).startswith(f"{experiment}."))
        if foreign:
            raise DealerError(
                f"slot {experiment!r}: upstreams {', '.join(foreign)} are not its islands "
                f"({experiment}.<variant>)"
            )
        placed = True

        def edit(current: Routing) -> Routing:
            nonlocal placed
            placed = any(s.experiment == experiment for s in current.layers) or not replace_only
            if not placed:
                return current
            upstreams = {**{k: str(v) for k, v in current.upstreams.items()}, **islands}
            slots = with_slot(current.layers, experiment, body, upstreams)
            return make_routing(upstreams, current.weights, [s.to_json() for s in slots])

        routing = await backend.change(edit)
        return web.json_response({**routing.to_json(), "placed": placed})

    async def delete_slot(request: web.Request) -> web.Response:
        """``DELETE /layers/<experiment>``: the plan without one experiment's slot (``removed``: whether it
        was placed; removing one that is not is no error, so a retried call is harmless)."""
        experiment = request.match_info["experiment"]
        removed = False

        def edit(current: Routing) -> Routing:
            nonlocal removed
            kept = tuple(s for s in current.layers if s.experiment != experiment)
            removed = len(kept) < len(current.layers)
            return replace(current, layers=kept) if removed else current

        routing = await backend.change(edit)
        return web.json_response({**routing.to_json(), "removed": removed})

    async def delete_upstream(request: web.Request) -> web.Response:
        """``DELETE /upstreams/<name>``: drop one upstream (an ended experiment's island, once drained);
        refused while a slot sends units to it. Dropping one that is not there is no error."""
        name = request.match_info["name"]

        def edit(current: Routing) -> Routing:
            if name in island_upstreams(current.layers):
                raise SlotConflict(f"upstream {name!r} is an island of a slot: remove the slot first")
            if name not in current.upstreams:
                return current
            kept = {k: str(v) for k, v in current.upstreams.items() if k != name}
            weights = {k: w for k, w in current.weights.items() if k != name}
            return make_routing(kept, weights, [s.to_json() for s in current.layers])

        return web.json_response((await backend.change(edit)).to_json())

    async def events(request: web.Request) -> web.Response:
        body = await _json_body(request)
        event = body.get("event")
        if not isinstance(event, str) or not valid_event(event):
            raise DealerError("event must be 1-64 of [A-Za-z0-9-_.:]")
        count = body.get("count", 1)
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise DealerError("count must be a positive integer")
        value = event_value(body.get("value"))
        unit = body.get("unit")
        variant = body.get("variant")
        unit = unit if isinstance(unit, str) and unit else None
        variant = variant if isinstance(variant, str) else None
        if unit is None and variant is None:
            raise DealerError("give a unit or a known variant")
        return web.json_response(await backend.record_event(event, count, value, unit, variant))

    async def persist(request: web.Request) -> web.Response:
        await backend.persist()
        return web.json_response({"ok": True})

    async def faults(request: web.Request) -> web.Response:
        """``GET``: the faults in force and what they did; ``PUT {"faults": {...}}``: replace them."""
        if request.method == "PUT":
            raw = (await _json_body(request)).get("faults")
            if not isinstance(raw, Mapping):
                raise DealerError('expected {"faults": {upstream: {"delay": {...}, "abort": {...}}}}')
            return web.json_response(await backend.faults(raw))
        return web.json_response(await backend.faults(None))

    app = web.Application(middlewares=[auth])
    app.add_routes(
        [
            web.get("/healthz", health),
            web.get("/tallies", tallies),
            web.get("/routing", routing),
            web.put("/weights", weights),
            web.put("/upstreams", upstreams),
            web.put("/layers", layers),
            web.put("/layers/{experiment}", put_slot),
            web.delete("/layers/{experiment}", delete_slot),
            web.delete("/upstreams/{name}", delete_upstream),
            web.post("/events", events),
            web.post("/persist", persist),
            web.get("/faults", faults),
            web.put("/faults", faults),
        ]
    )
    return app


def _islands_kept(current: Routing, body: Mapping[str, str]) -> dict[str, str]:
    """The upstreams of the placed slots' islands that a whole-list switch (``PUT /upstreams``) does not
    name: kept at their URLs, so a blue/green switch needs no knowledge of experiments and cannot race one.
    Naming an island is allowed only at the URL it has: its URL is its slot's (``PUT /layers/<experiment>``),
    and a stale list must not send the slot's units elsewhere."""
    kept: dict[str, str] = {}
    for name in sorted(island_upstreams(current.layers)):
        url = str(current.upstreams[name])
        if name not in body:
            kept[name] = url
        elif URL(body[name]) != current.upstreams[name]:
            raise SlotConflict(
                f"upstream {name!r} is an island of a slot, at {url}: its URL is the slot's "
                f"(PUT /layers/<experiment>), not a switch's"
            )
    return kept


async def _json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError) as exc:
        raise DealerError(f"request body is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise DealerError("request body must be a JSON object")
    return body
