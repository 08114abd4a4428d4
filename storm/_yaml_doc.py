"""Reading a YAML topology file into located values. Every mapping, list and
scalar keeps the file, line and key path it came from, so a mistake found while
reading or while building the topology is reported as
``file:line: key.path: what is wrong``. Owns ``${...}`` substitution (a
``--filter`` properties file, then the environment) and ``includes:`` merging;
knows nothing of components (storm.yaml_topology turns the result into a
topology)."""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
import yaml.constructor
import yaml.resolver

from ._errors import TopologyError

# `$${` writes a literal `${`; `${NAME}`, `${NAME:-default}`, Flux's `${ENV-NAME}`.
_VAR_RE = re.compile(r"\$\$\{|\$\{([^}]*)\}")
_VAR_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")


class YamlTopologyError(TopologyError):
    """A YAML topology file (or one it includes, or its --filter file) is wrong;
    the message starts with ``file:line:`` and the key at fault."""


@dataclass(eq=False)
class Node:
    """A value read from YAML and where it was written.

    ``value`` is a ``dict[str, Node]`` for a mapping, a ``list[Node]`` for a
    list, else the scalar (str, int, float, bool, None, ...)."""

    value: Any
    file: str
    line: int
    path: str

    def error(self, message: str) -> YamlTopologyError:
        where = f"{self.file}:{self.line}"
        return YamlTopologyError(f"{where}: {self.path}: {message}" if self.path else f"{where}: {message}")

    @property
    def is_map(self) -> bool:
        return isinstance(self.value, dict)

    @property
    def is_list(self) -> bool:
        return isinstance(self.value, list)

    def get(self, key: str) -> Node | None:
        return self.value.get(key) if isinstance(self.value, dict) else None

    def plain(self) -> Any:
        """The value without locations (nested dicts and lists of plain values)."""
        if isinstance(self.value, dict):
            return {k: v.plain() for k, v in self.value.items()}
        if isinstance(self.value, list):
            return [v.plain() for v in self.value]
        return self.value

    def expect_map(self, what: str, allowed: Iterable[str], hints: Mapping[str, str] | None = None) -> dict[str, Node]:
        """This node's entries, after checking it is a mapping of known keys only."""
        if not isinstance(self.value, dict):
            raise self.error(f"{what} must be a mapping (key: value), got {_kind(self.value)}")
        known = list(allowed)
        for key, node in self.value.items():
            if key in known:
                continue
            hint = (hints or {}).get(key)
            if hint is None:
                close = difflib.get_close_matches(key, known, n=1)
                hint = f"did you mean '{close[0]}'?" if close else f"known keys: {', '.join(known)}"
            raise node.error(f"unknown key '{key}' in {what}; {hint}")
        return self.value

    def expect_entries(self, what: str) -> dict[str, Node]:
        """This node's entries, after checking it is a mapping (of any keys)."""
        if not isinstance(self.value, dict):
            raise self.error(f"{what} must be a mapping (key: value), got {_kind(self.value)}")
        return self.value

    def expect_list(self, what: str) -> list[Node]:
        if not isinstance(self.value, list):
            raise self.error(f"{what} must be a list (lines starting with '- '), got {_kind(self.value)}")
        return self.value

    def expect_str(self, what: str) -> str:
        if not isinstance(self.value, str) or not self.value:
            raise self.error(f"{what} must be a non-empty string, got {_kind(self.value)}")
        return self.value


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing (null)"
    return f"{type(value).__name__} {value!r}"


class Variables:
    """Resolves ``${...}`` in scalar values and records what it resolved.

    Where the topology is submitted (``fixed`` is None) a name is looked up in
    the properties of the ``--filter`` file, then in the environment; the values
    found travel with the topology's config (``topology.yaml.vars``), so worker
    processes, on this machine or on a cluster's hosts, substitute exactly the
    same values (``fixed``) whatever their own environment holds."""

    def __init__(self, properties: Mapping[str, str] | None = None,
                 environ: Mapping[str, str] | None = None,
                 fixed: Mapping[str, str] | None = None) -> None:
        self.properties = dict(properties or {})
        self.environ = os.environ if environ is None else environ
        self.fixed = None if fixed is None else dict(fixed)
        self.used: dict[str, str] = {}

    def _lookup(self, expr: str, node: Node) -> str:
        name, sep, default = expr.partition(":-")
        name = name.strip()
        env_only = name.startswith("ENV-")  # Flux's spelling of an environment variable
        if not _VAR_NAME_RE.match(name):
            raise node.error(f"'${{{expr}}}' is not a variable: write ${{NAME}}, ${{NAME:-default}} or ${{ENV-NAME}}")
        if self.fixed is not None:
            if name in self.fixed:
                return self.fixed[name]
        elif not env_only and name in self.properties:
            self.used[name] = self.properties[name]
            return self.properties[name]
        else:
            env_name = name[4:] if env_only else name
            if env_name in self.environ:
                self.used[name] = self.environ[env_name]
                return self.used[name]
        if sep:
            return default
        source = "the environment" if env_only else "the --filter file or the environment"
        raise node.error(f"variable '${{{name}}}' is not set in {source}; set it, or give a default "
                         f"as ${{{name}:-value}}")

    def substitute(self, text: str, node: Node) -> str:
        return _VAR_RE.sub(lambda m: "${" if m.group(1) is None else self._lookup(m.group(1), node), text)


