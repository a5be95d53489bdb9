"""Read a squals file's YAML into plain data while keeping a line/column mark for every node.

YAML parsers silently accept things a configuration file must not have, so this loader refuses them with
a located problem: files over 1 MiB (checked before parsing), bytes that are not UTF-8, more than one
document, nesting deeper than 64, duplicate keys, unsupported tags, non-finite numbers and alias
expansions beyond a small node budget ("billion laughs"). Every input therefore costs at most a bounded
amount of work.

libyaml composes the node graph in C (fast); an alias there is invisible except that two places share one
node object. When the walk meets a shared collection it starts over on a graph composed here from the
parser's events, in which every alias is an :class:`AliasNode` carrying its own position, so budget and
recursion errors point at the ``*alias`` the user wrote.
"""

from __future__ import annotations

import math
import operator
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from squals_action.manifest.problems import ManifestError, PathPart, format_where

MAX_BYTES = 1024 * 1024
MAX_DEPTH = 64
#: Nodes that may be produced by expanding aliases (merge keys included), over the whole document.
MAX_ALIAS_NODES = 10_000

_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

T_STR = "tag:yaml.org,2002:str"
T_INT = "tag:yaml.org,2002:int"
T_FLOAT = "tag:yaml.org,2002:float"
T_BOOL = "tag:yaml.org,2002:bool"
T_NULL = "tag:yaml.org,2002:null"
T_TIMESTAMP = "tag:yaml.org,2002:timestamp"
T_VALUE = "tag:yaml.org,2002:value"
T_MERGE = "tag:yaml.org,2002:merge"
T_SEQ = "tag:yaml.org,2002:seq"
T_MAP = "tag:yaml.org,2002:map"

_CONSTRUCTOR = yaml.constructor.SafeConstructor()

#: The tag :class:`_Composer` gives plain scalars; compared by identity, so no tag a file spells matches it.
_PLAIN = "tag:squals,2026:plain-scalar-to-resolve"
_WILDCARD: list[tuple[str, Any]] = _Loader.yaml_implicit_resolvers.get(None, [])
_IMPLICIT: dict[str, list[tuple[str, Any]]] = {
    first: [*found, *_WILDCARD]
    for first, found in _Loader.yaml_implicit_resolvers.items()
    if first is not None
}


def _implicit_tag(value: str) -> str:
    """The tag SafeLoader's resolver gives a plain scalar (its rules, looked up by first character)."""
    for tag, regexp in _IMPLICIT.get(value[:1], _WILDCARD):
        if regexp.match(value):
            return str(tag)
    return T_STR


def _resolved_tag(node: ScalarNode) -> str:
    """The tag of ``node``, resolved in place the first time when :class:`_Composer` left it plain."""
    if node.tag is _PLAIN:
        node.tag = _implicit_tag(node.value)
    return str(node.tag)


class _Composer(_Loader):  # type: ignore[misc]
    """SafeLoader's composer with cheap per-node callbacks (a sixth less parse time on large files).

    libyaml calls back into Python for every node: ``descend_resolver`` and ``ascend_resolver`` serve path
    resolvers, which SafeLoader has none of, so C built-ins that ignore their arguments stand in for them;
    ``resolve`` only notes whether a scalar is plain, and :class:`_Walker`, which visits every scalar anyway,
    resolves those with SafeLoader's rules (:func:`_resolved_tag`).
    """

    descend_resolver = operator.is_  # (parent, index) -> ignored
    ascend_resolver = tuple  # () -> ignored

    def resolve(self, kind: type[Node], value: str | None, implicit: Any) -> str:
        if kind is ScalarNode:
            return _PLAIN if implicit[0] else T_STR
        return T_SEQ if kind is SequenceNode else T_MAP


class AliasNode(Node):
    """An ``*alias`` as written: its own position, and the anchored node it stands for."""

    id = "alias"

    def __init__(self, target: Node, anchor: str, start_mark: Any, end_mark: Any) -> None:
        super().__init__(target.tag, target.value, start_mark, end_mark)
        self.target = target
        self.anchor = anchor


def deref(node: Node) -> Node:
    while isinstance(node, AliasNode):
        node = node.target
    return node


class _AliasSeen(Exception):
    """The C-composed graph shares a collection: redo the walk on a graph with explicit aliases."""


def _short(text: str) -> str:
    return repr(text if len(text) <= 40 else text[:37] + "...")


def _mark(mark: Any) -> tuple[int, int]:
    return (int(mark.line) + 1, int(mark.column) + 1) if mark is not None else (1, 1)


