"""The action's interface as action.yml declares it: every output the code writes, and nothing more."""

from __future__ import annotations

import ast
from collections.abc import Iterator

from tests.support.action_files import ROOT, declared_outputs

PACKAGE = ROOT / "squals_action"


def _keys(node: ast.AST) -> Iterator[str]:
    """String keys of every dict literal inside ``node`` (``{"a": x} if c else {}`` gives ``a``)."""
    for sub in ast.walk(node):
        if isinstance(sub, ast.Dict):
            for key in sub.keys:
                if isinstance(key, ast.Constant) and isinstance(key.value, str):
                    yield key.value


def _is_outputs(node: ast.AST) -> bool:
    return isinstance(node, ast.Name) and node.id == "outputs"


def written_by_the_code() -> dict[str, list[str]]:
    """Output name -> where the code writes it.

    Writes are ``set_output(s)`` calls and, for the report's outputs, ``outputs=``, ``outputs[...] =``,
    ``outputs =`` and ``outputs.update(...)``.
    """
    found: dict[str, list[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Call):
                func = node.func
                called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                if called == "set_outputs" and node.args:
                    names += _keys(node.args[0])
                elif called == "set_output" and node.args and isinstance(node.args[0], ast.Constant):
                    names.append(str(node.args[0].value))
                elif called == "update" and isinstance(func, ast.Attribute) and _is_outputs(func.value):
                    names += (k for arg in node.args for k in _keys(arg))
                names += (k for kw in node.keywords if kw.arg == "outputs" for k in _keys(kw.value))
            elif isinstance(node, ast.Assign | ast.AnnAssign):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for target in targets:
                    if _is_outputs(target) and node.value is not None:
                        names += _keys(node.value)
                    if isinstance(target, ast.Subscript) and _is_outputs(target.value):
                        index = target.slice
                        if isinstance(index, ast.Constant) and isinstance(index.value, str):
                            names.append(index.value)
            where = f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', 0)}"
            for name in names:
                found.setdefault(name, []).append(where)
    return found


def test_every_output_written_is_declared_and_every_declared_one_is_written() -> None:
    written = written_by_the_code()
    undeclared = {name: where for name, where in written.items() if name not in declared_outputs()}
    assert not undeclared, f"outputs written but not declared in action.yml: {undeclared}"
    assert declared_outputs() - set(written) == set(), "declared in action.yml but never written"
    # the collector sees each kind of write (a collector that found nothing would pass vacuously)
    assert {"status", "intent", "environment-url", "commit", "experiment", "winner"} <= set(written)
