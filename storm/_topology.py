"""The topology DSL (class-based, streamparse style), the equivalent builder, and
the resolved TopologySpec: validated components, subscriptions, stream table,
task ids. Building a spec is deterministic, so every worker process that rebuilds
it from the same target gets the same task ids and stream ids."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

from . import _config
from ._acking import (
    ACK_ACK,
    ACK_FAIL,
    ACK_INIT,
    ACK_RESULT,
    ACKER,
    ROTATING_BUCKETS,
    AckerDeclaration,
)
from ._component import Bolt, ComponentSpec, Spout, Stream, StreamRef
from ._errors import ConfigError, StormError, TopologyError
from ._grouping import CustomGrouping, Grouping
from ._tuple import DEFAULT_STREAM, StreamMeta

_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")

# Tasks per component at most: beyond it a typo (par=10**9) would exhaust memory.
MAX_PARALLELISM = 10_000
SYSTEM_PREFIX = "__"
# Config keys the system components (the acker's task count and tick rate) derive from.
_SYSTEM_KEYS = frozenset({"topology.workers", "topology.acker.executors", "topology.message.timeout.secs"})


@dataclass(frozen=True)
class Subscription:
    """Bolt `target` reads stream `stream` of component `source` with `grouping`."""

    source: str
    stream: str
    target: str
    grouping: Grouping


@dataclass
class ComponentDef:
    """A validated component of a TopologySpec."""

    name: str
    cls: type
    par: int
    is_spout: bool
    outputs: dict[str, Stream]
    inputs: list[Subscription]
    config: dict[str, Any]
    tasks: list[int] = field(default_factory=list)
    system: bool = False


@dataclass
class TopologySpec:
    """A validated topology: what every worker rebuilds identically."""

    name: str
    components: dict[str, ComponentDef]
    config: dict[str, Any]
    streams: list[StreamMeta]
    stream_ids: dict[tuple[str, str], int]
    task_component: dict[int, str]
    subscribers: dict[tuple[str, str], list[Subscription]]
    #: topology.acker.executors as the user set it (None: one per worker), before
    #: the acker was added; with_config needs it to re-derive the acker.
    requested_ackers: int | None = None

    @property
    def num_tasks(self) -> int:
        return len(self.task_component)

    def component_tasks(self, name: str) -> list[int]:
        return self.components[name].tasks

    def spouts(self) -> list[ComponentDef]:
        return [c for c in self.components.values() if c.is_spout]

    def bolts(self) -> list[ComponentDef]:
        return [c for c in self.components.values() if not c.is_spout]

    def with_config(self, overrides: Mapping[str, Any]) -> TopologySpec:
        """A copy whose topology config has `overrides` applied (validated)."""
        _config.validate(overrides)
        conf = dict(self.config)
        conf.update(overrides)
        name = conf.get("topology.name") or self.name
        conf["topology.name"] = name
        if not _SYSTEM_KEYS.intersection(overrides):
            return TopologySpec(
                name, self.components, conf, self.streams, self.stream_ids,
                self.task_component, self.subscribers, self.requested_ackers,
            )
        # The acker depends on these keys: rebuild it as a fresh build would.
        requested = conf["topology.acker.executors"] = overrides.get(
            "topology.acker.executors", self.requested_ackers
        )
        defs = {
            c.name: replace(
                c,
                outputs={k: v for k, v in c.outputs.items() if not k.startswith(SYSTEM_PREFIX)},
                inputs=[i for i in c.inputs if not i.source.startswith(SYSTEM_PREFIX)],
                tasks=[],
            )
            for c in self.components.values()
            if not c.system
        }
        return _validate_components(_resolve(name, defs, conf, requested))

    def assign(self, workers: int | None = None) -> dict[int, int]:
        """task id -> worker index: round-robin over tasks in id order, so every
        component's tasks spread evenly over the workers (Storm's even scheduler)."""
        n = int(workers if workers is not None else self.config["topology.workers"])
        if n < 1:
            raise TopologyError(f"topology.workers must be at least 1, got {n}")
        return {t: (t - 1) % n for t in sorted(self.task_component)}


def _source_name(src: Any, target: str) -> tuple[str, str]:
    if isinstance(src, StreamRef):
        return src.component_name, src.stream
    if isinstance(src, ComponentSpec):
        return StreamRef(src).component_name, DEFAULT_STREAM
    if isinstance(src, str):
        return src, DEFAULT_STREAM
    if isinstance(src, tuple) and len(src) == 2 and all(isinstance(x, str) for x in src):
        return src[0], src[1]
    raise TopologyError(
        f"bolt '{target}': an input must be a component spec, a component name, "
        f"or spec['stream'], got {src!r}"
    )


def build_spec(
    name: str,
    specs: Sequence[ComponentSpec],
    config: Mapping[str, Any] | None = None,
) -> TopologySpec:
    """Validate components and resolve them into a TopologySpec."""
    if not isinstance(name, str) or not name:
        raise TopologyError("a topology needs a non-empty name")
    conf = _config.merge(config)
    if conf.get("topology.name"):
        name = conf["topology.name"]
    if not _NAME_RE.match(name):
        raise TopologyError(
            f"topology name {name!r} is invalid: use letters, digits, '_', '-' or '.' "
            "(it names files and sockets)"
        )
    conf["topology.name"] = name
    _check_workers(name, conf)

    defs: dict[str, ComponentDef] = {}
    for spec in specs:
        cname = spec.name
        if cname is None:
            raise TopologyError(f"a {spec.cls.__name__} component has no name; pass name=...")
        if not isinstance(cname, str) or not _NAME_RE.match(cname):
            raise TopologyError(
                f"component name {cname!r} is invalid: use letters, digits, '_', '-' or '.'"
            )
        if cname.startswith(SYSTEM_PREFIX):
            raise TopologyError(f"component name '{cname}' is reserved: names starting with '__' are for system components")
        if cname in defs:
            raise TopologyError(f"two components are named '{cname}'; give each component a unique name")
        cls = spec.cls
        if not isinstance(cls, type) or not issubclass(cls, (Spout, Bolt)):
            raise TopologyError(
                f"component '{cname}': {cls!r} is not a Spout or Bolt subclass; "
                "derive it from storm.Spout, storm.Bolt or storm.BasicBolt"
            )
        if not isinstance(spec.par, int) or isinstance(spec.par, bool) or spec.par < 1:
            raise TopologyError(f"component '{cname}': parallelism must be an integer >= 1, got {spec.par!r}")
        if spec.par > MAX_PARALLELISM:
            raise TopologyError(
                f"component '{cname}': parallelism {spec.par} is above the limit of "
                f"{MAX_PARALLELISM} tasks per component"
            )
        is_spout = issubclass(cls, Spout)
        if is_spout and spec.inputs:
            raise TopologyError(f"spout '{cname}' has inputs; spouts cannot subscribe to streams, use a Bolt")
        _config.validate(spec.config, where=f"component '{cname}' config")
        spec_name = cname
        spec.name = spec_name
        outputs = spec.declared_outputs()
        defs[cname] = ComponentDef(cname, cls, spec.par, is_spout, outputs, [], dict(spec.config))

    if not any(d.is_spout for d in defs.values()):
        raise TopologyError(f"topology '{name}' has no spout; add at least one Spout component")

    # Inputs are resolved after every name is known.
    for spec in specs:
        assert spec.name is not None
        d = defs[spec.name]
        raw = spec.inputs
        if raw is None:
            items: list[tuple[Any, Grouping]] = []
        elif isinstance(raw, Mapping):
            items = list(raw.items())
        else:
            items = [(src, Grouping.SHUFFLE) for src in raw]
        if not d.is_spout and not items:
            raise TopologyError(f"bolt '{d.name}' has no inputs; pass inputs={{source: Grouping...}}")
        seen: set[tuple[str, str]] = set()
        for src, grouping in items:
            sname, stream = _source_name(src, d.name)
            if isinstance(grouping, type) and issubclass(grouping, CustomGrouping):
                grouping = Grouping.custom(grouping)
            if not isinstance(grouping, Grouping):
                raise TopologyError(
                    f"bolt '{d.name}': the grouping for input '{sname}' must be a Grouping "
                    f"(e.g. Grouping.shuffle()), got {grouping!r}"
                )
            if sname not in defs:
                known = ", ".join(sorted(defs)) or "none"
                raise TopologyError(
                    f"bolt '{d.name}' subscribes to unknown component '{sname}'; known components: {known}"
                )
            src_def = defs[sname]
            if stream not in src_def.outputs:
                declared = ", ".join(sorted(src_def.outputs)) or "none"
                raise TopologyError(
                    f"bolt '{d.name}' subscribes to stream '{stream}' of '{sname}', which does not "
                    f"declare it; declared streams: {declared}"
                )
            if (sname, stream) in seen:
                raise TopologyError(f"bolt '{d.name}' subscribes to stream '{stream}' of '{sname}' twice")
            seen.add((sname, stream))
            decl = src_def.outputs[stream]
            for f in grouping.field_names:
                if f not in decl.fields:
                    raise TopologyError(
                        f"bolt '{d.name}' groups stream '{stream}' of '{sname}' by field '{f}', "
                        f"which the stream does not declare; its fields are {list(decl.fields)}"
                    )
            if grouping.kind == "direct" and not decl.direct:
                raise TopologyError(
                    f"bolt '{d.name}' uses direct grouping on stream '{stream}' of '{sname}', which is "
                    f"not a direct stream; declare it as Stream(..., name='{stream}', direct=True)"
                )
            if decl.direct and grouping.kind != "direct":
                raise TopologyError(
                    f"bolt '{d.name}' subscribes to direct stream '{stream}' of '{sname}' with "
                    f"{grouping.kind} grouping; a direct stream needs Grouping.direct()"
                )
            d.inputs.append(Subscription(sname, stream, d.name, grouping))

    return _validate_components(_resolve(name, defs, conf, conf.get("topology.acker.executors")))


def _validate_components(spec: TopologySpec) -> TopologySpec:
    """Let component classes check the resolved topology at build time (a
    windowed bolt rejects a message timeout shorter than its window): a class
    method `validate_topology(spec, component_name)` raising TopologyError."""
    for d in spec.components.values():
        check = getattr(d.cls, "validate_topology", None)
        if check is not None:
            check(spec, d.name)
    return spec


def _check_workers(name: str, conf: Mapping[str, Any]) -> None:
    workers = conf["topology.workers"]
    if workers < 1:
        # Caught here, not at scheduling: 0 workers would also silently mean 0 ackers.
        raise TopologyError(f"topology '{name}': topology.workers must be at least 1, got {workers}")


def _resolve(
    name: str, defs: dict[str, ComponentDef], conf: dict[str, Any], requested_ackers: int | None
) -> TopologySpec:
    """Add the system components, then number tasks and streams deterministically."""
    _check_workers(name, conf)
    _add_system_components(defs, conf)

    # Task ids 1..N: user components in name order, then system components.
    ordered = sorted((d for d in defs.values() if not d.system), key=lambda d: d.name)
    ordered += sorted((d for d in defs.values() if d.system), key=lambda d: d.name)
    task_component: dict[int, str] = {}
    next_task = 1
    for d in ordered:
        d.tasks = list(range(next_task, next_task + d.par))
        for t in d.tasks:
            task_component[t] = d.name
        next_task += d.par

    streams: list[StreamMeta] = []
    stream_ids: dict[tuple[str, str], int] = {}
    for d in ordered:
        for sname in sorted(d.outputs):
            s = d.outputs[sname]
            sid = len(streams)
            streams.append(StreamMeta(d.name, sname, s.fields, sid, s.direct, s.ordered))
            stream_ids[(d.name, sname)] = sid

    subscribers: dict[tuple[str, str], list[Subscription]] = {}
    for d in ordered:
        for sub in d.inputs:
            subscribers.setdefault((sub.source, sub.stream), []).append(sub)

    components = {d.name: d for d in ordered}
    return TopologySpec(
        name, components, conf, streams, stream_ids, task_component, subscribers, requested_ackers
    )


def _add_system_components(defs: dict[str, ComponentDef], conf: dict[str, Any]) -> None:
    """Hook for system bolts (the acker); filled in by the reliability layer.

    Before that, a component class may rewire the user components at build time
    with a class method ``wire_topology(defs)`` (stateful bolts add their
    checkpoint-barrier streams this way); it must be idempotent, as it runs again
    when ``with_config`` re-resolves a spec. Each distinct hook runs once."""
    seen: set[Any] = set()
    for d in list(defs.values()):
        hook = getattr(d.cls, "wire_topology", None)
        key = getattr(hook, "__func__", hook)
        if hook is not None and not d.system and key not in seen:
            seen.add(key)
            hook(defs)
    add_acker(defs, conf)


class Topology:
    """Declare a topology as a class whose attributes are component specs::

        class WordCount(Topology):
            config = {"topology.workers": 2}
            sentences = SentenceSpout.spec()
            split = SplitBolt.spec(inputs=[sentences], par=2)
            count = CountBolt.spec(inputs={split: Grouping.fields("word")}, par=2)
    """

    config: ClassVar[dict[str, Any]] = {}
    _specs: ClassVar[list[ComponentSpec]] = []

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # Resolve attributes as Python does, so a subclass that redefines an
        # inherited component replaces it (instead of adding a second one).
        attrs: list[str] = []
        for klass in reversed(cls.__mro__):
            for attr, value in vars(klass).items():
                if isinstance(value, ComponentSpec) and attr not in attrs:
                    attrs.append(attr)
        specs: list[ComponentSpec] = []
        seen: set[int] = set()
        for attr in attrs:
            value = getattr(cls, attr)
            if not isinstance(value, ComponentSpec):
                continue
            if id(value) in seen:
                raise TopologyError(
                    f"topology '{cls.__name__}': the same spec is assigned to two attributes "
                    f"(second one: '{attr}'); call .spec() once per component"
                )
            if value.name is None:
                value.name = attr
            specs.append(value)
            seen.add(id(value))
        cls._specs = specs

    @classmethod
    def build(cls, overrides: Mapping[str, Any] | None = None) -> TopologySpec:
        """Validate and resolve this topology (with config `overrides`)."""
        conf = dict(cls.config)
        conf.update(overrides or {})
        return build_spec(cls.__name__, cls._specs, conf)


class InputDeclarer:
    """Returned by TopologyBuilder.set_bolt: add inputs Storm-style."""

    def __init__(self, spec: ComponentSpec) -> None:
        self._spec = spec

    def _add(self, component: str, stream: str, grouping: Grouping) -> InputDeclarer:
        if not isinstance(self._spec.inputs, dict):
            # Keep inputs given to set_bolt(inputs=[...]) (shuffle grouping each).
            self._spec.inputs = {src: Grouping.SHUFFLE for src in self._spec.inputs or ()}
        key = (component, stream)
        if key in self._spec.inputs:
            raise TopologyError(
                f"bolt '{self._spec.name}' subscribes to stream '{stream}' of '{component}' twice"
            )
        self._spec.inputs[key] = grouping
        return self

    def shuffle_grouping(self, component: str, stream: str = DEFAULT_STREAM) -> InputDeclarer:
        return self._add(component, stream, Grouping.shuffle())

    def fields_grouping(self, component: str, fields: str | Sequence[str], stream: str = DEFAULT_STREAM) -> InputDeclarer:
        return self._add(component, stream, Grouping.fields(fields))

    def partial_key_grouping(self, component: str, fields: str | Sequence[str], stream: str = DEFAULT_STREAM) -> InputDeclarer:
        return self._add(component, stream, Grouping.partial_key(fields))

    def all_grouping(self, component: str, stream: str = DEFAULT_STREAM) -> InputDeclarer:
        return self._add(component, stream, Grouping.all())

    def global_grouping(self, component: str, stream: str = DEFAULT_STREAM) -> InputDeclarer:
        return self._add(component, stream, Grouping.global_())

    def none_grouping(self, component: str, stream: str = DEFAULT_STREAM) -> InputDeclarer:
        return self._add(component, stream, Grouping.none())

    def direct_grouping(self, component: str, stream: str = DEFAULT_STREAM) -> InputDeclarer:
        return self._add(component, stream, Grouping.direct())

    def local_or_shuffle_grouping(self, component: str, stream: str = DEFAULT_STREAM) -> InputDeclarer:
        return self._add(component, stream, Grouping.local_or_shuffle())

    def custom_grouping(self, component: str, grouping: type[CustomGrouping], stream: str = DEFAULT_STREAM, **kwargs: Any) -> InputDeclarer:
        return self._add(component, stream, Grouping.custom(grouping, **kwargs))


class TopologyBuilder:
    """The builder form of the DSL (Storm's TopologyBuilder)::

        b = TopologyBuilder("wordcount")
        b.set_spout("sentences", SentenceSpout)
        b.set_bolt("split", SplitBolt, par=2).shuffle_grouping("sentences")
        b.set_bolt("count", CountBolt, par=2).fields_grouping("split", "word")
        spec = b.build()
    """

    def __init__(self, name: str, config: Mapping[str, Any] | None = None) -> None:
        self.name = name
        self.config = dict(config or {})
        self._specs: list[ComponentSpec] = []
        self._names: set[str] = set()

    def _add(self, spec: ComponentSpec) -> ComponentSpec:
        assert spec.name is not None
        if spec.name in self._names:
            raise TopologyError(f"two components are named '{spec.name}'; give each component a unique name")
        self._names.add(spec.name)
        self._specs.append(spec)
        return spec

    def set_spout(self, name: str, cls: type[Spout], par: int = 1, config: Mapping[str, Any] | None = None,
                  outputs: Sequence[str | Stream] | None = None) -> ComponentSpec:
        if not (isinstance(cls, type) and issubclass(cls, Spout)):
            raise TopologyError(
                f"component '{name}': {cls!r} is not a Spout subclass; set_spout() needs a "
                "storm.Spout subclass (use set_bolt() for bolts)"
            )
        return self._add(cls.spec(name=name, par=par, config=config, outputs=outputs))

    def set_bolt(self, name: str, cls: type[Bolt], par: int = 1, config: Mapping[str, Any] | None = None,
                 inputs: Mapping[Any, Grouping] | Sequence[Any] | None = None,
                 outputs: Sequence[str | Stream] | None = None) -> InputDeclarer:
        if not (isinstance(cls, type) and issubclass(cls, Bolt)):
            raise TopologyError(
                f"component '{name}': {cls!r} is not a Bolt subclass; set_bolt() needs a "
                "storm.Bolt or storm.BasicBolt subclass (use set_spout() for spouts)"
            )
        spec = self._add(cls.spec(name=name, par=par, config=config, outputs=outputs, inputs=inputs))
        return InputDeclarer(spec)

    def build(self, overrides: Mapping[str, Any] | None = None) -> TopologySpec:
        conf = dict(self.config)
        conf.update(overrides or {})
        return build_spec(self.name, self._specs, conf)


def with_parallelism(spec: TopologySpec, parallelism: Mapping[str, int]) -> TopologySpec:
    """`spec` with some components' parallelism changed (a rebalance's -e);
    task ids are renumbered exactly as a fresh build would number them."""
    if not parallelism:
        return spec
    for name, par in parallelism.items():
        comp = spec.components.get(name)
        if comp is None or comp.system:
            known = ", ".join(c for c in spec.components if not spec.components[c].system)
            raise StormError(f"topology '{spec.name}' has no component '{name}'; its components: {known}")
        if not isinstance(par, int) or isinstance(par, bool) or par < 1:
            raise StormError(f"component '{name}': parallelism must be an integer >= 1, got {par!r}")
    defs = {
        c.name: replace(
            c,
            par=int(parallelism.get(c.name, c.par)),
            outputs={k: v for k, v in c.outputs.items() if not k.startswith(SYSTEM_PREFIX)},
            inputs=[i for i in c.inputs if not i.source.startswith(SYSTEM_PREFIX)],
            tasks=[],
        )
        for c in spec.components.values()
        if not c.system
    }
    conf = dict(spec.config)
    conf["topology.acker.executors"] = spec.requested_ackers
    return _resolve(spec.name, defs, conf, spec.requested_ackers)


def add_acker(defs: dict[str, ComponentDef], conf: dict[str, Any]) -> None:
    """Add the `__acker` system bolt and the ack streams to a topology being built."""
    n = conf.get("topology.acker.executors")
    if n is None:
        n = int(conf.get("topology.workers", 1))
    if not isinstance(n, int) or n < 0:
        raise ConfigError(f"topology.acker.executors must be an integer >= 0, got {n!r}")
    conf["topology.acker.executors"] = n
    if n == 0:
        return
    timeout = float(conf.get("topology.message.timeout.secs", 30))
    acker = ComponentDef(
        name=ACKER,
        cls=AckerDeclaration,
        par=n,
        is_spout=False,
        outputs={ACK_RESULT: Stream(("root", "ok"), ACK_RESULT, direct=True)},
        inputs=[],
        config={"topology.tick.tuple.freq.secs": max(timeout / (ROTATING_BUCKETS - 1), 0.05)},
        system=True,
    )
    direct = Grouping.direct()
    for d in sorted(defs.values(), key=lambda d: d.name):
        d.outputs[ACK_ACK] = Stream(("root", "xor"), ACK_ACK, direct=True)
        d.outputs[ACK_FAIL] = Stream(("root",), ACK_FAIL, direct=True)
        acker.inputs.append(Subscription(d.name, ACK_ACK, ACKER, direct))
        acker.inputs.append(Subscription(d.name, ACK_FAIL, ACKER, direct))
        if d.is_spout:
            d.outputs[ACK_INIT] = Stream(("root", "xor", "task"), ACK_INIT, direct=True)
            acker.inputs.append(Subscription(d.name, ACK_INIT, ACKER, direct))
            d.inputs.append(Subscription(ACKER, ACK_RESULT, d.name, direct))
    defs[ACKER] = acker
