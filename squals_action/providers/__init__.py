"""Where environments run, behind one interface (:mod:`squals_action.providers.interface`).

:data:`PROVIDERS` is the explicit registry the CLI offers as choices; add an implementation by importing its
class here (keep implementation modules light at import time: heavy SDKs are imported inside methods).
"""

from __future__ import annotations

from pathlib import Path

from squals_action.manifest import model
from squals_action.providers.aws import AwsProvider
from squals_action.providers.interface import (
    DestroyOutcome,
    EnvironmentHandle,
    Health,
    HealthStatus,
    Provider,
    ProviderError,
    ProvisionError,
    check_env_name,
)
from squals_action.providers.local import LocalProvider

#: Every provider kind by the name the squals file's ``provider.kind`` uses.
PROVIDERS: dict[str, type[Provider]] = {
    LocalProvider.kind: LocalProvider,
    AwsProvider.kind: AwsProvider,
}


def get_provider(
    kind: str,
    repo: Path | str,
    config: model.Provider | None = None,
    *,
    state_dir: Path | str | None = None,
) -> Provider:
    """The provider called ``kind`` for the project whose git repository contains ``repo``."""
    try:
        cls = PROVIDERS[kind]
    except KeyError:
        known = ", ".join(sorted(PROVIDERS))
        raise ProviderError(f"unknown provider kind {kind!r}: expected one of {known}") from None
    return cls(repo, config, state_dir=state_dir)


__all__ = [
    "PROVIDERS",
    "AwsProvider",
    "DestroyOutcome",
    "EnvironmentHandle",
    "Health",
    "HealthStatus",
    "LocalProvider",
    "Provider",
    "ProviderError",
    "ProvisionError",
    "check_env_name",
    "get_provider",
]
