"""The ``aws`` provider against moto in server mode on 127.0.0.1 (reached through ``AWS_ENDPOINT_URL``).

The whole contract runs in ``test_contract.py``; here: the CloudFormation specifics (names, tags,
parameters, no-op updates, failures with their reasons, bounded waits, regions) and the checks that happen
before any AWS call (cfn-lint, template path, parameters).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from typing import Any

import pytest

from squals_action.manifest import model
from squals_action.providers import ProviderError, get_provider
from squals_action.providers.aws import AwsProvider
from squals_action.providers.aws_template import stack_name
from tests.support.aws import REGION, TEMPLATE, Cloud
from tests.support.providers import Repo

BAD_TYPE = TEMPLATE.replace("Type: AWS::SQS::Queue", "Type: AWS::SQS::Queu")
BAD_QUEUE = TEMPLATE.replace(
    "    Properties:\n", "    Properties:\n      QueueName: 'not a valid name!'\n", 1
)


def _provider(repo: Repo, cloud: Cloud, **parameters: str) -> AwsProvider:
    provider = AwsProvider(repo.path, cloud.config(**parameters))
    provider.wait_delay = 1
    return provider


def _no_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self: AwsProvider, region: str) -> Any:
        raise AssertionError("an AWS client was asked for")

    monkeypatch.setattr(AwsProvider, "client", refuse)


def _events(cloud: Cloud, stack: str) -> list[str]:
    events = cloud.cfn.describe_stack_events(StackName=stack)["StackEvents"]
    return [f"{e['LogicalResourceId']} {e['ResourceStatus']}" for e in reversed(events)]


@pytest.mark.slow
def test_create_outputs_health_noop_update_destroy(aws_cloud: Cloud, repo: Repo) -> None:
    commit = aws_cloud.prepare(repo)
    provider = _provider(repo, aws_cloud)
    handle = provider.provision("pr-7", commit, repo.manifest(env={"GREETING": "hello"}))

    assert handle.data["stack_name"] == "squals-tiny-pr-7"
    assert handle.url == f"{aws_cloud.app.url}/stacks/squals-tiny-pr-7"
    assert set(handle.data["outputs"]) == {"Url", "Queue"}
    stack = aws_cloud.cfn.describe_stacks(StackName="squals-tiny-pr-7")["Stacks"][0]
    tags = {t["Key"]: t["Value"] for t in stack["Tags"]}
    assert tags["squals:project"] == "tiny"
    assert tags["squals:environment"] == "pr-7"
    assert tags["squals:commit"] == commit
    params = {p["ParameterKey"]: p["ParameterValue"] for p in stack["Parameters"]}
    assert params["SqualsCommit"] == commit
    assert params["SqualsEnvironment"] == "pr-7"
    assert params["SqualsProject"] == "tiny"
    assert json.loads(params["SqualsAppEnv"]) == {"GREETING": "hello"}

    health = provider.health(handle)
    assert health.ok and health.http_status == 200, health
    aws_cloud.app.healthy = False
    sick = provider.health(handle)
    assert (sick.status, sick.http_status) == ("unhealthy", 503), sick
    aws_cloud.app.healthy = True

    # The same commit, template and parameters again: CloudFormation answers "No updates are to be
    # performed", which is a success that changes nothing.
    again = provider.provision("pr-7", commit, repo.manifest(env={"GREETING": "hello"}))
    assert again == handle
    assert not [e for e in _events(aws_cloud, "squals-tiny-pr-7") if "UPDATE" in e]
    assert provider.list() == (handle,)
    assert provider.get("pr-7") == handle
    assert tags["squals:health-path"] == "/healthz"

    outcome = provider.destroy(handle)
    assert outcome.ok and "deleted stack squals-tiny-pr-7" in outcome.detail, outcome
    assert aws_cloud.stacks() == []
    assert provider.health(handle).status == "down"
    assert provider.list() == ()
    gone = provider.destroy(handle)
    assert gone.ok and "already gone" in gone.detail


def test_parameters_merge_squals_file_and_environment_override(aws_cloud: Cloud, repo: Repo) -> None:
    commit = aws_cloud.prepare(repo)
    provider = _provider(repo, aws_cloud, Greeting="everyone")
    override = model.EnvironmentOverride(name="pr-*", provider_parameters={"Greeting": "reviewers"})
    manifest = repo.manifest(environments={"pr-*": override})
    provider.provision("pr-2", commit, manifest)
    provider.provision("prod", commit, manifest)

    def greeting(stack: str) -> str:
        found = aws_cloud.cfn.describe_stacks(StackName=stack)["Stacks"][0]["Parameters"]
        return next(p["ParameterValue"] for p in found if p["ParameterKey"] == "Greeting")

    assert greeting("squals-tiny-pr-2") == "reviewers"
    assert greeting("squals-tiny-prod") == "everyone"
    outcomes = provider.down()
    assert [(o.env, o.ok) for o in outcomes] == [("pr-2", True), ("prod", True)]
    assert aws_cloud.stacks() == []


def test_cfn_lint_error_names_file_and_line_and_calls_no_aws(
    aws_cloud: Cloud, repo: Repo, monkeypatch: pytest.MonkeyPatch
) -> None:
    commit = aws_cloud.prepare(repo, BAD_TYPE)
    _no_aws(monkeypatch)
    line = BAD_TYPE.splitlines().index("    Type: AWS::SQS::Queu") + 1
    with pytest.raises(ProviderError) as caught:
        _provider(repo, aws_cloud).provision("pr-1", commit, repo.manifest())
    message = caught.value.one_line()
    assert message == str(caught.value), "one line"
    assert re.match(rf"infra/stack\.yml:{line}:\d+ in commit {commit[:12]}: cfn-lint E3006: .*Queu", message)

    broken = repo.git("rev-parse", "HEAD")
    (repo.path / "infra" / "stack.yml").write_text("Resources: [unclosed\n")
    broken = repo.commit("broken")
    lint_error = rf"^infra/stack\.yml:\d+:\d+ in commit {broken[:12]}: cfn-lint E0000"
    with pytest.raises(ProviderError, match=lint_error):
        _provider(repo, aws_cloud).provision("pr-1", broken, repo.manifest())

    (repo.path / "infra" / "stack.yml").write_text(TEMPLATE.split("Outputs:")[0])
    no_url = repo.commit("no-url")
    with pytest.raises(ProviderError, match="expected an output named 'Url'"):
        _provider(repo, aws_cloud).provision("pr-1", no_url, repo.manifest())
    assert aws_cloud.stacks() == []


def test_template_and_parameter_mistakes_are_caught_before_aws(
    aws_cloud: Cloud, repo: Repo, monkeypatch: pytest.MonkeyPatch
) -> None:
    commit = aws_cloud.prepare(repo)
    _no_aws(monkeypatch)
    outside = AwsProvider(repo.path, aws_cloud.config(template="../../etc/passwd"))
    with pytest.raises(ProviderError, match=r"provider\.template: expected a path inside the repository"):
        outside.provision("pr-1", commit, repo.manifest())
    absent = AwsProvider(repo.path, aws_cloud.config(template="infra/other.yml"))
    with pytest.raises(ProviderError, match=r"infra/other\.yml is not a file in commit"):
        absent.provision("pr-1", commit, repo.manifest())
    stray = _provider(repo, aws_cloud, InstanceSize="large")
    with pytest.raises(
        ProviderError, match=r"provider parameter 'InstanceSize' is not declared by infra/stack\.yml"
    ):
        stray.provision("pr-1", commit, repo.manifest())
    required = AwsProvider(repo.path, model.Provider(kind="aws", template="infra/stack.yml"))
    with pytest.raises(ProviderError, match="parameter 'AppBase' has no Default and no value"):
        required.provision("pr-1", commit, repo.manifest())


def test_missing_region_is_a_clear_error(
    aws_cloud: Cloud, repo: Repo, monkeypatch: pytest.MonkeyPatch
) -> None:
    commit = aws_cloud.prepare(repo)
    monkeypatch.delenv("AWS_REGION")
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    with monkeypatch.context() as patch:
        _no_aws(patch)
        with pytest.raises(ProviderError, match=r"no AWS region: set provider\.region in the squals file"):
            _provider(repo, aws_cloud).provision("pr-1", commit, repo.manifest())
        with pytest.raises(ProviderError, match="no AWS region"):
            _provider(repo, aws_cloud).list()

    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    assert _provider(repo, aws_cloud).region() == REGION
    config = model.Provider(kind="aws", region="eu-west-3", template="infra/stack.yml")
    in_file = AwsProvider(repo.path, config)
    assert in_file.region() == "eu-west-3"
    client = in_file.client(in_file.region())
    assert client.meta.region_name == "eu-west-3"
    assert client.meta.endpoint_url == aws_cloud.endpoint  # AWS_ENDPOINT_URL, honoured by boto3 itself


def _cfn_like_failures(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make moto fail a stack the way CloudFormation does: create_stack succeeds, the resource fails
    (CREATE_FAILED with its reason), the stack rolls back to ROLLBACK_COMPLETE. (moto itself raises the
    resource's error from create_stack and leaves the stack CREATE_IN_PROGRESS.)"""
    from moto.cloudformation import models

    real = models.Stack.create_resources

    def create_resources(self: Any) -> None:
        try:
            real(self)
        except Exception as exc:  # the resource's own error, e.g. SQS refusing the queue name
            logical, resource = next(iter(self.template_dict["Resources"].items()))
            event = models.Event(
                stack_id=self.stack_id,
                stack_name=self.name,
                logical_resource_id=logical,
                physical_resource_id="",
                resource_type=resource["Type"],
                resource_status="CREATE_FAILED",
                resource_status_reason=str(getattr(exc, "message", exc)),
                resource_properties=None,
            )
            self.events.append(event)
            self._add_stack_event("ROLLBACK_IN_PROGRESS", "The following resource(s) failed to create")
            self._add_stack_event("ROLLBACK_COMPLETE")
            self.status = "ROLLBACK_COMPLETE"
            self.output_map = models.OutputMap(self.resource_map, {}, self.stack_id)  # no outputs

    monkeypatch.setattr(models.Stack, "create_resources", create_resources)


