"""The Dealer's public side: recognise the unit, assign it, count it, and hand the request to its trip.

The trip to the upstream and back (header rules, answers, failures) is :mod:`~squals_action.dealer.trip`'s.
Paths under ``/_squals/`` are the Dealer's own and never reach an upstream. The client connections are
:mod:`~squals_action.dealer.server`'s, the upstream ones :mod:`~squals_action.dealer.upstream`'s.
"""

from __future__ import annotations

import json
import logging
import math
import secrets
from collections.abc import Awaitable, Callable

from squals_action.dealer.bucketing import unit_key
from squals_action.dealer.faults import Faults
from squals_action.dealer.interface import DealerConfig, DealerError
from squals_action.dealer.journal import Journal
from squals_action.dealer.request import FIELDS, Request, date_line
from squals_action.dealer.routing import Assigner, Routing
from squals_action.dealer.tally import Counted, TallyBook
from squals_action.dealer.trip import EVENT_FIELD, VARIANT_HEADER, Trip
from squals_action.dealer.upstream import UpstreamPool

VALUE_HEADER = "X-Squals-Value"
COUNTED_HEADER = "X-Squals-Counted"
#: The largest event value taken (in absolute value): sums of squares stay exact enough in a float.
MAX_VALUE = 1e12
RESERVED_PREFIX = "/_squals/"
_EVENT_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:")
_EVENT_BODY = 64 * 1024  # the largest JSON body the events endpoint reads

log = logging.getLogger("squals.dealer")


def valid_event(name: str) -> bool:
    return 0 < len(name) <= 64 and all(c in _EVENT_CHARS for c in name)


def event_value(raw: object) -> float:
    """An event's value (absent: 0): a finite number within MAX_VALUE, else DealerError saying so."""
    if raw is None:
        return 0.0
    try:
        value = float(raw) if isinstance(raw, (str, int, float)) and not isinstance(raw, bool) else math.nan
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or abs(value) > MAX_VALUE:
        raise DealerError(f"value must be a finite number within +-{MAX_VALUE:g}, got {raw!r}")
    return value


def _cookie_value(header: str, name: str) -> str | None:
    if ";" not in header:  # one cookie, the common case: no split, same answer as the loop below
        key, sep, value = header.strip().partition("=")
        return (value.strip().strip('"') or None) if sep and key == name else None
    for part in header.split(";"):
        key, sep, value = part.strip().partition("=")
        if sep and key == name:
            return value.strip().strip('"') or None
    return None