@dataclass
class Document:
    """One parsed squals file: its data, its node graph, and where each path stands in the text."""

    file: str
    data: Any
    root: Node | None
    _index: dict[int, dict[str, tuple[Node, Node]]] = field(default_factory=dict, repr=False)

    def _entries(self, mapping: MappingNode) -> dict[str, tuple[Node, Node]]:
        found = self._index.get(id(mapping))
        if found is not None:
            return found
        entries: dict[str, tuple[Node, Node]] = {}
        merged: list[dict[str, tuple[Node, Node]]] = []
        for key, value in mapping.value:
            real_key = deref(key)
            if isinstance(real_key, ScalarNode) and _resolved_tag(real_key) == T_MERGE:
                target = deref(value)
                sources = target.value if isinstance(target, SequenceNode) else [target]
                merged.extend(self._entries(m) for m in map(deref, sources) if isinstance(m, MappingNode))
            elif isinstance(real_key, ScalarNode):
                entries.setdefault(str(real_key.value), (key, value))
        for source in merged:
            for name, pair in source.items():
                entries.setdefault(name, pair)
        self._index[id(mapping)] = entries
        return entries

    def node_at(self, path: Sequence[PathPart], *, key: bool = False) -> Node | None:
        """The node at ``path`` (its key node when ``key``), or the deepest node that exists on the way."""
        node = self.root
        if node is None:
            return None
        for position, part in enumerate(path):
            real = deref(node)
            last = position == len(path) - 1
            if isinstance(real, MappingNode) and isinstance(part, str):
                pair = self._entries(real).get(part)
                if pair is None:
                    return node
                node = pair[0] if (key and last) else pair[1]
            elif isinstance(real, SequenceNode) and isinstance(part, int) and 0 <= part < len(real.value):
                node = real.value[part]
            else:
                return node
        return node

    def position(self, path: Sequence[PathPart], *, key: bool = False) -> tuple[int, int]:
        """1-based (line, col) of the value at ``path`` (or of its key when ``key``)."""
        node = self.node_at(path, key=key)
        return _mark(node.start_mark) if node is not None else (1, 1)

    def error(self, path: Sequence[PathPart], message: str, *, key: bool = False) -> ManifestError:
        line, col = self.position(path, key=key)
        return ManifestError(self.file, line, col, format_where(path), message)


