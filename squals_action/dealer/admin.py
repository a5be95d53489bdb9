"""The Dealer's admin endpoint: a loopback aiohttp app behind a bearer token, over an :class:`AdminBackend`.

Request bodies are checked here and turned into calls on the backend; a :class:`DealerError` the backend
raises answers ``400 {"error": "one line"}``, a missing or wrong token ``401``.
"""

from __future__ import annotations

import hmac
import os
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, Protocol

from aiohttp import web

from squals_action.dealer.bucketing import normalise_weights
from squals_action.dealer.interface import DealerError, VariantTally
from squals_action.dealer.layers import check_slots
from squals_action.dealer.proxy import event_value, valid_event
from squals_action.dealer.routing import Routing, make_routing
from squals_action.dealer.tally import tally_to_json


class AdminBackend(Protocol):
    """What the admin endpoint drives."""

    @property
    def routing(self) -> Routing: ...

    async def switch(self, routing: Routing) -> None:
        """Make ``routing`` the one in force (and remember it across restarts)."""

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
            return web.json_response({"error": exc.one_line()}, status=400)
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
        current = backend.routing
        await backend.switch(replace(current, weights=normalise_weights(weights, tuple(current.upstreams))))
        return web.json_response(backend.routing.to_json())

    async def upstreams(request: web.Request) -> web.Response:
        body = await _json_body(request)
        upstreams = body.get("upstreams")
        weights = body.get("weights")
        if not isinstance(upstreams, dict):
            raise DealerError('expected {"upstreams": {name: url}, "weights": {...}}')
        if weights is None:
            weights = {k: v for k, v in backend.routing.weights.items() if k in upstreams}
        if not isinstance(weights, dict):
            raise DealerError("weights must be an object")
        await backend.switch(make_routing(upstreams, weights, [s.to_json() for s in backend.routing.layers]))
        return web.json_response(backend.routing.to_json())

    async def layers(request: web.Request) -> web.Response:
        """``PUT /layers``: the experiments placed at once (an empty list: back to the weights alone)."""
        body = await _json_body(request)
        current = backend.routing
        await backend.switch(replace(current, layers=check_slots(body.get("layers"), current.upstreams)))
        return web.json_response(backend.routing.to_json())

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
            web.post("/events", events),
            web.post("/persist", persist),
            web.get("/faults", faults),
            web.put("/faults", faults),
        ]
    )
    return app


async def _json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError) as exc:
        raise DealerError(f"request body is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise DealerError("request body must be a JSON object")
    return body
