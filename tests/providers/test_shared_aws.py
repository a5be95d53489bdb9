"""Shared resources on aws against moto's server: one stack per resource, created once, its outputs passed to
every island, never touched by ``down``, deleted only on request."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from squals_action.manifest import model
from squals_action.providers import ProviderError
from squals_action.providers.aws import AwsProvider
from tests.support.aws import TEMPLATE, Cloud
from tests.support.providers import Repo, read_json

CACHE_TEMPLATE = """\
AWSTemplateFormatVersion: "2010-09-09"
Description: a shared cache of the provider tests
Parameters:
  SqualsProject:
    Type: String
  Engine:
    Type: String
    Default: redis
Resources:
  Queue:
    Type: AWS::SQS::Queue
Outputs:
  Url:
    Value: !Sub "${Engine}://cache.${SqualsProject}.internal:6379"
  Endpoint:
    Value: !GetAtt Queue.Arn
"""

#: The island template, taking the cache's ``Endpoint`` output as a parameter.
ISLAND = TEMPLATE.replace(
    "  Greeting:\n", "  SqualsSharedCacheEndpoint:\n    Type: String\n    Default: none\n  Greeting:\n"
)
CACHE = model.SharedResource("cache", "redis", template="infra/cache.yml", parameters={"Engine": "valkey"})


def _provider(cloud: Cloud, repo: Repo) -> tuple[AwsProvider, str]:
    (repo.path / "infra").mkdir(exist_ok=True)
    (repo.path / "infra" / "cache.yml").write_text(CACHE_TEMPLATE)
    commit = cloud.prepare(repo, ISLAND)
    provider = AwsProvider(repo.path, cloud.config())
    provider.wait_delay = 1
    return provider, commit


def _tags(cloud: Cloud, name: str) -> dict[str, str]:
    stack = cloud.cfn.describe_stacks(StackName=name)["Stacks"][0]
    return {t["Key"]: t["Value"] for t in stack["Tags"]}


def test_one_stack_per_resource_created_once_passed_to_islands_and_kept_by_down(
    aws_cloud: Cloud, repo: Repo, moto_calls: Callable[[], list[str]]
) -> None:
    provider, commit = _provider(aws_cloud, repo)
    manifest = repo.manifest(shared={"cache": CACHE})
    one = provider.provision("pr-1", commit, manifest)

    shared_tags = _tags(aws_cloud, "squals-tiny-shared-cache")
    assert {k: shared_tags[k] for k in ("squals:project", "squals:app", "squals:role", "squals:shared")} == {
        "squals:project": "tiny",
        "squals:app": "tiny",
        "squals:role": "shared",
        "squals:shared": "cache",
    }
    assert shared_tags["squals:commit"] == commit and "squals:environment" not in shared_tags
    island_tags = _tags(aws_cloud, "squals-tiny-pr-1")
    assert (island_tags["squals:app"], island_tags["squals:environment"]) == ("tiny", "pr-1")

    (cache,) = provider.shared_resources().running()
    seen = read_json(one.url)
    assert seen["shared"] == {"SQUALS_SHARED_CACHE_URL": "valkey://cache.tiny.internal:6379"}
    assert seen["parameters"] == {"SqualsSharedCacheEndpoint": cache.data["outputs"]["Endpoint"]}

    provider.provision("pr-2", commit, manifest)
    assert moto_calls().count("CreateStack") == 3  # the cache once, then one island each

    assert sorted(o.env for o in provider.down()) == ["pr-1", "pr-2"]
    assert aws_cloud.stacks() == ["squals-tiny-shared-cache CREATE_COMPLETE"]
    assert [s.state for s in provider.shared_resources().status(manifest)] == ["running"]

    (removed,) = provider.shared_resources().remove(["cache"])
    assert removed.ok and removed.detail == "deleted stack squals-tiny-shared-cache"
    assert aws_cloud.stacks() == []
    assert [s.state for s in provider.shared_resources().status(manifest)] == ["not started"]


def test_a_shared_resource_without_template_is_refused_before_any_stack(aws_cloud: Cloud, repo: Repo) -> None:
    provider, commit = _provider(aws_cloud, repo)
    bare = model.SharedResource("cache", "redis", run="redis-server --port $PORT")
    with pytest.raises(ProviderError, match=r"shared\.cache: expected template .* on aws"):
        provider.provision("pr-1", commit, repo.manifest(shared={"cache": bare}))
    assert aws_cloud.stacks() == []
