"""HTTP sessions that retry: urllib3's :class:`Retry` on a requests session, shared by every HTTP client.

Connection failures, timeouts and the listed statuses are retried, honouring ``Retry-After`` up to a cap,
else with exponential backoff (``backoff``, ``2 * backoff``, ...); other statuses (400, 404) come back
at once. After the last attempt a retried status is returned as the response (the caller words the error)
and a connection failure raises ``requests.ConnectionError``.

Importing this module imports requests; clients import it where they first need a session.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from typing import Any, Self

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import InvalidHeader
from urllib3.util.retry import Retry

from squals_action import __version__

#: Statuses that mean "try again later": rate limited, or the server (or its proxy) is failing.
TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})


class BackoffRetry(Retry):
    """urllib3's Retry, waiting ``backoff`` already before the first retry (urllib3 waits 0 there).

    The wait happens when a retry is counted (:meth:`increment`) rather than in :meth:`sleep`, so it is the
    same whether urllib3 drives the retries or a test double that replays them without sleeping (responses).
    """

    def __init__(
        self,
        *args: Any,
        pause: Callable[[float], None] = time.sleep,
        retry_after_cap: float = 30.0,
        **kw: Any,
    ) -> None:
        super().__init__(*args, **kw)
        self.pause = pause
        self.retry_after_cap = retry_after_cap

    def new(self, **kw: Any) -> Self:
        retry = super().new(**kw)
        retry.pause, retry.retry_after_cap = self.pause, self.retry_after_cap
        return retry

    def get_backoff_time(self) -> float:
        if not self.history:
            return 0.0
        return float(min(self.backoff_max, self.backoff_factor * 2 ** (len(self.history) - 1)))

    def increment(self, *args: Any, **kw: Any) -> Self:
        retry = super().increment(*args, **kw)
        response = kw.get("response", args[2] if len(args) > 2 else None)
        wait = None
        if response is not None and self.respect_retry_after_header:
            try:
                wait = retry.get_retry_after(response)
            except InvalidHeader:
                wait = None
        wait = retry.get_backoff_time() if wait is None else min(wait, self.retry_after_cap)
        if wait > 0:
            self.pause(wait)
        return retry

    def sleep(self, response: Any = None) -> None:
        """Nothing: :meth:`increment` has waited already."""


def retrying_session(
    *,
    attempts: int,
    backoff: float,
    statuses: Collection[int] = TRANSIENT_STATUSES,
    methods: Collection[str] = ("GET",),
    retry_after_cap: float = 30.0,
    pause: Callable[[float], None] = time.sleep,
) -> requests.Session:
    """A session making up to ``attempts`` tries per request; ``methods`` lists the ones safe to repeat."""
    retries = max(0, attempts - 1)
    retry = BackoffRetry(
        total=retries,
        connect=retries,
        read=retries,
        status=retries,
        other=0,
        backoff_factor=backoff,
        status_forcelist=frozenset(statuses),
        allowed_methods=frozenset(m.upper() for m in methods),
        raise_on_status=False,
        respect_retry_after_header=True,
        pause=pause,
        retry_after_cap=retry_after_cap,
    )
    session = requests.Session()
    session.headers["User-Agent"] = f"squals-action/{__version__}"
    adapter = HTTPAdapter(max_retries=retry)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session
