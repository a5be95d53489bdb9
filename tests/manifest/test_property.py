"""Property tests: any bytes, random YAML and mutated valid files end in a model or located problems.

Never another exception, never a hang: the size, depth and alias limits keep every input cheap.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from squals_action.manifest.model import Manifest
from squals_action.manifest.schema import load_schema
from squals_action.manifest.validate import validate_bytes
from tests.support.corpus import case_dirs

SETTINGS = settings(
    max_examples=120,
    deadline=timedelta(seconds=10),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _schema_keys() -> list[str]:
    keys: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for name, sub in node.get("properties", {}).items():
                keys.add(name)
                walk(sub)
            for sub in node.values():
                walk(sub)
        elif isinstance(node, list):
            for sub in node:
                walk(sub)

    walk(load_schema())
    return sorted(keys)


KEYS = _schema_keys()
VALID_TEXTS = [
    path.read_text(encoding="utf-8-sig")
    for case in case_dirs("valid")
    for path in sorted(case.rglob("*.yml"))
]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**6), max_value=10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(
        [
            "90s",
            "15m",
            "0s",
            "7d",
            "10%",
            "100%",
            "control",
            "event:checkout",
            "error_rate",
            "local",
            "aws",
            "../x.yml",
            "/etc/passwd",
            "squals.yml",
            "python app.py",
            "1h30m",
        ]
    ),
    st.text(max_size=12),
)
keys = st.one_of(st.sampled_from(KEYS), st.text(min_size=1, max_size=8))
values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(keys, children, max_size=5),
    ),
    max_leaves=30,
)
documents = st.fixed_dictionaries(
    {},
    optional={
        "version": st.one_of(st.just(1), scalars),
        "name": st.one_of(st.just("shop"), scalars),
        "app": st.one_of(st.just({"start": "python app.py"}), values),
        "gates": values,
        "hooks": values,
        "exit_tests": values,
        "rollout": values,
        "experiment": values,
        "shared": values,
        "environments": values,
        "provider": values,
    },
).flatmap(lambda base: st.dictionaries(keys, values, max_size=3).map(lambda extra: {**extra, **base}))

YAML_BITS = st.sampled_from(
    [
        ":",
        " ",
        "-",
        "\n",
        "\t",
        "[",
        "]",
        "{",
        "}",
        "&a",
        "*a",
        "!!str",
        "!x",
        "<<: *a",
        "'",
        '"',
        "#",
        "|",
        ">",
        "---\n",
        "...",
        "%YAML 1.1\n",
        "? ",
        ",",
        "\x00",
        "\ufeff",
        "é",
        "\\",
        "0x1f",
        ".inf",
        "~",
    ]
)


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("repo")
    (root / ".git").mkdir()
    return root


def check_outcome(data: bytes, base_dir: Path) -> None:
    result = validate_bytes(data, "squals.yml", base_dir=base_dir, repo_root=base_dir)
    if result.problems:
        assert result.manifest is None
        for problem in result.problems:
            assert problem.file in ("squals.yml",) or problem.file.endswith(".yml")
            assert problem.line >= 1 and problem.col >= 1
            assert problem.where.startswith("$")
            assert problem.message
            assert len(problem.render().splitlines()) == 1
    else:
        assert isinstance(result.manifest, Manifest)


@SETTINGS
@given(st.binary(max_size=600))
def test_random_bytes(base_dir: Path, data: bytes) -> None:
    check_outcome(data, base_dir)


@SETTINGS
@given(st.text(max_size=600))
def test_random_text(base_dir: Path, text: str) -> None:
    check_outcome(text.encode("utf-8", errors="surrogatepass"), base_dir)


@SETTINGS
@given(documents)
def test_random_documents(base_dir: Path, document: dict[str, Any]) -> None:
    text = yaml.safe_dump(document, allow_unicode=True, default_flow_style=None)
    check_outcome(text.encode("utf-8", errors="surrogatepass"), base_dir)


@SETTINGS
@given(
    st.sampled_from(VALID_TEXTS),
    st.lists(
        st.tuples(
            st.sampled_from(["insert", "delete", "duplicate", "swap"]),
            st.integers(0, 10**6),
            st.integers(0, 40),
            YAML_BITS,
        ),
        min_size=1,
        max_size=4,
    ),
)
def test_mutated_valid_files(base_dir: Path, text: str, mutations: list[tuple[str, int, int, str]]) -> None:
    for kind, position, length, bit in mutations:
        at = position % (len(text) + 1)
        if kind == "insert":
            text = text[:at] + bit + text[at:]
        elif kind == "delete":
            text = text[:at] + text[at + length :]
        else:
            lines = text.splitlines(keepends=True)
            if len(lines) > 1:
                i = at % len(lines)
                j = (i + 1 + length) % len(lines)
                if kind == "duplicate":
                    lines.insert(j, lines[i])
                else:
                    lines[i], lines[j] = lines[j], lines[i]
            text = "".join(lines)
    check_outcome(text.encode("utf-8", errors="surrogatepass"), base_dir)


@pytest.mark.parametrize(
    "text",
    [
        "a: &a [" + ",".join(["*a"] * 3) + "]\n",
        "x: &x [1,2,3,4,5,6,7,8,9,10]\n"
        + "".join(
            f"y{i}: &y{i} [" + ",".join([f"*{'x' if i == 0 else f'y{i - 1}'}"] * 10) + "]\n"
            for i in range(12)
        ),
        "- " * 500 + "x\n",
        "[" * 5000 + "]" * 5000 + "\n",
        "k: " + "9" * 100_000 + "\n",
    ],
)
def test_pathological_inputs_are_cheap_and_located(base_dir: Path, text: str) -> None:
    check_outcome(text.encode(), base_dir)
