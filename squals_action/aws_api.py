"""How squals talks to any AWS API: one way to build a client, one way to turn a failed call into one line.

Every client gets botocore's standard retry mode (exponential back-off with jitter on throttling, 5xx and
transport errors) and bounded connect/read timeouts; boto3 honours ``AWS_ENDPOINT_URL`` (and the
per-service ``AWS_ENDPOINT_URL_<SERVICE>``) natively, which is how the tests reach moto. boto3 is imported
inside, never at CLI start-up.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from squals_action.errors import SqualsError

T = TypeVar("T")

#: Attempts per API call in all, first one included.
MAX_ATTEMPTS = 8
CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 60.0


def client(
    service: str,
    region: str,
    *,
    max_attempts: int = MAX_ATTEMPTS,
    connect_timeout: float = CONNECT_TIMEOUT,
    read_timeout: float = READ_TIMEOUT,
) -> Any:
    """A boto3 client for ``service`` in ``region`` with standard retries and timeouts."""
    import boto3
    from botocore.config import Config

    config = Config(
        region_name=region,
        retries={"mode": "standard", "total_max_attempts": max_attempts},
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        user_agent_extra="squals",
    )
    return boto3.session.Session().client(service, config=config)


def call(error: type[SqualsError], what: str, fn: Callable[..., T], **kwargs: Any) -> T:
    """One API call; AWS and transport errors become one-line ``error("what: Code: Message")``."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return fn(**kwargs)
    except ClientError as exc:
        detail = exc.response.get("Error", {})
        raise error(f"{what}: {detail.get('Code', 'Error')}: {detail.get('Message', exc)}") from exc
    except BotoCoreError as exc:
        raise error(f"{what}: {exc}") from exc