class _Walker:
    """Turns a node graph into plain data, enforcing depth, duplicate-key, tag and alias rules."""

    def __init__(self, file: str, explicit_aliases: bool) -> None:
        self.file = file
        self.explicit_aliases = explicit_aliases
        self.seen: set[int] = set()
        self.expanded = 0
        self.alias_stack: list[tuple[AliasNode, int]] = []
        self.path: list[PathPart] = []

    def fail(self, node: Node, message: str) -> ManifestError:
        line, col = _mark(node.start_mark)
        return ManifestError(self.file, line, col, format_where(self.path), message)

    def walk(self, node: Node, depth: int) -> Any:
        if isinstance(node, AliasNode):
            self.alias_stack.append((node, len(self.path)))
            try:
                return self.walk(node.target, depth)
            finally:
                self.alias_stack.pop()
        if self.alias_stack:
            self.expanded += 1
            if self.expanded > MAX_ALIAS_NODES:
                outer, depth_at = self.alias_stack[0]
                line, col = _mark(outer.start_mark)
                raise ManifestError(
                    self.file,
                    line,
                    col,
                    format_where(self.path[:depth_at]),
                    f"expected aliases expanding to at most {MAX_ALIAS_NODES} nodes; "
                    f"alias *{outer.anchor} goes past it (an alias bomb?)",
                )
        if isinstance(node, ScalarNode):
            return self.scalar(node)
        if depth >= MAX_DEPTH:
            raise self.fail(node, f"expected nesting at most {MAX_DEPTH} levels deep")
        if not self.explicit_aliases:
            if id(node) in self.seen:
                raise _AliasSeen
            self.seen.add(id(node))
        if isinstance(node, SequenceNode):
            if node.tag != T_SEQ:
                raise self.fail(node, f"expected a plain list, got the unsupported tag {node.tag!r}")
            items = []
            path = self.path
            for index, item in enumerate(node.value):
                path.append(index)
                items.append(self.walk(item, depth + 1))
                path.pop()
            return items
        if isinstance(node, MappingNode):
            if node.tag != T_MAP:
                raise self.fail(node, f"expected a plain mapping, got the unsupported tag {node.tag!r}")
            return self.mapping(node, depth)
        raise self.fail(
            node, "expected a scalar, list or mapping"
        )  # pragma: no cover - composer never does this

    def mapping(self, node: MappingNode, depth: int) -> dict[str, Any]:
        result: dict[str, Any] = {}
        first_line: dict[str, int] = {}
        merged: dict[str, Any] = {}
        path = self.path
        for key_node, value_node in node.value:
            key = deref(key_node)
            if not isinstance(key, ScalarNode):
                raise self.fail(key_node, "expected a plain string as mapping key, got a list or mapping")
            key_tag = _resolved_tag(key)
            if key_tag == T_MERGE:
                path.append("<<")
                for name, value in self.merge_sources(value_node, depth).items():
                    merged.setdefault(name, value)
                path.pop()
                continue
            if key_tag not in (T_STR, T_INT, T_FLOAT, T_BOOL, T_NULL, T_TIMESTAMP, T_VALUE):
                raise self.fail(key_node, f"expected a plain string as mapping key, got the tag {key_tag!r}")
            name = str(key.value)
            if name in first_line:
                path.append(name)
                error = self.fail(
                    key_node,
                    f"expected unique keys; {_short(name)} is already defined at line {first_line[name]}",
                )
                raise error
            first_line[name] = key_node.start_mark.line + 1
            path.append(name)
            result[name] = self.walk(value_node, depth + 1)
            path.pop()
        if merged:
            for name, value in merged.items():
                result.setdefault(name, value)
        return result

    def merge_sources(self, value_node: Node, depth: int) -> dict[str, Any]:
        target = deref(value_node)
        sources: list[Node]
        if isinstance(target, MappingNode):
            sources = [value_node]
        elif isinstance(target, SequenceNode):
            sources = list(target.value)
        else:
            raise self.fail(value_node, "expected a mapping or a list of mappings after the merge key '<<'")
        merged: dict[str, Any] = {}
        for source in sources:
            if not isinstance(deref(source), MappingNode):
                raise self.fail(source, "expected a mapping or a list of mappings after the merge key '<<'")
            value = self.walk(source, depth)
            for name, item in value.items():
                merged.setdefault(name, item)
        return merged

    def scalar(self, node: ScalarNode) -> Any:
        tag = _resolved_tag(node)
        if tag == T_STR:
            return node.value
        try:
            if tag == T_INT:
                return _CONSTRUCTOR.construct_yaml_int(node)
            if tag == T_FLOAT:
                number = _CONSTRUCTOR.construct_yaml_float(node)
                if not math.isfinite(number):
                    raise self.fail(node, f"expected a finite number, got {node.value!r}")
                return number
            if tag == T_BOOL:
                return _CONSTRUCTOR.construct_yaml_bool(node)
        except ValueError as exc:
            raise self.fail(node, f"expected a number YAML can represent, got {node.value[:40]!r}") from exc
        if tag == T_NULL:
            return None
        if tag in (T_TIMESTAMP, T_VALUE):
            return node.value
        raise self.fail(node, f"expected a plain value, got the unsupported tag {tag!r}")


def _compose_with_aliases(text: str, file: str) -> Node | None:
    """Compose from parser events, keeping every alias as an :class:`AliasNode` with its own mark."""
    resolver: Any = yaml.resolver.Resolver()
    anchors: dict[str, Node] = {}
    open_anchors: set[str] = set()
    stack: list[tuple[Node, str | None]] = []
    root: Node | None = None

    def attach(node: Node) -> None:
        nonlocal root
        if stack:
            stack[-1][0].value.append(node)
        else:
            root = node

    for event in yaml.parse(text, Loader=_Loader):
        if isinstance(event, yaml.AliasEvent):
            anchor = str(event.anchor)
            if anchor in open_anchors:
                line, col = _mark(event.start_mark)
                raise ManifestError(
                    file,
                    line,
                    col,
                    "$",
                    f"expected an alias to a finished node; *{anchor} "
                    "refers to a node that contains it (a recursive alias)",
                )
            if anchor not in anchors:  # pragma: no cover - the parser already refused it
                line, col = _mark(event.start_mark)
                raise ManifestError(file, line, col, "$", f"expected a defined anchor, got *{anchor}")
            attach(AliasNode(anchors[anchor], anchor, event.start_mark, event.end_mark))
        elif isinstance(event, yaml.ScalarEvent):
            tag = event.tag
            if tag is None or tag == "!":
                tag = resolver.resolve(ScalarNode, event.value, event.implicit)
            marks: tuple[Any, Any] = (event.start_mark, event.end_mark)
            node: Node = ScalarNode(tag, event.value, *marks, style=event.style)
            if event.anchor is not None:
                anchors[event.anchor] = node
            attach(node)
        elif isinstance(event, yaml.SequenceStartEvent | yaml.MappingStartEvent):
            is_seq = isinstance(event, yaml.SequenceStartEvent)
            tag = event.tag if event.tag not in (None, "!") else (T_SEQ if is_seq else T_MAP)
            start: Any = event.start_mark
            node = (SequenceNode if is_seq else MappingNode)(str(tag), [], start, None)
            if event.anchor is not None:
                anchors[event.anchor] = node
                open_anchors.add(event.anchor)
            attach(node)
            stack.append((node, event.anchor))
        elif isinstance(event, yaml.SequenceEndEvent | yaml.MappingEndEvent):
            node, closed = stack.pop()
            node.end_mark = event.end_mark
            if closed is not None:
                open_anchors.discard(closed)
            if isinstance(node, MappingNode):
                flat = node.value
                node.value = [(flat[i], flat[i + 1]) for i in range(0, len(flat), 2)]
    return root


