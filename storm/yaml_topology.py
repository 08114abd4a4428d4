"""Topologies declared in YAML (Apache Storm's Flux model, this project's names):
components by import path with parallelism and config, multi-lang components,
the shipped spouts, sinks and windowed bolts, streams with every grouping,
topology config, ``${...}`` substitution and ``includes:``. A YAML file is a
target like a ``.py`` file: ``storm local topology.yaml``, ``LocalCluster.submit
("topology.yaml")``, ``storm.testing.run_topology("topology.yaml")``; every
worker process reads the same file and builds the same TopologySpec.

Everything is checked here, before any worker starts, and an error names the
file, the line and the key. Reading and merging the files is storm._yaml_doc's
job; this module turns the merged document into component specs and builds
them with the DSL's own build_spec, so a YAML topology and the same topology
written in Python give the same spec. Trident topologies are not declared in
YAML: write them in Python (storm.trident)."""

from __future__ import annotations

import importlib
import re
import sys
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from . import _config
from ._component import Bolt, ComponentSpec, Spout, Stream
from ._errors import StormError
from ._grouping import CustomGrouping, Grouping
from ._topology import TopologySpec, build_spec
from ._tuple import DEFAULT_STREAM
from ._yaml_doc import Document, Node, Variables, YamlTopologyError, load_document, read_properties

__all__ = ["VARS_KEY", "YamlTopology", "YamlTopologyError", "is_yaml_target", "read_properties"]

#: Config key carrying the ``${...}`` values resolved where the topology was
#: submitted, so every worker substitutes the same ones.
VARS_KEY = "topology.yaml.vars"

_TOP_KEYS = ("name", "config", "spouts", "bolts", "streams", "includes")
_TOP_HINTS = {
    "trident": "Trident topologies are not declared in YAML; write them in Python (storm.trident)",
    "components": "Flux's components: (beans) is not supported; configure components with config:",
    "topologySource": "a topology built by code is a .py target; name that file instead",
}
_COMPONENT_KEYS = ("name", "class", "par", "config", "outputs",
                   "command", "script", "args", "serializer", "cwd", "window", "checkpoints")
_MULTILANG_KEYS = ("command", "script", "args", "serializer", "cwd")
_COMPONENT_HINTS = {
    "id": "write name: (Flux's id:)",
    "className": "write class: (an import path, e.g. mypkg.bolts.SplitBolt)",
    "parallelism": "write par: (the number of tasks)",
    "constructorArgs": "components take settings through config:, not constructor arguments",
    "properties": "components take settings through config:",
    "inputs": "inputs are declared under streams: (from:, to:, grouping:)",
}
_STREAM_KEYS = ("from", "to", "stream", "grouping", "fields", "class", "args")
_STREAM_HINTS = {
    "streamId": "write stream: (the source's stream name)",
    "type": "write grouping: (shuffle, fields, ...)",
    "name": "streams are not named; the source stream is stream:",
}
_WINDOW_KEYS = ("length", "slide", "timestamp_field", "lag", "watermark_interval", "late_stream")
_GROUPINGS = ("shuffle", "fields", "partial_key", "all", "global", "none", "direct",
              "local_or_shuffle", "custom")

# Shipped components a YAML file may name without their module.
SHIPPED: dict[str, str] = {
    "ListSpout": "storm.spouts", "FileSpout": "storm.spouts",
    "TailSpout": "storm.sources", "HttpSpout": "storm.sources", "ZmqSpout": "storm.sources",
    "StdinSpout": "storm.sources", "RedisStreamSpout": "storm.sources",
    "CheckpointSpout": "storm.stateful",
    "FileSink": "storm.sinks", "StdoutSink": "storm.sinks", "WebhookSink": "storm.sinks",
    "RedisSink": "storm.sinks",
    "RuleMatchBolt": "storm.alerting", "RuleEvalBolt": "storm.alerting",
    "StatefulRuleEvalBolt": "storm.alerting",
    "ShellSpout": "storm.multilang", "ShellBolt": "storm.multilang",
}

_DURATION_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(ms|s|m|h)\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def is_yaml_target(target: str) -> bool:
    """Whether a target names a YAML topology file (``x.yaml``, ``x.yml``)."""
    return isinstance(target, str) and target.partition(":")[0].endswith((".yaml", ".yml"))


