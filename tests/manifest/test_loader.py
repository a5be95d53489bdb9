"""Loader details the corpus does not show: merge precedence, marks through aliases, limits on bytes, tags
resolved exactly as PyYAML's SafeLoader resolves them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from yaml.nodes import MappingNode, Node, SequenceNode

from squals_action.manifest import ManifestError
from squals_action.manifest.validate import validate_bytes
from squals_action.manifest.yamlload import MAX_ALIAS_NODES, MAX_BYTES, parse_text


def test_merge_keys_explicit_wins_and_earlier_merge_wins() -> None:
    doc = parse_text(
        "a: &a {x: 1, y: 1}\nb: &b {y: 2, z: 2}\nc:\n  <<: [*a, *b]\n  x: 3\n",
        "f.yml",
    )
    assert doc.data["c"] == {"x": 3, "y": 1, "z": 2}
    assert doc.position(("c", "x")) == (5, 6)
    assert doc.position(("c", "z")) == (2, 17)  # merged values point where they are written
    assert doc.position(("c", "x"), key=True) == (5, 3)


def test_positions_of_missing_paths_fall_back_to_the_deepest_node() -> None:
    doc = parse_text("app:\n  start: x\n", "f.yml")
    assert doc.position(("app", "nope", 3)) == (2, 3)
    assert doc.position(()) == (1, 1)


def test_alias_positions_point_at_the_alias() -> None:
    doc = parse_text("base: &b {k: [1, 2]}\nuse:\n  - *b\n  - *b\n", "f.yml")
    assert doc.data["use"] == [{"k": [1, 2]}, {"k": [1, 2]}]
    assert doc.position(("use", 1)) == (4, 5)


def test_alias_budget_is_exact() -> None:
    per_alias = 1 + 100  # the list node and its scalars
    aliases = MAX_ALIAS_NODES // per_alias
    items = ", ".join(["1"] * 100)
    ok = f"a: &a [{items}]\nb: [{', '.join(['*a'] * aliases)}]\n"
    assert len(parse_text(ok, "f.yml").data["b"]) == aliases
    with pytest.raises(ManifestError) as caught:
        parse_text(ok.replace("]\n", ", *a]\n", 2).replace(f"&a [{items}, *a]", f"&a [{items}]"), "f.yml")
    assert "alias bomb" in caught.value.message


def test_bytes_over_the_limit_are_refused_before_parsing(tmp_path: Path) -> None:
    data = b"version: 1\n" + b"#" * MAX_BYTES
    result = validate_bytes(data, "big.yml", base_dir=tmp_path, repo_root=tmp_path)
    assert [p.render() for p in result.problems] == [
        f"big.yml:1:1: error: $: expected at most {MAX_BYTES} bytes (1 MiB), the file has {len(data)}"
    ]


def test_keys_keep_their_text() -> None:
    doc = parse_text("on: 1\nyes: 2\n3: x\nnull: y\n", "f.yml")
    assert list(doc.data) == ["on", "yes", "3", "null"]


def test_ints_floats_and_timestamps() -> None:
    doc = parse_text("a: 0x10\nb: 1_000\nc: 1.5\nd: 2025-01-01\ne: 017\n", "f.yml")
    assert doc.data == {"a": 16, "b": 1000, "c": 1.5, "d": "2025-01-01", "e": 15}


TAGGED = (
    "plain: [yes, No, on, OFF, ~, null, Null, '', 12, -017, 0x1F, 1_000, 0b101, 1:20, 1.5e3, -.5,\n"
    "  2025-01-01, 2001-12-14t21:59:43.10-05:00, =, <<x, text, y, '12', \"yes\", ! 12, !!str 3, !!int '7']\n"
    "block: |\n  3\n"
    "empty:\n"
    "yes: key\n"
    "7: key\n"
    "merged: {<<: {k: 1}, j: 2}\n"
)  # no alias: an alias makes the loader compose again from events, with PyYAML's resolver


def _tags(node: Node) -> Iterator[str]:
    yield node.tag
    if isinstance(node, MappingNode):
        for key, value in node.value:
            yield from _tags(key)
            yield from _tags(value)
    elif isinstance(node, SequenceNode):
        for item in node.value:
            yield from _tags(item)


def test_tags_are_resolved_as_safe_loader_resolves_them() -> None:
    doc = parse_text(TAGGED, "f.yml")
    assert doc.root is not None
    expected = list(_tags(yaml.compose(TAGGED, Loader=yaml.SafeLoader)))
    assert list(_tags(doc.root)) == expected
    assert "tag:yaml.org,2002:merge" in expected and "tag:yaml.org,2002:value" in expected
    assert doc.data["plain"][:12] == [True, False, True, False, None, None, None, "", 12, -15, 31, 1000]
    assert doc.data["plain"][-5:] == ["12", "yes", 12, "3", 7]
    assert (doc.data["block"], doc.data["empty"], doc.data["merged"]) == ("3\n", None, {"j": 2, "k": 1})


def test_a_file_read_from_a_commit_is_named_by_its_repository_path_and_the_commit(tmp_path: Path) -> None:
    """A checkout of a commit lives in a temporary folder: problems and the model's locations name the file
    relative to the checkout and the commit, never the folder."""
    from squals_action.manifest import load

    checkout = tmp_path / "squals-source-x" / "tree"
    (checkout / "deploy").mkdir(parents=True)
    squals = checkout / "deploy" / "squals.yml"
    squals.write_text("version: 1\nname: shop\napp:\n  start: ./run\nprovider: {kind: local}\n")
    model = load(squals, checkout, relative_to=checkout, commit="1a2b3c4d5e6f")
    assert (model.path, model.commit, model.shown) == (
        "deploy/squals.yml",
        "1a2b3c4d5e6f",
        "deploy/squals.yml in commit 1a2b3c4d5e6f",
    )
    assert str(model.provider.location) == "deploy/squals.yml:5:11 in commit 1a2b3c4d5e6f"
    assert model.base_dir == str(checkout / "deploy")  # the files themselves are still read from the checkout

    squals.write_text("version: 1\nname: shop\napp:\n  start: ./run\n  colour: blue\n")
    with pytest.raises(ManifestError) as raised:
        load(squals, checkout, relative_to=checkout, commit="1a2b3c4d5e6f+dirty")
    assert str(raised.value) == (
        "deploy/squals.yml:5:3 in commit 1a2b3c4d5e6f+dirty: $.app.colour: unknown key 'colour'; "
        "expected one of: start, health, health_timeout, env, workdir"
    )
    (problem,) = raised.value.problems
    assert problem.as_dict()["commit"] == "1a2b3c4d5e6f+dirty"
    assert problem.render().startswith("deploy/squals.yml:5:3 in commit 1a2b3c4d5e6f+dirty: error: ")