def _yaml_problem(exc: yaml.YAMLError, text: str, file: str) -> ManifestError:
    if isinstance(exc, yaml.reader.ReaderError):
        position = min(int(exc.position), len(text))
        line = text.count("\n", 0, position) + 1
        col = position - (text.rfind("\n", 0, position) + 1) + 1
        return ManifestError(
            file,
            line,
            col,
            "$",
            f"expected printable text, got the character #x{exc.character:04x}"
            if isinstance(exc.character, int)
            else "expected printable text",
        )
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    line, col = _mark(mark)
    problem = str(getattr(exc, "problem", "") or "").strip()
    context = str(getattr(exc, "context", "") or "").strip()
    if "single document" in context:
        return ManifestError(file, line, col, "$", "expected a single YAML document, found another one")
    index = getattr(mark, "index", -1)
    if isinstance(index, int) and 0 <= index < len(text) and text[index] == "\t":
        return ManifestError(file, line, col, "$", "expected spaces for indentation, got a tab character")
    if "maximum nesting depth" in problem:
        return ManifestError(file, line, col, "$", f"expected nesting at most {MAX_DEPTH} levels deep")
    detail = f"{problem} ({context})" if context and problem else (problem or context or str(exc))
    return ManifestError(file, line, col, "$", f"expected valid YAML: {' '.join(detail.split())}")


def decode_source(data: bytes, file: str) -> str:
    """UTF-8 text of ``data`` (a leading BOM dropped), or a problem at the first bad byte's line."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        start = exc.start
        line = data.count(b"\n", 0, start) + 1
        line_start = data.rfind(b"\n", 0, start) + 1
        col = len(data[line_start:start].decode("utf-8", errors="replace")) + 1
        raise ManifestError(
            file,
            line,
            col,
            "$",
            f"expected UTF-8 text, got the byte 0x{data[start]:02x} at byte offset {start}",
        ) from None
    return text[1:] if text.startswith("\ufeff") else text


def read_source(path: Path, file: str) -> str:
    """The file's text, refusing files over :data:`MAX_BYTES` before reading them whole."""
    try:
        with path.open("rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            data = handle.read(MAX_BYTES + 1)
    except IsADirectoryError:
        raise ManifestError(file, 1, 1, "$", "expected a file, got a directory") from None
    except FileNotFoundError:
        raise ManifestError(file, 1, 1, "$", "expected an existing file, it does not exist") from None
    except OSError as exc:
        raise ManifestError(file, 1, 1, "$", f"expected a readable file: {exc.strerror or exc}") from None
    if len(data) > MAX_BYTES:
        raise ManifestError(
            file,
            1,
            1,
            "$",
            f"expected at most {MAX_BYTES} bytes (1 MiB), the file has {max(size, len(data))}",
        )
    return decode_source(data, file)


def parse_text(text: str, file: str) -> Document:
    """Parse YAML text into a :class:`Document`; raises :class:`ManifestError` with a location."""
    try:
        root = yaml.compose(text, Loader=_Composer)
    except yaml.YAMLError as exc:
        raise _yaml_problem(exc, text, file) from None
    except RecursionError:  # only the pure-Python composer recurses; libyaml stops at its own limit
        raise ManifestError(file, 1, 1, "$", f"expected nesting at most {MAX_DEPTH} levels deep") from None
    if root is None:
        return Document(file, None, None)
    try:
        data = _Walker(file, explicit_aliases=False).walk(root, 0)
    except _AliasSeen:
        try:
            root = _compose_with_aliases(text, file)
        except yaml.YAMLError as exc:  # pragma: no cover - the first parse succeeded
            raise _yaml_problem(exc, text, file) from None
        if root is None:  # pragma: no cover
            return Document(file, None, None)
        data = _Walker(file, explicit_aliases=True).walk(root, 0)
    return Document(file, data, root)


def load_document(path: Path, file: str) -> Document:
    """Read and parse one squals file (``file`` is the name problems show)."""
    return parse_text(read_source(path, file), file)