def test_failed_create_reports_the_reason_and_is_replaced_next_time(
    aws_cloud: Cloud, repo: Repo, monkeypatch: pytest.MonkeyPatch
) -> None:
    _cfn_like_failures(monkeypatch)
    bad = aws_cloud.prepare(repo, BAD_QUEUE)
    provider = _provider(repo, aws_cloud)
    with pytest.raises(ProviderError) as caught:
        provider.provision("pr-4", bad, repo.manifest())
    message = caught.value.one_line()
    assert "stack squals-tiny-pr-4 ended ROLLBACK_COMPLETE" in message, message
    assert "Inbox (AWS::SQS::Queue) CREATE_FAILED: Can only include alphanumeric characters" in message
    # Left as CloudFormation leaves it: rolled back, nothing running, visible and reported down.
    assert aws_cloud.stacks() == ["squals-tiny-pr-4 ROLLBACK_COMPLETE"]
    listed = provider.list()
    assert [h.env for h in listed] == ["pr-4"]
    assert provider.health(listed[0]).status == "down"

    good = aws_cloud.prepare(repo)
    handle = provider.provision("pr-4", good, repo.manifest())
    assert provider.health(handle).ok
    assert aws_cloud.stacks() == ["squals-tiny-pr-4 CREATE_COMPLETE"]
    assert provider.destroy(handle).ok
    assert aws_cloud.stacks() == []


