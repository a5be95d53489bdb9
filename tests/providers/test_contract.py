"""The provider contract, run over every registered provider kind (the AWS provider reuses it)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from squals_action.providers import PROVIDERS, EnvironmentHandle, ProviderError, get_provider
from tests.support.providers import ContractSetup, read_json


def _refuses(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=2).close()
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return True
    return False


def test_whole_lifecycle(contract: ContractSetup) -> None:
    provider, manifest = contract.provider, contract.manifest()
    handle = provider.provision("pr-7", contract.commit, manifest, extra_env={"EXTRA": "x"})

    assert (handle.env, handle.commit, handle.kind) == ("pr-7", contract.commit, provider.kind)
    assert handle.url.startswith("http")
    assert provider.health(handle).ok
    body = read_json(handle.url + "/")
    assert body["version"] == "one"
    assert body["env"] == {  # type: ignore[comparison-overlap]
        "PORT": body["env"]["PORT"],  # type: ignore[index]
        "SQUALS_ENV": "pr-7",
        "SQUALS_COMMIT": contract.commit,
        "SQUALS_URL": handle.url,
        "GREETING": None,
        "EXTRA": "x",
    }
    assert [h.env for h in provider.list()] == ["pr-7"]

    outcome = provider.destroy(handle)
    assert outcome.ok, outcome
    assert contract.leftovers() == []
    assert _refuses(handle.url + "/")
    assert provider.list() == ()
    assert not provider.health(handle).ok

    again = provider.destroy(handle)
    assert again.ok, again
    assert contract.leftovers() == []


def test_handle_survives_json_and_a_fresh_provider(contract: ContractSetup) -> None:
    provider = contract.provider
    handle = provider.provision("prod", contract.commit, contract.manifest())
    recorded = json.loads(json.dumps(handle.to_json()))
    rebuilt = EnvironmentHandle.from_json(recorded)
    assert rebuilt == handle

    later = get_provider(provider.kind, provider.repo, provider.config)
    assert later.health(rebuilt).ok
    assert later.destroy(rebuilt).ok
    assert contract.leftovers() == []


def test_unknown_commit_is_an_error_and_leaves_nothing(contract: ContractSetup) -> None:
    with pytest.raises(ProviderError, match="is not a commit of the repository"):
        contract.provider.provision("pr-1", "0" * 40, contract.manifest())
    with pytest.raises(ProviderError, match="not a commit"):
        contract.provider.provision("pr-1", "--output=/tmp/x", contract.manifest())
    assert contract.leftovers() == []


def test_bad_environment_name_is_refused(contract: ContractSetup) -> None:
    for name in ("../etc", "", "a/b", "-x", "x" * 64):
        with pytest.raises(ProviderError, match="not allowed"):
            contract.provider.provision(name, contract.commit, contract.manifest())
    assert contract.leftovers() == []


def test_provisioning_a_running_name_replaces_it(contract: ContractSetup) -> None:
    provider = contract.provider
    first = provider.provision("pr-3", contract.commit, contract.manifest())
    second = provider.provision("pr-3", contract.commit, contract.manifest(env={"GREETING": "hi"}))
    assert not provider.health(first).ok or first.url == second.url
    assert provider.health(second).ok
    assert read_json(second.url + "/")["env"]["GREETING"] == "hi"  # type: ignore[index]
    assert [h.env for h in provider.list()] == ["pr-3"]
    assert provider.destroy(first).ok  # the old handle must not take the new environment down
    assert provider.health(second).ok
    assert provider.destroy(second).ok


def test_down_stops_everything(contract: ContractSetup) -> None:
    provider = contract.provider
    for name in ("pr-1", "pr-2", "prod"):
        provider.provision(name, contract.commit, contract.manifest())
    outcomes = provider.down()
    assert sorted(o.env for o in outcomes) == ["pr-1", "pr-2", "prod"]
    assert all(o.ok for o in outcomes)
    assert contract.leftovers() == []


def test_registry_names_every_kind() -> None:
    assert "local" in PROVIDERS
    for kind, cls in PROVIDERS.items():
        assert cls.kind == kind
    with pytest.raises(ProviderError, match="unknown provider kind 'nope'"):
        get_provider("nope", ".")
