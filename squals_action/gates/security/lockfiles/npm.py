"""``package-lock.json`` (and ``npm-shrinkwrap.json``): lockfile v2/v3 ``packages``, v1 ``dependencies``.

In v2/v3 every installed package is a key of ``packages`` named by its install path:
``node_modules/a``, nested ``node_modules/a/node_modules/b``, scoped ``node_modules/@s/c``, and under
workspaces ``packages/app/node_modules/d``. The package name is what follows the last ``node_modules/``
(or the entry's ``name`` for aliases). Workspace sources (``packages/app``) and their ``link`` entries are
the project's own code, not registry releases, so they are not checked.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from squals_action.gates.security.interface import Dependency, LockfileError, ParsedFile
from squals_action.gates.security.lockfiles.jsonlines import key_lines

_NM = "node_modules/"


def package_name(install_path: str) -> str | None:
    """``a/node_modules/@s/b`` -> ``@s/b``; ``None`` for paths outside any ``node_modules``."""
    index = install_path.rfind(_NM)
    if index == -1 or (index > 0 and install_path[index - 1] != "/"):
        return None
    return install_path[index + len(_NM) :] or None


def parse(text: str, path: str) -> ParsedFile:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise LockfileError(path, exc.lineno, f"not valid JSON ({exc.msg})") from exc
    if not isinstance(data, dict):
        raise LockfileError(path, 1, "expected a JSON object")
    version = data.get("lockfileVersion", 1)
    packages = data.get("packages")
    if isinstance(packages, dict) and version in (2, 3):
        return ParsedFile(path, tuple(_from_packages(packages, key_lines(text, "packages"), path)))
    if version in (1, 2) and isinstance(data.get("dependencies"), dict):
        lines = _all_object_key_lines(text)
        return ParsedFile(path, tuple(_from_v1(data["dependencies"], lines, path)))
    if not packages and not data.get("dependencies"):
        return ParsedFile(path, ())
    raise LockfileError(path, 1, f"unsupported lockfileVersion {version!r} (expected 1, 2 or 3)")


def _from_packages(packages: Mapping[str, object], lines: Mapping[str, int], path: str) -> list[Dependency]:
    deps: list[Dependency] = []
    for install_path, entry in packages.items():
        line = lines.get(install_path, 1)
        if not isinstance(entry, dict):
            raise LockfileError(path, line, f"expected an object for {install_path!r}")
        if not install_path or entry.get("link"):
            continue  # the root project, or a symlink to a workspace
        name = package_name(install_path)
        if name is None:
            continue  # a workspace's own source directory
        if isinstance(entry.get("name"), str):
            name = entry["name"]  # an alias ("x": "npm:real-name@1") installs real-name under x
        resolved = entry.get("resolved")
        if isinstance(resolved, str) and resolved.startswith(("file:", "git+", "git:")):
            continue
        version = entry.get("version")
        if not isinstance(version, str):
            if entry.get("extraneous") or entry.get("inBundle"):
                continue
            raise LockfileError(path, line, f"package {install_path!r} has no version")
        deps.append(Dependency("npm", str(name), version, path, line, dev=bool(entry.get("dev"))))
    return deps


def _all_object_key_lines(text: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if stripped.startswith('"') and stripped.endswith("{"):
            key = stripped.split('"')[1]
            out.setdefault(key, number)
    return out


def _from_v1(dependencies: Mapping[str, object], lines: Mapping[str, int], path: str) -> list[Dependency]:
    deps: list[Dependency] = []
    stack = [dependencies]
    while stack:
        level = stack.pop()
        for name, entry in level.items():
            if not isinstance(entry, dict):
                continue
            version = entry.get("version")
            if isinstance(version, str) and not version.startswith(("file:", "git", "http")):
                line = lines.get(name, 1)
                deps.append(Dependency("npm", name, version, path, line, dev=bool(entry.get("dev"))))
            nested = entry.get("dependencies")
            if isinstance(nested, dict):
                stack.append(nested)
    return deps