def test_a_refused_create_quotes_aws(aws_cloud: Cloud, repo: Repo) -> None:
    bad = aws_cloud.prepare(repo, BAD_QUEUE)
    provider = _provider(repo, aws_cloud)
    with pytest.raises(ProviderError, match=r"pr-5: create stack squals-tiny-pr-5: \w+: Can only include"):
        provider.provision("pr-5", bad, repo.manifest())
    # moto keeps a half-made stack that its own DescribeStacks cannot render: removed by name.
    aws_cloud.cfn.delete_stack(StackName="squals-tiny-pr-5")
    assert aws_cloud.stacks() == []


def test_waits_are_bounded(aws_cloud: Cloud, repo: Repo, monkeypatch: pytest.MonkeyPatch) -> None:
    from moto.cloudformation import models

    def stuck(self: Any) -> None:
        self.status = "CREATE_IN_PROGRESS"

    monkeypatch.setattr(models.Stack, "create_resources", stuck)
    commit = aws_cloud.prepare(repo)
    provider = _provider(repo, aws_cloud)
    provider.wait_timeout = 2
    with pytest.raises(ProviderError, match="stack squals-tiny-pr-6 still CREATE_IN_PROGRESS after 2s"):
        provider.provision("pr-6", commit, repo.manifest())
    with pytest.raises(ProviderError, match=r"busy \(CREATE_IN_PROGRESS\)"):
        provider.provision("pr-6", commit, repo.manifest())
    assert all(o.ok for o in provider.down())