def read_properties(path: str | os.PathLike[str]) -> dict[str, str]:
    """A ``--filter`` file: ``key=value`` (or ``key: value``) lines, ``#`` or
    ``!`` comments, as a Java properties file; a ``.yaml``/``.yml`` file is read
    as a YAML mapping of names to scalars."""
    shown = str(path)
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise YamlTopologyError(f"--filter file '{shown}' cannot be read: {exc.strerror or exc}") from None
    if shown.endswith((".yaml", ".yml")):
        doc = _compose(text, shown)
        node = _Reader(shown, Variables(fixed={})).convert(doc, "") if doc is not None else None
        if node is None or not node.is_map:
            raise YamlTopologyError(f"{shown}:1: a --filter YAML file must be a mapping of name: value")
        out: dict[str, str] = {}
        for key, value in node.value.items():
            if value.is_map or value.is_list:
                raise value.error("a property must be a single value, not a mapping or a list")
            v = value.value
            out[key] = "" if v is None else (str(v).lower() if isinstance(v, bool) else str(v))
        return out
    props: dict[str, str] = {}
    for i, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", "!")):
            continue
        m = re.match(r"^([^=:\s]+)\s*[=:]\s*(.*)$", line)
        if m is None:
            raise YamlTopologyError(f"{shown}:{i}: expected name=value, got {line!r}")
        props[m.group(1)] = m.group(2)
    return props


