"""Where the Dealer sends a request its upstream could not take, and when that is safe.

During a promotion GREEN holds the largest share: when BLUE refuses the connection (its process died), the
request goes to the heaviest *other* upstream with a weight, at once, instead of a 502 until the bake's next
check. A refused connection means nothing was sent, so this is safe for every method; a connection the
upstream dropped before answering may have reached it, so that request is sent again only when its method is
idempotent (RFC 9110 section 9.2.2) and it has no body (a body stream cannot be read twice). One retry only.
"""

from __future__ import annotations

from collections.abc import Mapping

from squals_action.dealer.upstream import IDEMPOTENT, Dropped, Unreachable


def fallbacks(weights: Mapping[str, float]) -> dict[str, str]:
    """For each upstream, the upstream its failed requests go to: the heaviest other one with a positive
    weight (ties: the name that sorts first); upstreams with no such other one are absent."""
    ranked = sorted((name for name, w in weights.items() if w > 0), key=lambda n: (-weights[n], n))
    out: dict[str, str] = {}
    for name in weights:
        spare = next((other for other in ranked if other != name), None)
        if spare is not None:
            out[name] = spare
    return out


def may_retry(exc: BaseException, method: str, has_body: bool) -> bool:
    """True when a request that failed with ``exc`` before any answer may be sent to another upstream."""
    if isinstance(exc, Unreachable):  # no connection: nothing was sent
        return True
    return isinstance(exc, Dropped) and method in IDEMPOTENT and not has_body