def test_an_app_that_never_answers_leaves_no_stack(aws_cloud: Cloud, repo: Repo) -> None:
    commit = aws_cloud.prepare(repo)
    aws_cloud.app.healthy = False
    with pytest.raises(ProviderError, match=r"did not answer 2xx/3xx within 0.5s \(last answer HTTP 503\)"):
        _provider(repo, aws_cloud).provision("pr-8", commit, repo.manifest(health_timeout=0.5))
    assert aws_cloud.stacks() == []


def test_a_stack_that_is_not_ours_is_left_alone(aws_cloud: Cloud, repo: Repo) -> None:
    commit = aws_cloud.prepare(repo)
    aws_cloud.cfn.create_stack(
        StackName="squals-tiny-pr-9",
        TemplateBody=TEMPLATE,
        Parameters=[
            {"ParameterKey": k, "ParameterValue": "x"}
            for k in ("AppBase", "SqualsProject", "SqualsEnvironment", "SqualsCommit")
        ],
    )
    provider = _provider(repo, aws_cloud)
    with pytest.raises(ProviderError, match="is not squals' environment pr-9 of project tiny"):
        provider.provision("pr-9", commit, repo.manifest())
    assert provider.list() == ()
    assert provider.get("pr-9") is None
    assert provider.down() == ()
    assert aws_cloud.stacks() == ["squals-tiny-pr-9 CREATE_COMPLETE"]
    aws_cloud.cfn.delete_stack(StackName="squals-tiny-pr-9")


def test_a_fresh_provider_finds_the_project_from_the_squals_file(aws_cloud: Cloud, repo: Repo) -> None:
    commit = aws_cloud.prepare(repo)
    handle = _provider(repo, aws_cloud).provision("prod", commit, repo.manifest())
    later = get_provider("aws", repo.path, aws_cloud.config())
    assert isinstance(later, AwsProvider) and later.project == "tiny"  # squals.yml says name: tiny
    assert later.get("prod") == later.list()[0]
    assert later.get("prod") is not None and later.get("pr-1") is None
    assert [o.env for o in later.down()] == ["prod"]
    assert not later.health(handle).ok


def test_the_project_comes_from_the_squals_file_that_declared_the_provider(
    aws_cloud: Cloud, repo: Repo
) -> None:
    from squals_action.manifest import load

    aws_cloud.prepare(repo)
    other = repo.path / "squals" / "admin.yml"
    other.parent.mkdir()
    other.write_text(
        "version: 1\nname: admin\napp: {start: python app.py}\n"
        "provider: {kind: aws, region: eu-west-1, template: ../infra/stack.yml}\n"
    )
    manifest = load(other, repo.path)
    assert get_provider("aws", repo.path, manifest.provider).project == "admin"  # not squals.yml's "tiny"
    assert AwsProvider(repo.path, aws_cloud.config()).project == "tiny"  # built by hand: squals.yml
    assert AwsProvider(repo.path, aws_cloud.config(), project="given").project == "given"


def test_stack_names_follow_cloudformation_rules() -> None:
    assert stack_name("shop", "pr-7") == "squals-shop-pr-7"
    dotted, dashed = stack_name("shop", "pr.1"), stack_name("shop", "pr-1")
    assert dotted != dashed and dotted.startswith("squals-shop-pr-1-")
    for name in (stack_name("my_shop", "v_2"), stack_name("s" * 100, "e" * 63), dotted):
        assert re.fullmatch(r"[A-Za-z][-A-Za-z0-9]{0,127}", name), name
    assert stack_name("s" * 100, "e" * 63) != stack_name("s" * 100, "e" * 62)


