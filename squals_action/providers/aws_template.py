"""The ``aws`` provider's offline half: stack names, the template at a commit, cfn-lint, stack parameters.

Everything here runs before the first AWS call, so a bad template or a missing parameter costs no API call
and names the file and line. cfn-lint is imported inside :func:`lint_template` (it takes seconds to load).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from squals_action.gitcmd import run_git
from squals_action.manifest import model
from squals_action.manifest.paths import reference_problem
from squals_action.manifest.problems import in_commit, located
from squals_action.providers.interface import ProviderError

#: CloudFormation's limit for an inline ``TemplateBody`` (bigger templates need S3, not supported here).
MAX_TEMPLATE_BYTES = 51_200
#: CloudFormation's limit for one parameter value.
MAX_PARAMETER_BYTES = 4096
STACK_NAME_MAX = 128
URL_OUTPUT = "Url"
TARGET_GROUP_OUTPUT = "TargetGroupArn"
LISTENER_OUTPUT = "ListenerArn"
#: Why squals needs each output it asks a template for (said in the error when one is missing).
OUTPUT_USES = {
    URL_OUTPUT: "squals reads the environment's URL from it",
    TARGET_GROUP_OUTPUT: "the front door forwards to it",
    LISTENER_OUTPUT: "squals routes traffic through it",
}


def stack_name(project: str, env: str) -> str:
    """``squals-<project>-<env>`` within CloudFormation's rules (``[A-Za-z][-A-Za-z0-9]*``, <= 128).

    When anything had to change (a ``.`` or ``_`` in a name, too long) a short hash of the original is
    appended, so ``pr.1`` and ``pr-1`` never share a stack.
    """
    raw = f"squals-{project}-{env}"
    clean = re.sub(r"-{2,}", "-", re.sub(r"[^A-Za-z0-9-]", "-", raw)).rstrip("-")
    if clean == raw and len(raw) <= STACK_NAME_MAX:
        return raw
    suffix = hashlib.sha256(raw.encode()).hexdigest()[:8]
    return f"{clean[: STACK_NAME_MAX - len(suffix) - 1]}-{suffix}"


@dataclass(frozen=True)
class Template:
    """A template as read from a commit: ``display`` is its repository path and ``commit`` that commit, as
    every message names them (:attr:`shown`)."""

    display: str
    body: str
    parsed: Mapping[str, Any]
    commit: str = ""

    @property
    def shown(self) -> str:
        """``infra/stack.yml in commit 1a2b3c4d5e6f``."""
        return in_commit(self.display, self.commit)

    @property
    def parameters(self) -> Mapping[str, Any]:
        declared = self.parsed.get("Parameters") or {}
        return declared if isinstance(declared, Mapping) else {}

    def capabilities(self) -> list[str]:
        """The acknowledgements CloudFormation demands for what the template declares (IAM, macros)."""
        resources = self.parsed.get("Resources") or {}
        types = (
            {str(r.get("Type", "")) for r in resources.values() if isinstance(r, Mapping)}
            if isinstance(resources, Mapping)
            else set()
        )
        caps: list[str] = []
        if any(t.startswith("AWS::IAM::") for t in types):
            caps += ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"]
        if self.parsed.get("Transform"):
            # A macro (SAM and the like) may expand into IAM resources the template does not show.
            caps = ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"]
        elif "AWS::CloudFormation::Stack" in types:
            caps.append("CAPABILITY_AUTO_EXPAND")
        return caps


def squals_dir(manifest: model.Manifest) -> Path:
    """The squals file's folder: ``base_dir`` when the loader set it, else the file's own folder."""
    if manifest.base_dir not in {"", "."}:
        return Path(manifest.base_dir)
    return Path(manifest.path).absolute().parent


def island_outputs(config: model.Provider) -> tuple[str, ...]:
    """The outputs an island template must declare: ``Url``, and ``TargetGroupArn`` behind a front door."""
    return (URL_OUTPUT, TARGET_GROUP_OUTPUT) if config.front_door is not None else (URL_OUTPUT,)


def read_template(
    config: model.Provider, manifest: model.Manifest, top: Path, sha: str, *, region: str
) -> Template:
    """``provider.template`` as it is in commit ``sha``; it must stay inside the repository."""
    if not config.template:
        raise ProviderError(
            f"{config.location}: provider.template is missing: the aws provider needs a CloudFormation "
            "template (e.g. template: infra/stack.yml)"
        )
    return read_template_at(
        config.template,
        f"{config.location}: provider.template",
        manifest,
        top,
        sha,
        region=region,
        outputs=island_outputs(config),
        base=Path(config.base_dir) if config.base_dir else None,
    )


def read_template_at(
    ref: str,
    where: str,
    manifest: model.Manifest,
    top: Path,
    sha: str,
    *,
    region: str,
    outputs: tuple[str, ...],
    base: Path | None = None,
) -> Template:
    """The template ``ref`` (relative to ``base``, default the squals file's folder) as it is in commit
    ``sha``, linted and declaring ``outputs``; ``where`` (``file:line:col: key``) starts the messages about
    the reference. Messages name the commit as the squals file's model does (``1a2b3c4d5e6f+dirty`` for a
    dirty deploy's snapshot), else by ``sha``."""
    # Both sides resolved, so a repository reached through a symlinked folder is still "inside".
    base = Path(os.path.realpath(base or squals_dir(manifest)))
    # the squals file's own repository: ``top``, or the checkout of a commit the lifecycle loaded it from
    root = Path(os.path.realpath(manifest.repo_root if manifest.repo_root not in ("", ".") else top))
    problem = reference_problem(base, root, ref, must_exist=False)
    if problem is not None:
        raise ProviderError(f"{where}: {problem}")
    relative = Path(os.path.normpath(os.path.join(base, ref))).relative_to(root).as_posix()
    commit = manifest.commit or sha[:12]
    try:
        raw = run_git(top, "cat-file", "blob", f"{sha}:{relative}", error=ProviderError)
    except ProviderError as exc:
        raise ProviderError(f"{where} {ref!r}: {relative} is not a file in commit {commit}") from exc
    if len(raw) > MAX_TEMPLATE_BYTES:
        raise ProviderError(
            f"{in_commit(relative, commit)}: the template is {len(raw)} bytes; CloudFormation takes at most "
            f"{MAX_TEMPLATE_BYTES} bytes inline"
        )
    try:
        body = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProviderError(
            f"{in_commit(relative, commit)}: expected UTF-8 text ({exc.reason} at byte {exc.start})"
        ) from exc
    return Template(relative, body, lint_template(relative, body, region, outputs, commit=commit), commit)


#: Templates that passed, by (sha256 of the text, region): a template deployed to several environments
#: is linted once per process (cfn-lint takes a second or more per template).
_LINTED: dict[tuple[str, str], Mapping[str, Any]] = {}


#: cfn-lint runners by region. ``cfnlint.api.lint`` builds a new ``Runner`` (and loads every rule, about a
#: second) for each template; the runner's ``validate_template`` is the same check, kept for the next one.
_RUNNERS: dict[str, Any] = {}


def _runner(region: str) -> Any:
    if region not in _RUNNERS:
        from cfnlint.config import ConfigMixIn
        from cfnlint.runner import Runner

        _RUNNERS[region] = Runner(ConfigMixIn(regions=[region]))
    return _RUNNERS[region]


def lint_template(
    display: str, body: str, region: str, outputs: tuple[str, ...] = (URL_OUTPUT,), *, commit: str = ""
) -> Mapping[str, Any]:
    """Parse ``body`` and run cfn-lint's errors (E rules) for ``region``; return the parsed template.

    The first error becomes a one-line :class:`ProviderError` ``file:line:col in commit c: cfn-lint Exxxx:
    message`` (with a count of the others); warnings and informational findings do not stop a deploy. A
    template that does not declare every one of ``outputs`` is refused too.
    """
    key = (hashlib.sha256(body.encode()).hexdigest(), region)
    if key not in _LINTED:
        _LINTED[key] = _lint(display, body, region, commit)
    _check_outputs(display, _LINTED[key], outputs, commit)
    return _LINTED[key]


def _lint(display: str, body: str, region: str, commit: str) -> Mapping[str, Any]:
    from cfnlint.decode.decode import decode_str

    parsed, parse_errors = decode_str(body)
    matches = list(parse_errors) if parse_errors else list(_runner(region).validate_template(parsed))
    errors = [m for m in matches if str(m.rule.id).startswith("E")]
    if errors:
        errors.sort(key=lambda m: (int(m.linenumber or 0), int(m.columnnumber or 0)))
        first = errors[0]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        message = " ".join(str(first.message).split())
        where = located(display, int(first.linenumber), int(first.columnnumber), commit)
        raise ProviderError(f"{where}: cfn-lint {first.rule.id}: {message}{more}")
    if not isinstance(parsed, Mapping):
        where = located(display, 1, 1, commit)
        raise ProviderError(f"{where}: expected a CloudFormation template (a mapping)")
    return parsed


def _check_outputs(display: str, parsed: Mapping[str, Any], wanted: tuple[str, ...], commit: str) -> None:
    outputs = parsed.get("Outputs") or {}
    for name in wanted:
        if not isinstance(outputs, Mapping) or name not in outputs:
            mark = getattr(outputs, "start_mark", None)  # cfn-lint's nodes know where they stand
            line, col = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
            raise ProviderError(
                f"{located(display, line, col, commit)}: expected an output named {name!r}: "
                f"{OUTPUT_USES[name]}"
            )


#: The listener rule priority squals fills in (:mod:`~squals_action.providers.aws_priority` chooses it).
RULE_PRIORITY = "SqualsRulePriority"
#: ``pr-N`` up to this takes ``N``.
PR_MAX = 40_000
#: The numbers squals gives every other island.
POOL = range(PR_MAX + 1, 50_001)
_PR = re.compile(r"^pr-([1-9][0-9]*)$")


def pull_request_number(env: str) -> int | None:
    """``N`` of ``pr-N`` when it is a rule priority of its own (N <= :data:`PR_MAX`), else ``None``."""
    found = _PR.match(env)
    return int(found.group(1)) if found and int(found.group(1)) <= PR_MAX else None


def first_candidate(env: str) -> int:
    """Where ``env`` starts looking in :data:`POOL`: a hash of its name, the same on every run."""
    return POOL.start + int(hashlib.sha256(env.encode()).hexdigest()[:8], 16) % len(POOL)


def unclaimed_priority(env: str) -> int:
    """The rule priority ``env`` gets when nothing holds it yet: what a check shows without asking AWS."""
    number = pull_request_number(env)
    return number if number is not None else first_candidate(env)


def override_parameters(manifest: model.Manifest, env: str) -> Mapping[str, str]:
    """``provider_parameters`` of the ``environments:`` overrides matching ``env`` (exact or ``pr-*``),
    matched the same way as :meth:`model.Manifest.app_env_for`."""
    merged: dict[str, str] = {}
    for pattern, override in manifest.environments.items():
        if pattern == env or (pattern.endswith("*") and env.startswith(pattern[:-1])):
            merged.update(override.provider_parameters)
    return merged


def stack_parameters(
    template: Template,
    config: model.Provider,
    manifest: model.Manifest,
    *,
    env: str,
    sha: str,
    project: str,
    app_env: Mapping[str, str],
    shared: Mapping[str, str] = model.EMPTY,
    rule_priority: int | None = None,
) -> dict[str, str]:
    """The parameter values for one environment's stack.

    ``provider.parameters``, then the environment's override, then the ``Squals*`` values for the
    parameters the template declares (``shared``: the ``SqualsShared<Name><Output>`` values;
    ``rule_priority``: the one chosen on AWS, else :func:`unclaimed_priority`). A value for a parameter the
    template does not declare, or a declared parameter without default and without value, is an error
    naming the squals file.
    """
    values = {**config.parameters, **override_parameters(manifest, env)}
    squals = {
        "SqualsProject": project,
        "SqualsEnvironment": env,
        "SqualsCommit": sha,
        "SqualsHealthPath": manifest.app.health,
        "SqualsAppEnv": json.dumps(dict(app_env), sort_keys=True, separators=(",", ":")),
        RULE_PRIORITY: str(rule_priority if rule_priority is not None else unclaimed_priority(env)),
        **shared,
    }
    return complete_parameters(
        template, values, squals, where=f"{config.location}: provider parameter", manifest=manifest
    )


def complete_parameters(
    template: Template,
    given: Mapping[str, str],
    squals: Mapping[str, str],
    *,
    where: str,
    manifest: model.Manifest,
    section: str = "provider.parameters",
) -> dict[str, str]:
    """``given`` plus the ``squals`` values of the parameters the template declares, plus the defaults.

    A value for a parameter the template does not declare (``where`` names it), or a declared parameter
    without default and without value (``section`` of the squals file would give it), is an error.
    """
    declared = template.parameters
    values = dict(given)
    for key, value in squals.items():
        if key in declared:
            values[key] = value
    unknown = sorted(set(values) - set(declared))
    if unknown:
        names = ", ".join(sorted(declared)) or "none"
        raise ProviderError(
            f"{where} {unknown[0]!r} is not declared by {template.shown} (it declares: {names})"
        )
    missing = [
        name
        for name, spec in declared.items()
        if name not in values and not (isinstance(spec, Mapping) and "Default" in spec)
    ]
    if missing:
        raise ProviderError(
            f"{template.shown}: parameter {missing[0]!r} has no Default and no value: set it under "
            f"{section} in {manifest.shown} or declare it as one squals fills in "
            f"({', '.join(squals)})"
        )
    for name, spec in declared.items():
        if name not in values and isinstance(spec, Mapping):
            # Passed explicitly (as CloudFormation would apply it), so that an unchanged stack is a
            # no-op update and the stack shows every value it runs with.
            default = spec["Default"]
            values[name] = str(default).lower() if isinstance(default, bool) else str(default)
    for name, value in values.items():
        if len(value.encode()) > MAX_PARAMETER_BYTES:
            raise ProviderError(
                f"{template.shown}: the value of parameter {name!r} is {len(value.encode())} bytes; "
                f"CloudFormation takes at most {MAX_PARAMETER_BYTES}"
            )
    return values


def digest(template: Template, parameters: Mapping[str, str], tags: Mapping[str, str]) -> str:
    """A short fingerprint of what a provision asks for: equal inputs give equal stacks (a no-op update)."""
    blob = json.dumps(
        {"template": template.body, "parameters": dict(parameters), "tags": dict(tags)}, sort_keys=True
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