def _import(node: Node, what: str) -> Any:
    """The object an import path (``pkg.module.Name``) names."""
    dotted = node.expect_str(what).strip()
    if "." not in dotted:
        if dotted not in SHIPPED:
            raise node.error(f"'{dotted}' is not an import path (package.module.{dotted}) nor a component "
                             f"storm ships ({', '.join(sorted(SHIPPED))})")
        dotted = f"{SHIPPED[dotted]}.{dotted}"
    module_name, _, attr = dotted.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise node.error(f"no module named '{exc.name or module_name}' (importing '{module_name}'); "
                         "the YAML file's directory and the current directory are importable") from None
    except StormError as exc:
        raise node.error(f"importing '{module_name}' failed: {exc}") from None
    except Exception as exc:
        raise node.error(f"importing '{module_name}' raised {type(exc).__name__}: {exc}") from None
    obj = getattr(module, attr, None)
    if obj is None:
        raise node.error(f"module '{module_name}' has no attribute '{attr}'")
    return obj


def _par(node: Node | None) -> int:
    if node is None:
        return 1
    v = node.value
    if not isinstance(v, int) or isinstance(v, bool) or v < 1:
        raise node.error(f"par must be an integer >= 1 (the number of tasks), got {v!r}")
    return v


def _config_of(node: Node | None, what: str) -> dict[str, Any]:
    if node is None:
        return {}
    entries = node.expect_entries(what)
    out: dict[str, Any] = {}
    for key, value in entries.items():
        plain = value.plain()
        try:
            _config.validate({key: plain}, where=f"{value.file}:{value.line}: {value.path}")
        except StormError as exc:
            raise YamlTopologyError(str(exc)) from None
        out[key] = plain
    return out


def _str_list(node: Node, what: str) -> list[str]:
    if isinstance(node.value, str):
        return [node.value]
    items = node.expect_list(what)
    for item in items:
        item.expect_str(f"each entry of {what}")
    return [str(i.value) for i in items]


def _outputs(node: Node) -> list[str | Stream]:
    """``outputs: [a, b]`` (the default stream's fields), or a mapping of stream
    name to its fields or to ``{fields: [...], direct: true, ordered: true}``."""
    if node.is_list or isinstance(node.value, str):
        return list(_str_list(node, "outputs"))
    streams: list[str | Stream] = []
    for sname, decl in node.expect_entries("outputs").items():
        if decl.is_map:
            entries = decl.expect_map(f"stream '{sname}'", ("fields", "direct", "ordered"))
            flags = {}
            for flag in ("direct", "ordered"):
                f = entries.get(flag)
                if f is not None and not isinstance(f.value, bool):
                    raise f.error(f"{flag} must be true or false, got {f.value!r}")
                flags[flag] = bool(f.value) if f is not None else False
            fields = _str_list(entries["fields"], "fields") if "fields" in entries else []
            streams.append(Stream(fields, name=sname, **flags))
        else:
            streams.append(Stream(_str_list(decl, f"the fields of stream '{sname}'"), name=sname))
    return streams


def _span(node: Node, what: str, allow_count: bool) -> Any:
    from .windowing import Count, Duration

    v = node.value
    if isinstance(v, bool):
        raise node.error(f"{what} must be a number or a duration such as 10s, got {v!r}")
    if isinstance(v, int) and allow_count:
        if v < 1:
            raise node.error(f"{what} must be at least 1 tuple, got {v}")
        return Count(v)
    if isinstance(v, (int, float)) and not allow_count:
        return float(v)
    m = _DURATION_RE.match(str(v)) if isinstance(v, str) else None
    if m is None:
        form = "a tuple count (100) or a duration (10s, 500ms, 2m)" if allow_count else "seconds (2.5) or a duration (500ms, 2s)"
        raise node.error(f"{what} must be {form}, got {v!r}")
    secs = float(m.group(1)) * _DURATION_UNITS[m.group(2)]
    if secs <= 0:
        raise node.error(f"{what} must be longer than 0, got {v!r}")
    return Duration(secs) if allow_count else secs


def _window_args(node: Node) -> dict[str, Any]:
    entries = node.expect_map("window", _WINDOW_KEYS)
    if "length" not in entries:
        raise node.error("a window needs length: (a tuple count such as 100, or a duration such as 30s)")
    args: dict[str, Any] = {"length": _span(entries["length"], "length", True)}
    if "slide" in entries:
        args["slide"] = _span(entries["slide"], "slide", True)
    for key in ("lag", "watermark_interval"):
        if key in entries:
            args[key] = _span(entries[key], key, False)
    for key in ("timestamp_field", "late_stream"):
        if key in entries:
            args[key] = entries[key].expect_str(key)
    return args


