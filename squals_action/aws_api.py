"""How squals talks to any AWS API: one way to build a client, one way to turn a failed call into one line.

Every client gets botocore's standard retry mode (exponential back-off with jitter on throttling, 5xx and
transport errors) and bounded connect/read timeouts; boto3 honours ``AWS_ENDPOINT_URL`` (and the
per-service ``AWS_ENDPOINT_URL_<SERVICE>``) natively, which is how the tests reach moto. boto3 is imported
inside, never at CLI start-up.

Every client has its own session (credentials, region and endpoint are read afresh), but all share one
botocore data loader: a session of its own reads botocore's JSON again (the endpoints, the service's model:
about 0.3 s a client, most of a fresh process's set-up), and the files never change while the process runs.
(boto3 adds its own data folder to the loader's search path for each session: one more entry per client,
searched only for a file not loaded yet, and always found in the same place.)
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from squals_action.errors import SqualsError

T = TypeVar("T")

#: Attempts per API call in all, first one included.
MAX_ATTEMPTS = 8
CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 60.0


@functools.cache
def _loader() -> Any:
    """botocore's loader of its own data files, shared by every client of the process (see the module doc);
    it searches ``AWS_DATA_PATH`` (or the config's ``data_path``) first, as botocore's own would."""
    import botocore.loaders
    import botocore.session

    return botocore.loaders.create_loader(botocore.session.Session().get_config_variable("data_path"))


def client(
    service: str,
    region: str,
    *,
    max_attempts: int = MAX_ATTEMPTS,
    connect_timeout: float = CONNECT_TIMEOUT,
    read_timeout: float = READ_TIMEOUT,
) -> Any:
    """A boto3 client for ``service`` in ``region`` with standard retries and timeouts, in a session of its
    own."""
    import boto3
    import botocore.session
    from botocore.config import Config

    config = Config(
        region_name=region,
        retries={"mode": "standard", "total_max_attempts": max_attempts},
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        user_agent_extra="squals",
    )
    core = botocore.session.Session()
    core.register_component("data_loader", _loader())
    return boto3.session.Session(botocore_session=core).client(service, config=config)


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
