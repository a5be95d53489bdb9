"""How an app starts and where it answers, guessed from the files of its repository (for ``squals init``).

Only what a repository states is used: a ``Procfile``'s web process, Django's ``manage.py``, a module that
makes a Flask, FastAPI or Starlette app, ``[project.scripts]`` in ``pyproject.toml``, ``scripts.start`` in
``package.json``. Each guess says where it came from, so ``squals init`` can show it and the user can correct
it. The app must listen on ``$PORT`` (the providers set it), so framework commands are written with it.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from squals_action.own_files import OWN_DIR

#: Folders never searched for sources: environments, dependencies, build output, tests.
SKIP_DIRS = frozenset(
    {
        ".git",
        ".venv",
        "venv",
        "env",
        "node_modules",
        "__pycache__",
        "build",
        "dist",
        "site-packages",
        "tests",
        "test",
        ".tox",
        ".nox",
        OWN_DIR,
    }
)
#: Health paths apps commonly serve, best first; the first one a source file routes is the app's.
HEALTH_PATHS = ("/healthz", "/health", "/livez", "/readyz", "/ping", "/status")
#: Files larger than this are not read (a vendored bundle, generated code).
MAX_SOURCE_BYTES = 512 * 1024
_APP_OBJECT = re.compile(r"^(?P<var>[A-Za-z_]\w*)\s*(?::[^=]+)?=\s*(?P<kind>FastAPI|Flask|Starlette)\(", re.M)


@dataclass(frozen=True)
class AppGuess:
    """What ``squals init`` writes under ``app:``; ``start`` is None when nothing said how the app starts."""

    name: str
    start: str | None
    health: str
    source: str  # where the start command came from, for the user ("FastAPI app in app/main.py")
    language: str  # python, node or unknown
    package: str | None = None  # the Python package or module holding the app (for a compile gate)


def detect(root: Path) -> AppGuess:
    """The best guess for the repository at ``root``."""
    name = _project_name(root)
    health = _health_path(root)
    for guess in (_procfile, _django, _python_app, _pyproject_script, _node):
        found = guess(root)
        if found is not None:
            start, source, language, package = found
            return AppGuess(name, start, health, source, language, package)
    return AppGuess(name, None, health, "nothing found", "unknown")


# -- the name -------------------------------------------------------------------------------------------


def _project_name(root: Path) -> str:
    declared = _table(_pyproject(root), "project").get("name") or _package_json(root).get("name")
    raw = str(declared) if declared else root.resolve().name
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "-", raw.split("/")[-1]).strip("-._")[:63]
    return cleaned or "app"


def _table(data: object, key: str) -> dict[str, Any]:
    """``data[key]`` when both are tables (TOML or JSON), else an empty one: a clue missing is no error."""
    value = data.get(key) if isinstance(data, dict) else None
    return value if isinstance(value, dict) else {}


def _pyproject(root: Path) -> dict[str, Any]:
    path = root / "pyproject.toml"
    if not path.is_file():
        return {}
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, OSError):
        return {}  # a broken pyproject is the app's own business; other clues still count


def _package_json(root: Path) -> dict[str, Any]:
    path = root / "package.json"
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, OSError):
        return {}
    return data if isinstance(data, dict) else {}


def _requirements_text(root: Path) -> str:
    """The declared Python dependencies as one lower-case text (requirements files and pyproject)."""
    parts = [str(_table(_pyproject(root), "project").get("dependencies", ""))]
    for path in sorted(root.glob("requirements*.txt")):
        try:
            parts.append(path.read_text(encoding="utf-8", errors="replace"))
        except OSError:
            continue
    return "\n".join(parts).lower()


def _declares(root: Path, package: str) -> bool:
    pattern = rf"(?m)(^|[\s'\"\[,]){re.escape(package)}([\s<>=~!;\[,'\"]|$)"
    return re.search(pattern, _requirements_text(root)) is not None


# -- the sources ----------------------------------------------------------------------------------------


def _sources(root: Path, suffixes: tuple[str, ...]) -> Iterator[Path]:
    """Source files under ``root``, shallowest first, skipping environments, dependencies and tests."""
    level = [root]
    while level:
        below: list[Path] = []
        for folder in level:
            try:
                entries = sorted(folder.iterdir())
            except OSError:
                continue
            for entry in entries:
                if entry.is_dir() and not entry.is_symlink():
                    if entry.name not in SKIP_DIRS and not entry.name.startswith("."):
                        below.append(entry)
                elif entry.suffix in suffixes and entry.is_file() and _small(entry):
                    yield entry
        level = below


def _small(path: Path) -> bool:
    return path.stat().st_size <= MAX_SOURCE_BYTES


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _health_path(root: Path) -> str:
    routed: set[str] = set()
    for path in _sources(root, (".py", ".js", ".mjs", ".cjs", ".ts")):
        text = _read(path)
        routed.update(p for p in HEALTH_PATHS if f'"{p}"' in text or f"'{p}'" in text)
    return next((p for p in HEALTH_PATHS if p in routed), "/")


def _module_name(root: Path, path: Path) -> str:
    """``app/main.py``: ``app.main``; ``pkg/__init__.py``: ``pkg``; a ``src/`` layout's prefix is dropped."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts and parts[0] == "src":
        parts = parts[1:]
    if parts and parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