class Proxy:
    """Forwards public requests under the routing in force and counts them in ``book``.

    ``routing`` is asked once per request (the shared board in a worker), so a switch takes effect at the
    next assignment; a request keeps the upstream it picked. Only touched from one event loop: no locks.
    With a ``journal``, an answer leaves only once what it acknowledges is written.
    """

    def __init__(
        self,
        config: DealerConfig,
        book: TallyBook,
        routing: Callable[[], Routing],
        journal: Journal | None = None,
    ) -> None:
        self.config = config
        self.book = book
        self.journal = journal
        self.routing = routing
        #: latency and abort faults per upstream (chaos drills), set through the admin API
        self.faults = Faults()
        self._assign = Assigner(config.seed)
        self.cookie_name = config.unit_name if config.unit_kind == "cookie" else "squals_unit"
        self._unit_field = config.unit_name.lower().encode() if config.unit_kind == "header" else None
        #: the header fields the server keeps apart for every request: those below and the unit's header
        self.fields = FIELDS | {self._unit_field} if self._unit_field else FIELDS
        self.set_cookie = f"Set-Cookie: {self.cookie_name}=%s; Path=/; Max-Age={config.cookie_max_age}; "
        self.set_cookie += "HttpOnly; SameSite=Lax\r\n"
        self.pool: UpstreamPool | None = None
        #: With several workers: count a beacon for a unit this one never assigned in the book of one that
        #: did (``None``: no worker knows it). One worker: unset, such a beacon is refused at once.
        self.elsewhere: Callable[[int, str, float], Awaitable[Counted | None]] | None = None
        self.beacons_elsewhere = 0  # beacons another worker counted (GET /healthz shows it per worker)

    async def open(self) -> None:
        """The upstream client: keep-alive connections per upstream (docs/dealer.md, Forwarding)."""
        config = self.config
        events = frozenset({EVENT_FIELD})
        self.pool = UpstreamPool(config.connect_timeout, config.read_timeout, fields=events)

    async def close(self) -> None:
        if self.pool is not None:
            self.pool.close()
            self.pool = None

    def _unit_of(self, request: Request) -> tuple[str, bool]:
        """The request's unit id and whether it is new (then the response sets the cookie)."""
        if self._unit_field is not None:
            value = request.field(self._unit_field)
            if value:
                return value, False
        cookie = request.fields.get(b"cookie")
        if cookie:
            value = _cookie_value(cookie.decode("utf-8", "surrogateescape"), self.cookie_name)
            if value:
                return value, False
        return secrets.token_hex(16), True

    def handle(self, request: Request) -> Awaitable[None] | None:
        """Assign and count the request, then forward it: from callbacks when it has no body and an idle
        upstream connection waits (the common case), else in a coroutine (see :class:`Trip`)."""
        raw_path = request.raw_path
        if raw_path.startswith(RESERVED_PREFIX):
            return self._public_endpoint(request)
        if not raw_path.startswith("/"):
            request.text(400, "absolute-form request targets are not proxied\n")
            return None
        unit, new_unit = self._unit_of(request)
        routing = self.routing()
        placement, key = self._assign(unit, routing)
        counter = self.book.arrive(key, placement.cell)  # without layers the cell is the upstream
        fresh = unit if new_unit else None
        return Trip(self, request, routing, placement.upstream, counter, fresh, key, placement.header).start()

    def app_events(self, value: str, key: int) -> None:
        """Events the app reported in its response (``X-Squals-Event: checkout, revenue=12.5``; repeated
        headers joined), for its unit; malformed ones are skipped (the app's answer still goes out)."""
        for item in value.split(","):
            event, _, raw = item.strip().partition("=")
            try:
                if valid_event(event):
                    self.book.event(key, event, 1, event_value(raw or None))
            except DealerError as exc:
                log.warning("event %r from the app not counted: %s", item.strip(), exc.one_line())

    async def _public_endpoint(self, request: Request) -> None:
        """``POST /_squals/events`` lets a page report a conversion (and its value) for the unit sending the
        request; only a unit this Dealer assigned counts, once per event kind unless its cap allows more."""
        if request.path != "/_squals/events":
            return request.text(404, "unknown Dealer endpoint\n")
        if request.method != "POST":
            return request.text(405, "only POST\n", b"Allow: POST\r\n")
        query = request.query
        event, raw_value = query.get("event"), query.get("value")
        raw_value = raw_value if raw_value is not None else request.headers.get(VALUE_HEADER)
        if event is None and request.body is not None:
            request.send_continue()
            try:
                body = json.loads(await request.body.read(_EVENT_BODY))
            except (ValueError, UnicodeDecodeError):
                return request.text(400, 'expected JSON {"event": name, "value": number} (at most 64 KiB)\n')
            if isinstance(body, dict):
                event, raw_value = body.get("event"), body.get("value", raw_value)
        if not isinstance(event, str) or not valid_event(event):
            return request.text(400, "event must be 1-64 of [A-Za-z0-9-_.:]\n")
        unit, new_unit = self._unit_of(request)
        if new_unit:
            return request.text(400, "no unit: send the Dealer's cookie or unit header\n")
        key = unit_key(unit)
        try:
            value = event_value(raw_value)
            counted = self.book.event(key, event, 1, value)
        except DealerError as exc:
            return request.text(400, exc.one_line() + "\n")
        if counted is None and self.elsewhere is not None:
            try:  # another worker may have served the page: it counts it (its book, its journal)
                counted = await self.elsewhere(key, event, value)
            except DealerError as exc:
                return request.text(503, f"the event could not be counted: {exc.one_line()}\n")
            if counted is not None:
                self.beacons_elsewhere += 1
                return self._counted(request, counted)
        if counted is None:
            return request.text(403, "unknown unit: this Dealer never assigned it a variant\n")
        if self.journal is not None:
            try:
                await self.journal.durable()
            except OSError as exc:
                return request.text(503, f"the event could not be recorded: {exc.strerror}\n")
        return self._counted(request, counted)

    @staticmethod
    def _counted(request: Request, counted: Counted) -> None:
        head = f"{VARIANT_HEADER}: {counted.variant}\r\n{COUNTED_HEADER}: {counted.counted}\r\n"
        request.answer(204, "No Content", head.encode() + date_line())
