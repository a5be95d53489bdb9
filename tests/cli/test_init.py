"""`squals init` on three real app layouts (tests/fixtures/apps), its detection, its refusals, and the wheel
shipping the workflow it copies."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from squals_action.onboarding import InitOptions, init
from squals_action.onboarding.detect import detect
from squals_action.onboarding.scaffold import InitError, user_parameters
from tests.cli.test_cli import run_squals

REPO = Path(__file__).resolve().parents[2]
APPS = REPO / "tests" / "fixtures" / "apps"
WORKFLOW = REPO / "examples" / "workflows" / "squals.yml"
AWS_EXAMPLE = REPO / "examples" / "shop-aws" / "infra"


def app_repo(tmp_path: Path, name: str) -> Path:
    """A git repository holding a copy of the fixture app ``name``."""
    root = tmp_path / name
    shutil.copytree(APPS / name, root)
    subprocess.run(["git", "init", "-q", str(root)], check=True, timeout=30)
    return root


@pytest.mark.parametrize(
    ("app", "start"),
    [
        ("flask-js-example", "flask --app js_example:app run --host 0.0.0.0 --port $PORT"),
        ("fastapi-bigger-app", "uvicorn app.main:app --host 0.0.0.0 --port $PORT"),
        ("express-generator-app", "npm start"),
    ],
)
def test_init_on_real_apps_writes_files_that_validate(tmp_path: Path, app: str, start: str) -> None:
    root = app_repo(tmp_path, app)

    done = run_squals("init", "--yes", cwd=root)

    assert done.returncode == 0, done.stderr
    assert f"  start: {start} (from " in done.stdout
    assert "  health: /\n" in done.stdout
    lines = done.stdout.splitlines()
    assert lines[-3] == "next:"
    assert lines[-2].startswith("  squals deploy --pr 1 ")
    assert lines[-1] == (
        "  git add squals.yml .github/workflows/squals.yml && git commit -m 'Deliver with squals' && git push"
    )
    assert (root / ".github/workflows/squals.yml").read_bytes() == WORKFLOW.read_bytes()
    checked = run_squals("validate", cwd=root)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stderr.strip() == "squals: 1 squals file valid"


def test_init_never_overwrites_without_force(tmp_path: Path) -> None:
    root = app_repo(tmp_path, "fastapi-bigger-app")
    (root / ".github/workflows").mkdir(parents=True)
    (root / ".github/workflows/squals.yml").write_text("mine\n")

    refused = run_squals("init", "--yes", cwd=root)

    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines() == [
        "squals: error: squals init: .github/workflows/squals.yml exists; not overwritten "
        "(use --force to replace it)"
    ]
    assert not (root / "squals.yml").exists()  # nothing half-written
    assert (root / ".github/workflows/squals.yml").read_text() == "mine\n"

    forced = run_squals("init", "--yes", "--force", cwd=root)

    assert forced.returncode == 0, forced.stderr
    assert (root / ".github/workflows/squals.yml").read_bytes() == WORKFLOW.read_bytes()


def test_nothing_detected_asks_for_the_start_command(tmp_path: Path) -> None:
    root = tmp_path / "bare"
    root.mkdir()
    (root / "README.md").write_text("nothing to run\n")

    refused = run_squals("init", "--yes", cwd=root)

    assert refused.returncode == 1
    assert "could not tell how the app starts" in refused.stderr
    assert "pass --start COMMAND" in refused.stderr
    assert list(root.iterdir()) == [root / "README.md"]

    given = run_squals("init", "--yes", "--start", "./serve --port $PORT", "--health", "/up", cwd=root)

    assert given.returncode == 0, given.stderr
    assert 'start: "./serve --port $PORT"' in (root / "squals.yml").read_text()
    assert 'health: "/up"' in (root / "squals.yml").read_text()


def test_on_a_terminal_it_asks_with_the_detected_values_as_defaults(tmp_path: Path) -> None:
    root = app_repo(tmp_path, "express-generator-app")
    asked: list[tuple[str, str | None]] = []
    answers = iter(["", "/ping"])  # keep the start command, change the health path

    def ask(question: str, default: str | None) -> str:
        asked.append((question, default))
        answer = next(answers)
        return answer or (default or "")

    code = init(InitOptions(root=root), io.StringIO(), ask)

    assert code == 0
    assert [d for _, d in asked] == ["npm start", "/"]
    text = (root / "squals.yml").read_text()
    assert 'start: "npm start"' in text and 'health: "/ping"' in text


def test_a_bad_health_path_is_one_line(tmp_path: Path) -> None:
    root = app_repo(tmp_path, "express-generator-app")
    with pytest.raises(InitError, match=r"health path 'up': expected a URL path starting with /"):
        init(InitOptions(root=root, health="up"), io.StringIO(), None)


# -- detection on small layouts of the other common shapes ------------------------------------------------


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_django_with_gunicorn(tmp_path: Path) -> None:
    root = write(
        tmp_path,
        {
            "manage.py": "import django\n",
            "mysite/wsgi.py": "from django.core.wsgi import get_wsgi_application\n"
            "application = get_wsgi_application()\n",
            "mysite/urls.py": "urlpatterns = [path('healthz', views.ok)]\nHEALTH = '/healthz'\n",
            "requirements.txt": "Django==5.0.6\ngunicorn==22.0.0\n",
        },
    )
    guess = detect(root)
    assert (guess.start, guess.health, guess.package) == (
        "gunicorn --bind 0.0.0.0:$PORT mysite.wsgi",
        "/healthz",
        "mysite",
    )


def test_django_without_gunicorn_and_flask_with_gunicorn_in_a_src_layout(tmp_path: Path) -> None:
    django = write(
        tmp_path / "d",
        {
            "manage.py": "",
            "site/wsgi.py": "application = get_wsgi_application()\n",
        },
    )
    assert detect(django).start == "python3 manage.py runserver 0.0.0.0:$PORT --noreload"
    flask = write(
        tmp_path / "f",
        {
            "pyproject.toml": '[project]\nname = "shop"\ndependencies = ["flask>=3", "gunicorn"]\n',
            "src/shop/web.py": 'from flask import Flask\nserver = Flask(__name__)\n@server.get("/health")\n',
        },
    )
    guess = detect(flask)
    assert (guess.name, guess.start, guess.health) == (
        "shop",
        "gunicorn --bind 0.0.0.0:$PORT shop.web:server",
        "/health",
    )


def test_procfile_then_pyproject_scripts_then_package_json_main(tmp_path: Path) -> None:
    procfile = write(tmp_path / "p", {"Procfile": "release: migrate\nweb: gunicorn app:app -b :$PORT\n"})
    assert detect(procfile).start == "gunicorn app:app -b :$PORT"
    scripts = write(
        tmp_path / "s",
        {
            "pyproject.toml": '[project]\nname = "svc"\n[project.scripts]\nsvc-serve = "svc.main:run"\n',
        },
    )
    assert detect(scripts).start == "svc-serve"
    node = write(
        tmp_path / "n",
        {
            "package.json": '{"name": "@acme/api", "main": "server.js"}',
            "server.js": "app.get('/healthz', ok)\n",
        },
    )
    guess = detect(node)
    assert (guess.name, guess.start, guess.health) == ("api", "node server.js", "/healthz")


def test_dependencies_and_tests_are_not_searched(tmp_path: Path) -> None:
    root = write(
        tmp_path,
        {
            ".venv/lib/site.py": "app = FastAPI()\n",
            "node_modules/x/index.py": "app = Flask(__name__)\n",
            "tests/test_app.py": "app = FastAPI()\n",
        },
    )
    assert detect(root).start is None


# -- AWS templates -----------------------------------------------------------------------------------------


def test_provider_aws_copies_the_example_templates(tmp_path: Path) -> None:
    root = app_repo(tmp_path, "fastapi-bigger-app")

    done = run_squals("init", "--yes", "--provider", "aws", cwd=root)

    assert done.returncode == 0, done.stdout + done.stderr
    for name in ("front-door.yml", "island.yml"):
        assert (root / "infra" / name).read_bytes() == (AWS_EXAMPLE / name).read_bytes()
    text = (root / "squals.yml").read_text()
    assert "kind: aws" in text and "template: infra/island.yml" in text
    for name in user_parameters((AWS_EXAMPLE / "front-door.yml").read_bytes()):
        assert f"{name}: CHANGE-ME" in text
    assert run_squals("validate", cwd=root).returncode == 0


def test_user_parameters_skip_squals_own_and_defaults() -> None:
    template = (
        b"Parameters:\n  SqualsEnvironment: {Type: String}\n  VpcId: {Type: String}\n"
        b"  Size: {Type: String, Default: small}\nResources:\n  X: {Type: A, Properties: {Y: !Ref VpcId}}\n"
    )
    assert user_parameters(template) == ["VpcId"]


# -- the wheel --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_wheel_ships_the_workflow(tmp_path: Path) -> None:
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--wheel-dir",
            str(tmp_path),
            str(REPO),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    [wheel] = tmp_path.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        assert archive.read("squals_action/examples/workflows/squals.yml") == WORKFLOW.read_bytes()
        for name in ("front-door.yml", "island.yml"):
            shipped = archive.read(f"squals_action/examples/shop-aws/infra/{name}")
            assert shipped == (AWS_EXAMPLE / name).read_bytes()
    # Installed (not a checkout): `squals demo` finds the example the wheel ships, from any directory.
    site = tmp_path / "site"
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site), str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert installed.returncode == 0, installed.stderr
    found = subprocess.run(
        [sys.executable, "-c", "from squals_action.demo import find_example; print(find_example(None))"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(site)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert found.stdout.strip() == str(site / "squals_action" / "examples" / "shop"), found.stderr