# -- the guesses, best first: each returns (start, source, language, package) ------------------------------

_Found = tuple[str, str, str, str | None]


def _procfile(root: Path) -> _Found | None:
    for line in _read(root / "Procfile").splitlines():
        key, _, command = line.partition(":")
        if key.strip() == "web" and command.strip():
            return command.strip(), "the web process of Procfile", "python", None
    return None


def _django(root: Path) -> _Found | None:
    if not (root / "manage.py").is_file():
        return None
    for path in _sources(root, (".py",)):
        if path.name == "wsgi.py" and "get_wsgi_application" in _read(path):
            module = _module_name(root, path)
            package = module.rsplit(".", 1)[0]
            if _declares(root, "gunicorn"):
                return (
                    f"gunicorn --bind 0.0.0.0:$PORT {module}",
                    f"Django project {package} (gunicorn)",
                    "python",
                    package,
                )
            return (
                "python3 manage.py runserver 0.0.0.0:$PORT --noreload",
                f"Django project {package}",
                "python",
                package,
            )
    return None


def _python_app(root: Path) -> _Found | None:
    for path in _sources(root, (".py",)):
        found = _APP_OBJECT.search(_read(path))
        if found is None:
            continue
        target = f"{_module_name(root, path)}:{found['var']}"
        package = _module_name(root, path).split(".")[0]
        where = f"{found['kind']} app in {path.relative_to(root).as_posix()}"
        if found["kind"] == "Flask":
            if _declares(root, "gunicorn"):
                return f"gunicorn --bind 0.0.0.0:$PORT {target}", where, "python", package
            return f"flask --app {target} run --host 0.0.0.0 --port $PORT", where, "python", package
        return f"uvicorn {target} --host 0.0.0.0 --port $PORT", where, "python", package
    return None


def _pyproject_script(root: Path) -> _Found | None:
    scripts = _table(_table(_pyproject(root), "project"), "scripts")
    if scripts:
        name = sorted(scripts)[0]
        return str(name), f"the script {name} of pyproject.toml", "python", None
    return None


def _node(root: Path) -> _Found | None:
    data = _package_json(root)
    if not data:
        return None
    scripts = data.get("scripts")
    if isinstance(scripts, dict) and isinstance(scripts.get("start"), str):
        return "npm start", f"package.json's scripts.start: {scripts['start']}", "node", None
    main = data.get("main")
    if isinstance(main, str) and (root / main).is_file():
        return f"node {main}", "main of package.json", "node", None
    return None