def test_importing_the_providers_loads_neither_boto3_nor_cfnlint() -> None:
    code = (
        "import sys, squals_action.providers as p; assert 'aws' in p.PROVIDERS; "
        "heavy = [m for m in ('boto3', 'botocore', 'cfnlint') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_the_example_template_passes_cfn_lint_and_names_its_parameters() -> None:
    from pathlib import Path

    from squals_action.providers.aws_template import Template, lint_template, stack_parameters

    body = (Path(__file__).parents[2] / "examples" / "shop" / "infra" / "stack.yml").read_text()
    parsed = lint_template("examples/shop/infra/stack.yml", body, REGION)
    template = Template("infra/stack.yml", body, parsed)
    manifest = model.Manifest(path="squals.yml", name="shop", app=model.App(start="python3 app.py"))
    config = model.Provider(kind="aws", template="infra/stack.yml", parameters={"AccessRoleArn": "arn:x"})
    with pytest.raises(ProviderError, match="parameter 'ImageRepository' has no Default and no value"):
        stack_parameters(template, config, manifest, env="pr-1", sha="a" * 40, project="shop", app_env={})
    config = model.Provider(
        kind="aws", template="infra/stack.yml", parameters={"AccessRoleArn": "arn:x", "ImageRepository": "r"}
    )
    values = stack_parameters(
        template, config, manifest, env="pr-1", sha="a" * 40, project="shop", app_env={}
    )
    assert values == {
        "AccessRoleArn": "arn:x",
        "ImageRepository": "r",
        "SqualsEnvironment": "pr-1",
        "SqualsCommit": "a" * 40,
        "SqualsHealthPath": "/healthz",
    }


def _resource_event(stack: Any, status: str, reason: str) -> Any:
    """A resource event on moto's stack, shaped like CloudFormation's (the template's first resource)."""
    from moto.cloudformation import models

    logical, resource = next(iter(stack.template_dict["Resources"].items()))
    return models.Event(
        stack_id=stack.stack_id,
        stack_name=stack.name,
        logical_resource_id=logical,
        physical_resource_id="",
        resource_type=resource["Type"],
        resource_status=status,
        resource_status_reason=reason,
        resource_properties=None,
    )


def test_a_failed_update_rolls_back_to_the_running_version(
    aws_cloud: Cloud, repo: Repo, monkeypatch: pytest.MonkeyPatch
) -> None:
    from moto.cloudformation import models

    commit = aws_cloud.prepare(repo)
    provider = _provider(repo, aws_cloud)
    first = provider.provision("prod", commit, repo.manifest())

    def failing_update(self: Any, *args: Any, **kwargs: Any) -> None:
        self._add_stack_event("UPDATE_IN_PROGRESS", resource_status_reason="User Initiated")
        self.events.append(_resource_event(self, "UPDATE_FAILED", "Resource handler returned message: quota"))
        self._add_stack_event("UPDATE_ROLLBACK_IN_PROGRESS", "The following resource(s) failed to update")
        self.events.append(_resource_event(self, "UPDATE_COMPLETE", ""))
        self._add_stack_event("UPDATE_ROLLBACK_COMPLETE")
        self.status = "UPDATE_ROLLBACK_COMPLETE"

    monkeypatch.setattr(models.Stack, "update", failing_update)
    with pytest.raises(ProviderError) as caught:
        provider.provision("prod", commit, repo.manifest(env={"GREETING": "new"}))
    assert caught.value.one_line() == (
        "prod: updating squals-tiny-prod from infra/stack.yml: stack squals-tiny-prod ended "
        "UPDATE_ROLLBACK_COMPLETE: Inbox (AWS::SQS::Queue) UPDATE_FAILED: Resource handler returned "
        "message: quota"
    )
    health = provider.health(first)
    assert health.ok, health  # the previous version keeps serving
    assert provider.destroy(first).ok
    assert aws_cloud.stacks() == []


def test_a_stack_that_cannot_be_deleted_is_a_not_ok_outcome(
    aws_cloud: Cloud, repo: Repo, monkeypatch: pytest.MonkeyPatch
) -> None:
    from moto.cloudformation import models

    commit = aws_cloud.prepare(repo)
    provider = _provider(repo, aws_cloud)
    handle = provider.provision("pr-3", commit, repo.manifest())
    real_delete = models.CloudFormationBackend.delete_stack

    def failing_delete(self: Any, name_or_stack_id: str) -> None:
        stack = self.get_stack(name_or_stack_id)
        stack._add_stack_event("DELETE_IN_PROGRESS", resource_status_reason="User Initiated")
        stack.events.append(_resource_event(stack, "DELETE_FAILED", "The queue is in use"))
        stack._add_stack_event("DELETE_FAILED", "The following resource(s) failed to delete: [Inbox]")
        stack.status = "DELETE_FAILED"

    monkeypatch.setattr(models.CloudFormationBackend, "delete_stack", failing_delete)
    outcome = provider.destroy(handle)
    assert not outcome.ok
    assert outcome.detail.endswith(
        "ended DELETE_FAILED: Inbox (AWS::SQS::Queue) DELETE_FAILED: The queue is in use"
    )
    assert provider.health(handle).status == "down"
    assert [(o.env, o.ok) for o in provider.down()] == [("pr-3", False)]

    monkeypatch.setattr(models.CloudFormationBackend, "delete_stack", real_delete)
    assert provider.destroy(handle).ok  # once the cause is gone, destroy simply works
    assert aws_cloud.stacks() == []


def test_missing_credentials_are_one_line(
    aws_cloud: Cloud, repo: Repo, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(ProviderError, match=r"^list stacks: Unable to locate credentials$"):
        _provider(repo, aws_cloud).list()


def test_throttling_is_retried_by_botocore_then_reported(
    aws_cloud: Cloud, repo: Repo, monkeypatch: pytest.MonkeyPatch
) -> None:
    import http.server
    import threading

    seen: list[str] = []
    body = (
        b'<ErrorResponse xmlns="http://cloudformation.amazonaws.com/doc/2010-05-15/"><Error><Type>Sender'
        b"</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error><RequestId>r</RequestId>"
        b"</ErrorResponse>"
    )

    class Throttling(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            seen.append(self.path)
            self.send_response(400)
            self.send_header("Content-Type", "text/xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Throttling)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{server.server_address[1]}")
        provider = _provider(repo, aws_cloud)
        provider.max_attempts = 3
        assert provider.client(REGION).meta.config.retries == {"mode": "standard", "total_max_attempts": 3}
        with pytest.raises(ProviderError, match=r"^list stacks: Throttling: Rate exceeded$"):
            provider.list()
        assert len(seen) == 3  # the first attempt and two retries, with back-off between them
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.mark.slow
def test_the_cli_deploys_and_tears_down_an_aws_island(aws_cloud: Cloud, repo: Repo, tmp_path: Any) -> None:
    """``squals deploy``/``teardown``/``down`` as subprocesses on an aws squals file (moto behind
    ``AWS_ENDPOINT_URL``): the lifecycle drives the provider with nothing but the squals file."""
    import os

    (repo.path / "squals.yml").write_text(
        "version: 1\nname: tiny\n"
        "provider:\n  kind: aws\n  region: us-east-1\n  template: infra/stack.yml\n"
        f"  parameters: {{AppBase: '{aws_cloud.app.url}'}}\n"
        "app: {start: python3 app.py, health: /healthz, env: {GREETING: hi}}\n"
        "exit_tests:\n  - name: e2e\n"
        "    run: python3 -c \"import os, urllib.request as u; u.urlopen(os.environ['SQUALS_URL'])\"\n"
    )
    aws_cloud.prepare(repo)
    origin = tmp_path / "origin.git"
    subprocess.run(["git", "init", "-q", "--bare", str(origin)], check=True, timeout=30)
    repo.git("remote", "add", "origin", str(origin))
    squals = [sys.executable, "-m", "squals_action.cli"]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*squals, *args, "--report", "none"] if args[0] != "status" else [*squals, *args],
            cwd=repo.path,
            env=dict(os.environ),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    deployed = run("deploy", "--pr", "7", "--skip-gates")
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    assert aws_cloud.stacks() == ["squals-tiny-pr-7 CREATE_COMPLETE"]
    assert f"{aws_cloud.app.url}/stacks/squals-tiny-pr-7" in run("status").stdout
    torn = run("teardown", "--pr", "7")
    assert torn.returncode == 0, torn.stdout + torn.stderr
    assert aws_cloud.stacks() == []
    assert run("down").returncode == 0


def test_a_repository_reached_through_a_symlink_is_inside_itself(
    aws_cloud: Cloud, repo: Repo, tmp_path: Any
) -> None:
    commit = aws_cloud.prepare(repo)
    link = tmp_path / "linked"
    link.symlink_to(repo.path)
    manifest = model.Manifest(path=str(link / "squals.yml"), name="tiny", app=model.App(start="true"))
    provider = AwsProvider(link, aws_cloud.config())
    handle = provider.provision("pr-1", commit, manifest)
    assert provider.destroy(handle).ok
    assert aws_cloud.stacks() == []


def test_capabilities_follow_what_the_template_declares() -> None:
    from squals_action.providers.aws_template import Template

    def caps(parsed: dict[str, Any]) -> list[str]:
        return Template("t.yml", "", parsed).capabilities()

    assert caps({"Resources": {"Q": {"Type": "AWS::SQS::Queue"}}}) == []
    assert caps({"Resources": {"R": {"Type": "AWS::IAM::Role"}}}) == [
        "CAPABILITY_IAM",
        "CAPABILITY_NAMED_IAM",
    ]
    assert caps({"Resources": {"S": {"Type": "AWS::CloudFormation::Stack"}}}) == ["CAPABILITY_AUTO_EXPAND"]
    assert caps({"Transform": "AWS::Serverless-2016-10-31", "Resources": {}}) == [
        "CAPABILITY_IAM",
        "CAPABILITY_NAMED_IAM",
        "CAPABILITY_AUTO_EXPAND",
    ]


def test_variant_files_provision_from_the_template_of_the_file_that_declares_it(
    aws_cloud: Cloud, repo: Repo
) -> None:
    """The shop layout: ``variants/green.yml`` declares no provider (the project's template, resolved against
    ``squals.yml``'s folder); ``variants/blue.yml`` declares its own (resolved against ``variants/``), and a
    mistake in it is reported at its own file and line."""
    from squals_action.manifest import load

    aws_cloud.prepare(repo)
    (repo.path / "variants").mkdir()
    blue_template = TEMPLATE.replace('Default: ""', "Default: blue")
    (repo.path / "variants" / "blue-stack.yml").write_text(blue_template)
    (repo.path / "squals.yml").write_text(
        "version: 1\nname: tiny\napp: {start: python app.py}\n"
        "provider: {kind: aws, region: us-east-1, template: infra/stack.yml,\n"
        f'  parameters: {{AppBase: "{aws_cloud.app.url}"}}}}\n'
        "experiment:\n"
        "  variants:\n"
        "    control: {squals: squals.yml}\n"
        "    green: {squals: variants/green.yml}\n"
        "    blue: {squals: variants/blue.yml}\n"
        "  split: {control: 34, green: 33, blue: 33}\n"
        "  objective: {maximize: conversion, numerator: 'event:checkout', denominator: visitors}\n"
    )
    (repo.path / "variants" / "green.yml").write_text(
        "version: 1\nname: tiny-green\napp: {start: python app.py, workdir: ..}\n"
    )
    blue = (
        "version: 1\nname: tiny-blue\napp: {start: python app.py, workdir: ..}\n"
        "provider:\n  kind: aws\n  region: us-east-1\n  template: TEMPLATE\n"
        f'  parameters: {{AppBase: "{aws_cloud.app.url}"}}\n'
    )
    (repo.path / "variants" / "blue.yml").write_text(blue.replace("TEMPLATE", "blue-stack.yml"))
    commit = repo.commit("variants")
    manifest = load(repo.path / "squals.yml", repo.path)
    assert manifest.experiment is not None
    variants = {name: v.manifest or manifest for name, v in manifest.experiment.variants.items()}

    provider = AwsProvider(repo.path, manifest.provider)  # a fresh runner: no project known yet
    provider.wait_delay = 1
    green = provider.provision("exp-green", commit, variants["green"])
    assert green.data["stack_name"] == "squals-tiny-exp-green"  # the project's, not "tiny-green"
    blue_handle = provider.provision("exp-blue", commit, variants["blue"])
    assert sorted(aws_cloud.stacks()) == [
        "squals-tiny-exp-blue CREATE_COMPLETE",
        "squals-tiny-exp-green CREATE_COMPLETE",
    ]
    params = {
        p["ParameterKey"]: p["ParameterValue"]
        for p in aws_cloud.cfn.describe_stacks(StackName="squals-tiny-exp-blue")["Stacks"][0]["Parameters"]
    }
    assert params["Greeting"] == "blue"  # variants/blue-stack.yml, not infra/stack.yml
    provider.destroy(green)
    provider.destroy(blue_handle)

    (repo.path / "variants" / "uncommitted.yml").write_text(blue_template)  # on disk, not in the commit
    (repo.path / "variants" / "blue.yml").write_text(blue.replace("TEMPLATE", "uncommitted.yml"))
    broken = load(repo.path / "variants" / "blue.yml", repo.path)
    with pytest.raises(ProviderError) as raised:
        AwsProvider(repo.path, manifest.provider).provision("exp-blue", commit, broken)
    assert raised.value.one_line().startswith(
        f"{broken.provider.location}: provider.template 'uncommitted.yml': variants/uncommitted.yml is not a "
        f"file in commit {commit[:12]}"
    )
    assert str(broken.provider.location).endswith("variants/blue.yml:5:3")  # its provider section