def _compose(text: str, shown: str) -> yaml.Node | None:
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        raise YamlTopologyError(f"{shown}{line}: not valid YAML: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise YamlTopologyError(f"{shown}: not valid YAML: {exc}") from None


class _Reader:
    """Turns one file's composed node tree into Nodes (with substitution)."""

    def __init__(self, shown: str, variables: Variables) -> None:
        self.shown = shown
        self.variables = variables
        # A fresh constructor per file: it caches every node it constructed.
        self.constructor = yaml.constructor.SafeConstructor()
        self.resolver = yaml.resolver.Resolver()

    def convert(self, node: yaml.Node, path: str) -> Node:
        line = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            self.constructor.flatten_mapping(node)  # YAML merge keys (<<: *base)
            entries: dict[str, Node] = {}
            for knode, vnode in node.value:
                kline = knode.start_mark.line + 1
                if not isinstance(knode, yaml.ScalarNode) or not knode.value:
                    raise YamlTopologyError(f"{self.shown}:{kline}: {path or 'top level'}: keys must be plain names")
                key = str(knode.value)
                child = f"{path}.{key}" if path else key
                if key in entries:
                    raise YamlTopologyError(f"{self.shown}:{kline}: {child}: written twice in the same mapping "
                                            f"(first at line {entries[key].line}); keep one")
                entries[key] = self.convert(vnode, child)
            return Node(entries, self.shown, line, path)
        if isinstance(node, yaml.SequenceNode):
            return Node([self.convert(v, f"{path}[{i}]") for i, v in enumerate(node.value)],
                        self.shown, line, path)
        assert isinstance(node, yaml.ScalarNode)
        here = Node(node.value, self.shown, line, path)
        scalar = node
        if "${" in node.value:
            text = self.variables.substitute(node.value, here)
            if node.style is not None:  # quoted: stays a string
                return Node(text, self.shown, line, path)
            # Plain: typed as YAML types the text written there (4 -> int, true -> bool).
            tag = self.resolver.resolve(yaml.ScalarNode, text, (True, False))
            scalar = yaml.ScalarNode(tag, text, node.start_mark, node.end_mark)
        try:
            value = self.constructor.construct_object(scalar, deep=True)
        except yaml.constructor.ConstructorError as exc:
            raise here.error(f"cannot read this value: {exc.problem}") from None
        return Node(value, self.shown, line, path)


def display_path(path: Path) -> str:
    """How a file is named in messages: relative to the current directory when under it."""
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return str(path)
    return str(path) if rel.startswith("..") else rel


@dataclass
class Document:
    """A YAML topology with its includes merged in, and every file it read."""

    root: Node
    files: list[Path] = field(default_factory=list)


_MERGED_BY_NAME = ("spouts", "bolts")


def _entry_key(section: str, node: Node) -> Any:
    if not node.is_map:
        return None
    if section == "streams":
        src, stream, dst = (node.get(k) for k in ("from", "stream", "to"))
        return (None if src is None else src.value, "default" if stream is None else stream.value,
                None if dst is None else dst.value)
    name = node.get("name")
    return None if name is None else name.value


def _merge_lists(section: str, base: Node, top: Node) -> Node:
    out = list(base.value) if base.is_list else []
    index = {k: i for i, n in enumerate(out) if (k := _entry_key(section, n)) is not None}
    for node in top.value if top.is_list else []:
        key = _entry_key(section, node)
        if key is not None and key in index:
            out[index[key]] = node  # the same component (or stream) replaced as a whole
        else:
            if key is not None:
                index[key] = len(out)
            out.append(node)
    return Node(out, top.file, top.line, top.path)


def merge(base: Node, top: Node) -> Node:
    """`top` over `base`: config key by key, components by name, streams by
    (from, stream, to), any other key replaced."""
    out = dict(base.value)
    for key, node in top.value.items():
        old = out.get(key)
        if old is not None and key == "config" and old.is_map and node.is_map:
            out[key] = Node({**old.value, **node.value}, node.file, node.line, node.path)
        elif old is not None and (key in _MERGED_BY_NAME or key == "streams") and old.is_list and node.is_list:
            out[key] = _merge_lists(key, old, node)
        else:
            out[key] = node
    return Node(out, top.file, top.line, top.path)


def load_document(path: Path, variables: Variables, _stack: tuple[Path, ...] = ()) -> Document:
    """Read `path` and the files it includes (relative to it), merged.

    ``includes:`` lists files (``- base.yaml``) or ``- {file: base.yaml,
    override: true}``. The including file's entries win over an included
    file's, unless that include says ``override: true``; of two includes,
    the later wins."""
    path = path.resolve()
    shown = display_path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise YamlTopologyError(f"{shown}: cannot be read: {exc.strerror or exc}") from None
    composed = _compose(text, shown)
    if composed is None:
        raise YamlTopologyError(f"{shown}:1: the file is empty; a topology needs at least name: and spouts:")
    root = _Reader(shown, variables).convert(composed, "")
    if not root.is_map:
        raise root.error(f"a topology file must be a mapping (name:, spouts:, bolts:, streams:), got {_kind(root.value)}")
    doc = Document(root, [path])
    includes = root.value.pop("includes", None)
    if includes is None:
        return doc
    under: list[Node] = []
    over: list[Node] = []
    for item in includes.expect_list("includes"):
        override = False
        if item.is_map:
            entries = item.expect_map("an include", ("file", "override"))
            if "file" not in entries:
                raise item.error("an include needs file: (the path of the YAML file to include)")
            fnode = entries["file"]
            onode = entries.get("override")
            if onode is not None:
                if not isinstance(onode.value, bool):
                    raise onode.error(f"override must be true or false, got {_kind(onode.value)}")
                override = onode.value
        else:
            fnode = item
        rel = fnode.expect_str("an include")
        inc = (path.parent / rel).resolve()
        if inc == path or inc in _stack:
            chain = " -> ".join(display_path(p) for p in (*_stack, path, inc))
            raise fnode.error(f"includes form a cycle: {chain}")
        if not inc.is_file():
            raise fnode.error(f"included file '{rel}' does not exist ({inc})")
        sub = load_document(inc, variables, (*_stack, path))
        doc.files.extend(f for f in sub.files if f not in doc.files)
        (over if override else under).append(sub.root)
    merged = Node({}, root.file, root.line, "")
    for layer in (*under, root, *over):
        merged = merge(merged, layer)
    # The name and location of the whole document stay the including file's.
    doc.root = Node(merged.value, root.file, root.line, "")
    return doc