class _Builder:
    """One merged document -> topology name, config and component specs."""

    def __init__(self, doc: Document, file_modules: Mapping[str, str]) -> None:
        self.root = doc.root
        self.file_modules = file_modules  # file as messages name it -> the module standing for it
        self.nodes: dict[str, Node] = {}  # component name -> its entry, for located errors
        self.specs: dict[str, ComponentSpec] = {}

    def build(self, overrides: Mapping[str, Any]) -> TopologySpec:
        top = self.root.expect_map("a topology file", _TOP_KEYS, _TOP_HINTS)
        if "name" not in top:
            raise self.root.error("a topology file needs name: (the topology's name)")
        name = top["name"].expect_str("name")
        config = _config_of(top.get("config"), "config")
        spouts = top.get("spouts")
        if spouts is None or not spouts.expect_list("spouts"):
            raise self.root.error("a topology needs at least one spout under spouts:")
        for entry in spouts.value:
            self._component(entry, spout=True)
        bolts = top.get("bolts")
        for entry in bolts.expect_list("bolts") if bolts is not None else []:
            self._component(entry, spout=False)
        streams = top.get("streams")
        for entry in streams.expect_list("streams") if streams is not None else []:
            self._stream(entry)
        conf = dict(config)
        conf.update(overrides)
        try:
            return build_spec(name, list(self.specs.values()), conf)
        except StormError as exc:
            raise self._locate(exc) from None

    def _locate(self, exc: StormError) -> YamlTopologyError:
        """An error of the DSL's checks, at the entry of the component it names."""
        message = str(exc)
        for quoted in re.findall(r"'([^']+)'", message):
            if quoted in self.nodes:
                return self.nodes[quoted].error(message)
        return self.root.error(message)

    def _component(self, entry: Node, spout: bool) -> None:
        section = "spouts" if spout else "bolts"
        fields = entry.expect_map(f"an entry of {section}", _COMPONENT_KEYS, _COMPONENT_HINTS)
        if "name" not in fields:
            raise entry.error("a component needs name: (unique in the topology)")
        name = fields["name"].expect_str("name")
        if name in self.nodes:
            first = self.nodes[name]
            raise fields["name"].error(f"two components are named '{name}' (the other at {first.file}:{first.line}); "
                                       "give each a unique name")
        self.nodes[name] = entry
        from .multilang import KEY_BASE, ShellBolt, ShellSpout

        shell = ShellSpout if spout else ShellBolt
        if "class" in fields:
            cls = _import(fields["class"], "class")
        elif "command" in fields:
            cls = shell
        else:
            raise entry.error("a component needs class: (an import path such as mypkg.bolts.SplitBolt) "
                              "or command: (a multi-lang component)")
        want = Spout if spout else Bolt
        if not (isinstance(cls, type) and issubclass(cls, want)):
            where = fields.get("class") or entry
            other = "bolts:" if spout else "spouts:"
            hint = f"; it is a {'Bolt' if spout else 'Spout'}, so list it under {other}" if isinstance(cls, type) \
                and issubclass(cls, Bolt if spout else Spout) else ""
            raise where.error(f"{cls!r} is not a {want.__name__} subclass{hint}")
        kwargs: dict[str, Any] = {
            "name": name,
            "par": _par(fields.get("par")),
            "config": _config_of(fields.get("config"), "config"),
        }
        if "outputs" in fields:
            kwargs["outputs"] = _outputs(fields["outputs"])
        multilang = [k for k in _MULTILANG_KEYS if k in fields]
        if cls is shell:
            if "command" not in fields:
                raise entry.error("a multi-lang component needs command: (e.g. [python3])")
            kwargs["command"] = _str_list(fields["command"], "command")
            if "script" in fields:
                kwargs["script"] = fields["script"].expect_str("script")
            if "args" in fields:
                kwargs["args"] = _str_list(fields["args"], "args")
            if "serializer" in fields:
                kwargs["serializer"] = fields["serializer"].expect_str("serializer")
            if "cwd" in fields:
                kwargs["cwd"] = fields["cwd"].expect_str("cwd")
        elif multilang:
            raise fields[multilang[0]].error(f"{multilang[0]}: is for multi-lang components (without class:)")
        if "window" in fields:
            from .windowing import WindowedBolt

            if not issubclass(cls, WindowedBolt):
                raise fields["window"].error(f"window: needs a WindowedBolt; {cls.__name__} is not one")
            kwargs.update(_window_args(fields["window"]))
        from .stateful import StatefulBolt

        if issubclass(cls, StatefulBolt) and "checkpoints" not in fields:
            raise entry.error("a StatefulBolt needs checkpoints: (the name of the topology's CheckpointSpout)")
        if "checkpoints" in fields:
            if not issubclass(cls, StatefulBolt):
                raise fields["checkpoints"].error(f"checkpoints: is for a StatefulBolt; {cls.__name__} is not one")
            kwargs["checkpoints"] = fields["checkpoints"].expect_str("checkpoints")
        try:
            spec: ComponentSpec = cls.spec(**kwargs)
            spec.declared_outputs()  # a bad outputs: fails here, at this entry
        except StormError as exc:
            raise entry.error(str(exc)) from None
        if cls is shell and "script" in kwargs:
            # A relative script is relative to the YAML file declaring it (the module standing for it).
            spec.config[KEY_BASE] = self.file_modules[entry.file]
        self.specs[name] = spec

    def _stream(self, entry: Node) -> None:
        fields = entry.expect_map("an entry of streams", _STREAM_KEYS, _STREAM_HINTS)
        for key in ("from", "to"):
            if key not in fields:
                raise entry.error(f"a stream needs {key}: (a component name)")
        src = self._component_ref(fields["from"], spout_ok=True)
        dst = self._component_ref(fields["to"], spout_ok=False)
        stream = fields["stream"].expect_str("stream") if "stream" in fields else DEFAULT_STREAM
        declared = self.specs[src].declared_outputs()
        if stream not in declared:
            at = fields.get("stream") or fields["from"]
            names = ", ".join(sorted(declared)) or "none"
            raise at.error(f"component '{src}' declares no stream '{stream}'; its streams: {names}")
        grouping = self._grouping(entry, fields, declared[stream], src, stream)
        spec = self.specs[dst]
        inputs = spec.inputs if isinstance(spec.inputs, dict) else {s: Grouping.SHUFFLE for s in spec.inputs or ()}
        source = (src, stream)
        if source in inputs or (stream == DEFAULT_STREAM and src in inputs):
            raise entry.error(f"'{dst}' already subscribes to stream '{stream}' of '{src}'; keep one entry")
        inputs[source] = grouping
        spec.inputs = inputs

    def _component_ref(self, node: Node, spout_ok: bool) -> str:
        name = node.expect_str(node.path.rpartition(".")[2])
        if name not in self.specs:
            import difflib

            close = difflib.get_close_matches(name, list(self.specs), n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise node.error(f"no component named '{name}'; {hint}components: {', '.join(self.specs)}")
        if not spout_ok and self.specs[name].is_spout:
            raise node.error(f"'{name}' is a spout; a stream goes to a bolt")
        return name

    def _grouping(self, entry: Node, fields: dict[str, Node], decl: Stream, src: str, stream: str) -> Grouping:
        gnode = fields.get("grouping")
        kind = "shuffle" if gnode is None else gnode.expect_str("grouping").strip().lower().replace("-", "_")
        kind = {"global_": "global", "localorshuffle": "local_or_shuffle", "partialkey": "partial_key"}.get(kind, kind)
        if kind not in _GROUPINGS:
            assert gnode is not None
            raise gnode.error(f"unknown grouping '{gnode.value}'; groupings: {', '.join(_GROUPINGS)}")
        takes = {"fields", "partial_key"} if kind in ("fields", "partial_key") else set()
        if kind == "custom":
            takes = {"class", "args"}
        for extra in ("fields", "class", "args"):
            if extra in fields and extra not in takes:
                raise fields[extra].error(f"{extra}: does not apply to {kind} grouping")
        if kind in ("fields", "partial_key"):
            if "fields" not in fields:
                raise entry.error(f"{kind} grouping needs fields: (the fields that choose the task)")
            names = _str_list(fields["fields"], "fields")
            for f in names:
                if f not in decl.fields:
                    raise fields["fields"].error(f"stream '{stream}' of '{src}' has no field '{f}'; "
                                                 f"its fields: {list(decl.fields)}")
            return Grouping.fields(names) if kind == "fields" else Grouping.partial_key(names)
        if kind == "custom":
            if "class" not in fields:
                raise entry.error("custom grouping needs class: (a storm.CustomGrouping subclass)")
            cls = _import(fields["class"], "class")
            if not (isinstance(cls, type) and issubclass(cls, CustomGrouping)):
                raise fields["class"].error(f"{cls!r} is not a storm.CustomGrouping subclass")
            args = fields["args"].expect_entries("args") if "args" in fields else {}
            return Grouping.custom(cls, **{k: v.plain() for k, v in args.items()})
        at = gnode or entry
        if kind == "direct" and not decl.direct:
            raise at.error(f"direct grouping needs a direct stream; declare stream '{stream}' of '{src}' "
                           "with direct: true")
        if decl.direct and kind != "direct":
            raise at.error(f"stream '{stream}' of '{src}' is direct; it needs grouping: direct")
        return {"shuffle": Grouping.shuffle, "all": Grouping.all, "global": Grouping.global_,
                "none": Grouping.none, "direct": Grouping.direct,
                "local_or_shuffle": Grouping.local_or_shuffle}[kind]()


class YamlTopology:
    """A topology declared in a YAML file; a target like a Topology class.

    ``build(overrides)`` reads the file (and its includes) again and returns the
    validated TopologySpec. ``${NAME}`` is taken from ``properties`` (a
    ``--filter`` file), then from the environment, unless ``overrides`` carry the
    values resolved at submission (``topology.yaml.vars``)."""

    def __init__(self, path: str | Path, properties: Mapping[str, str] | None = None,
                 environ: Mapping[str, str] | None = None) -> None:
        self.path = Path(path).resolve()
        self.properties = dict(properties or {})
        self.environ = environ
        #: Every file the last build read (the topology file first, then its includes).
        self.files: list[Path] = [self.path]
        #: The ``${...}`` values the last build resolved from the properties or the environment.
        self.variables: dict[str, str] = {}
        #: The component specs of the last build, by name.
        self.specs: dict[str, ComponentSpec] = {}

    def _register(self) -> dict[str, str]:
        """A module standing for each YAML file read (multi-lang scripts are
        relative to its ``__file__``), by the file's name in messages."""
        import hashlib

        from ._yaml_doc import display_path

        names: dict[str, str] = {}
        for file in self.files:
            digest = hashlib.sha1(str(file).encode()).hexdigest()[:8]
            name = f"storm_yaml_{re.sub(r'[^A-Za-z0-9_]', '_', file.stem)}_{digest}"
            if name not in sys.modules:
                module = types.ModuleType(name, f"stands for the YAML topology file {file}")
                module.__file__ = str(file)
                sys.modules[name] = module
            names[display_path(file)] = name
        # Class paths resolve beside the file (then beside the files it includes),
        # as a .py target's imports do.
        for file in reversed(self.files):
            parent = str(file.parent)
            if parent not in sys.path:
                sys.path.insert(0, parent)
        return names

    def read(self, fixed: Mapping[str, str] | None = None) -> Document:
        variables = Variables(self.properties, self.environ, fixed)
        doc = load_document(self.path, variables)
        self.files = doc.files
        self.variables = dict(variables.used)
        return doc

    def build(self, overrides: Mapping[str, Any] | None = None) -> TopologySpec:
        conf = dict(overrides or {})
        fixed = conf.pop(VARS_KEY, None)
        if fixed is not None and not (isinstance(fixed, Mapping) and all(isinstance(v, str) for v in fixed.values())):
            raise YamlTopologyError(f"{VARS_KEY} must map variable names to strings, got {fixed!r}")
        if not self.path.is_file():
            raise YamlTopologyError(f"topology file '{self.path}' does not exist")
        doc = self.read(fixed)
        builder = _Builder(doc, self._register())
        spec = builder.build(conf)
        self.specs = builder.specs
        return spec

    def resolved_config(self, overrides: Mapping[str, Any]) -> dict[str, Any]:
        """`overrides` plus the ``${...}`` values this machine resolves (properties,
        environment), for a launcher to pass to the workers."""
        self.read(None)
        return {**overrides, VARS_KEY: dict(self.variables)}

    def __repr__(self) -> str:
        return f"YamlTopology({str(self.path)!r})"
