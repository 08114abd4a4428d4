"""The Trident stream API and its compiler to an ordinary TopologySpec.

Operations that keep a batch's partitioning (each, map, flat_map, filter,
project, partition_aggregate) are fused into the component of their stream;
repartitions (shuffle, partition_by, group_by, global_, broadcast, merge,
join) start a new component. A join component has two inputs, fields-grouped
on the join fields, each entering through its own side pipe into the join's
batch buffer. Every component is a `TridentBolt` subclass made here, plus one
`MasterCoordinator` spout ("trident-coord")."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from .._component import Stream as StreamDecl
from .._errors import TopologyError
from .._grouping import Grouping
from .._topology import TopologyBuilder, TopologySpec
from ._executor import (
    ATTEMPT,
    BATCH_STREAM,
    COMMIT_STREAM,
    COORD_STREAM,
    TXID,
    MasterCoordinator,
    TridentBolt,
    meta_server_state,
    stream_fields,
)
from ._operations import Aggregator, CombinerAggregator, ReducerAggregator
from ._pipes import (
    JOIN_HOWS,
    AggregatePipe,
    EmitPipe,
    FunctionPipe,
    JoinPipe,
    JoinSidePipe,
    PersistPipe,
    Pipe,
    QueryPipe,
    _rows,
)
from ._spouts import TridentSpout
from ._state import StateFactory

COORDINATOR = "trident-coord"
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_\-]*$")


class _Component:
    def __init__(self, topo: TridentTopology, name: str, par: int, fields: Sequence[str],
                 spout: TridentSpout | None = None) -> None:
        if par < 1:
            raise TopologyError(f"Trident component '{name}': parallelism must be >= 1, got {par}")
        self.topo = topo
        self.name = name
        self.par = par
        self.spout = spout
        self.pipes: list[Pipe] = [Pipe(0, fields)]
        self.inputs: list[tuple[str, str, Grouping]] = []
        self.downstream: list[str] = []
        self.streams: dict[str, tuple[str, ...]] = {}
        self.side_roots: dict[tuple[str, str], Pipe] = {}  # join components only

    def add(self, parent: Pipe, pipe: Pipe) -> Pipe:
        parent.children.append(pipe)
        self.pipes.append(pipe)
        return pipe

    def next_pid(self) -> int:
        return len(self.pipes)


def _check_fields(where: str, have: Sequence[str], want: Iterable[str]) -> None:
    for f in want:
        if f not in have:
            raise TopologyError(f"{where}: the stream has no field '{f}'; its fields are {list(have)}")


def _fieldlist(fields: str | Sequence[str]) -> tuple[str, ...]:
    return (fields,) if isinstance(fields, str) else tuple(fields)


class TridentState:
    """What persistent_aggregate returns: the state factory and where it lives."""

    def __init__(self, name: str, factory: StateFactory, component: str,
                 group: Sequence[str] = ()) -> None:
        self.name = name
        self.factory = factory
        self.component = component
        self.group = tuple(group)


class Stream:
    """A stream of batches. Operations return new streams; nothing runs until
    the topology is built and submitted."""

    def __init__(self, comp: _Component, pipe: Pipe) -> None:
        self._comp = comp
        self._pipe = pipe

    @property
    def fields(self) -> tuple[str, ...]:
        return self._pipe.fields

    def _function(self, fields: Sequence[str], fn: Callable[[list[Any]], Iterable[list[Any]]],
                  label: str) -> Stream:
        c = self._comp
        return Stream(c, c.add(self._pipe, FunctionPipe(c.next_pid(), fields, fn, label)))

    def _select(self, where: str, fields: str | Sequence[str]) -> list[int]:
        fs = _fieldlist(fields)
        _check_fields(where, self.fields, fs)
        return [self.fields.index(f) for f in fs]

    # -- in-partition operations -------------------------------------------
    def each(self, fields: str | Sequence[str], function: Callable[..., Any],
             out_fields: str | Sequence[str]) -> Stream:
        """Call ``function(*values of fields)``; it returns zero or more rows
        (tuples of out_fields, or scalars for one field), each appended to the
        input tuple: ``each("sentence", lambda s: s.split(), "word")``."""
        idx = self._select(f"each({function!r})", fields)
        out = _fieldlist(out_fields)
        dup = set(out) & set(self.fields)
        if dup:
            raise TopologyError(f"each: output fields {sorted(dup)} already exist in the stream; project first")
        where = f"each function {getattr(function, '__name__', function)!r}"

        def run(values: list[Any]) -> Iterable[list[Any]]:
            return [values + row for row in _rows(function(*[values[i] for i in idx]), len(out), where)]

        return self._function(self.fields + out, run, "each")

    def map(self, fields: str | Sequence[str], function: Callable[..., Any],
            out_fields: str | Sequence[str]) -> Stream:
        """Replace each tuple by ``function(*values of fields)`` (one row)."""
        idx = self._select("map", fields)
        out = _fieldlist(out_fields)
        where = f"map function {getattr(function, '__name__', function)!r}"

        def run(values: list[Any]) -> Iterable[list[Any]]:
            return _rows([function(*[values[i] for i in idx])], len(out), where)

        return self._function(out, run, "map")

    def flat_map(self, fields: str | Sequence[str], function: Callable[..., Any],
                 out_fields: str | Sequence[str]) -> Stream:
        """Replace each tuple by the rows ``function(*values of fields)`` returns."""
        idx = self._select("flat_map", fields)
        out = _fieldlist(out_fields)
        where = f"flat_map function {getattr(function, '__name__', function)!r}"

        def run(values: list[Any]) -> Iterable[list[Any]]:
            return _rows(function(*[values[i] for i in idx]), len(out), where)

        return self._function(out, run, "flat_map")

    def filter(self, fields: str | Sequence[str], predicate: Callable[..., Any]) -> Stream:
        """Keep the tuples for which ``predicate(*values of fields)`` is true."""
        idx = self._select("filter", fields)

        def run(values: list[Any]) -> Iterable[list[Any]]:
            return (values,) if predicate(*[values[i] for i in idx]) else ()

        return self._function(self.fields, run, "filter")

    def project(self, fields: str | Sequence[str]) -> Stream:
        """Keep only `fields`, in that order."""
        idx = self._select("project", fields)
        return self._function(_fieldlist(fields), lambda v: ([v[i] for i in idx],), "project")

    def partition_aggregate(self, agg: CombinerAggregator | ReducerAggregator | Aggregator,
                            out_fields: str | Sequence[str]) -> Stream:
        """Aggregate each partition's share of a batch; rows follow when it is complete."""
        return self._aggregate_here((), agg, out_fields)

    def _aggregate_here(self, group: Sequence[str], agg: Any, out_fields: str | Sequence[str]) -> Stream:
        _check_fields(f"aggregate with {type(agg).__name__}", self.fields, tuple(group) + tuple(agg.input_fields))
        c = self._comp
        pipe = AggregatePipe(c.next_pid(), self.fields, group, agg, _fieldlist(out_fields))
        return Stream(c, c.add(self._pipe, pipe))

    def state_query(self, state: TridentState, fields: str | Sequence[str],
                    out_field: str = "value") -> Stream:
        """Append the current value in `state` of each tuple's key (the values
        of `fields`, as many as the state's group fields); the state is read
        once per batch, when this task has the whole batch."""
        fs = _fieldlist(fields)
        _check_fields("state_query", self.fields, fs)
        if len(fs) != len(state.group):
            raise TopologyError(f"state_query on '{state.name}': give {len(state.group)} key field(s) "
                                f"(it is grouped by {list(state.group)}), got {list(fs)}")
        if out_field in self.fields:
            raise TopologyError(f"state_query: the stream already has a field '{out_field}'; pass out_field=...")
        c = self._comp
        return Stream(c, c.add(self._pipe, QueryPipe(c.next_pid(), self.fields, fs, state.factory, out_field)))

    # -- repartitioning ------------------------------------------------------
    def _repartition(self, grouping: Grouping, par: int, hint: str) -> Stream:
        topo = self._comp.topo
        comp = topo._new_component(hint, par, self.fields)
        topo._connect(self, comp, grouping)
        return Stream(comp, comp.pipes[0])

    def shuffle(self, par: int = 1) -> Stream:
        return self._repartition(Grouping.shuffle(), par, "shuffle")

    def partition_by(self, fields: str | Sequence[str], par: int = 1) -> Stream:
        fs = _fieldlist(fields)
        _check_fields("partition_by", self.fields, fs)
        return self._repartition(Grouping.fields(*fs), par, "partition")

    def broadcast(self, par: int = 1) -> Stream:
        return self._repartition(Grouping.all(), par, "broadcast")

    def global_(self) -> Stream:
        return self._repartition(Grouping.global_(), 1, "global")

    def join(self, other: Stream, on: str | Sequence[str], other_on: str | Sequence[str] | None = None,
             out_fields: str | Sequence[str] | None = None, how: str = "inner", par: int = 1) -> Stream:
        """Join this stream with `other` within each batch, on fields `on` of
        this stream equal to `other_on` (default: the same names) of `other`:
        ``orders.join(users, on="user_id")``. See TridentTopology.join."""
        return self._comp.topo.join(self, on, other, on if other_on is None else other_on,
                                    out_fields, how, par)

    def group_by(self, fields: str | Sequence[str]) -> GroupedStream:
        fs = _fieldlist(fields)
        _check_fields("group_by", self.fields, fs)
        return GroupedStream(self, fs)

    def aggregate(self, agg: CombinerAggregator | ReducerAggregator | Aggregator,
                  out_fields: str | Sequence[str]) -> Stream:
        """Aggregate each whole batch (in one task)."""
        return self.global_()._aggregate_here((), agg, out_fields)

    def persistent_aggregate(self, factory: StateFactory, agg: CombinerAggregator | ReducerAggregator,
                             out_fields: str | Sequence[str] = "value", name: str | None = None) -> TridentState:
        """Aggregate every batch into one global value of a state (key [])."""
        return self.global_()._persist((), factory, agg, name)

    def partition_persist(self, factory: StateFactory, agg: CombinerAggregator | ReducerAggregator,
                          key_fields: str | Sequence[str] = (), name: str | None = None) -> TridentState:
        """Fold each partition's share of a batch into the state, keyed by
        `key_fields`, without a repartition. Each key must live in one
        partition (e.g. after ``partition_by(key_fields)``): two tasks writing
        one key in the same txid would skip each other's update."""
        return self._persist(_fieldlist(key_fields), factory, agg, name)

    def _persist(self, group: Sequence[str], factory: StateFactory, agg: Any, name: str | None) -> TridentState:
        _check_fields(f"persistent_aggregate with {type(agg).__name__}", self.fields,
                      tuple(group) + tuple(agg.input_fields))
        c = self._comp
        sname = name or c.name
        if sname in c.topo.states:
            raise TopologyError(f"two states are named '{sname}'; pass name=... to persistent_aggregate")
        c.add(self._pipe, PersistPipe(c.next_pid(), self.fields, group, agg, factory, sname))
        state = TridentState(sname, factory, c.name, group)
        c.topo.states[sname] = state
        return state


class GroupedStream:
    """A stream grouped by fields: aggregate per group within a batch, or into a state."""

    def __init__(self, stream: Stream, fields: tuple[str, ...]) -> None:
        self.stream = stream
        self.fields = fields

    def aggregate(self, agg: CombinerAggregator | ReducerAggregator | Aggregator,
                  out_fields: str | Sequence[str], par: int = 1) -> Stream:
        """Per group and batch: rows of group fields + out_fields."""
        s = self.stream._repartition(Grouping.fields(*self.fields), par, "aggregate")
        return s._aggregate_here(self.fields, agg, out_fields)

    def persistent_aggregate(self, factory: StateFactory, agg: CombinerAggregator | ReducerAggregator,
                             out_fields: str | Sequence[str] = "value", par: int = 1,
                             name: str | None = None) -> TridentState:
        """Fold every batch into a state keyed by the group values, exactly once."""
        s = self.stream._repartition(Grouping.fields(*self.fields), par, name or "persist")
        return s._persist(self.fields, factory, agg, name)


class TridentTopology:
    """A Trident topology; ``build()`` gives an ordinary TopologySpec.

    Example::

        t = TridentTopology("wordcount")
        counts = (t.new_stream("sentences", TransactionalListSpout(rows, ["sentence"]))
                   .each("sentence", str.split, "word")
                   .group_by("word")
                   .persistent_aggregate(SQLiteState("counts.db"), Count(), "count"))
        spec = t.build()
    """

    def __init__(self, name: str = "trident", config: Mapping[str, Any] | None = None) -> None:
        self.name = name
        self.config = dict(config or {})
        self.components: dict[str, _Component] = {}
        self.states: dict[str, TridentState] = {}
        self._count = 0

    def _new_component(self, hint: str, par: int, fields: Sequence[str],
                       spout: TridentSpout | None = None) -> _Component:
        self._count += 1
        name = hint if spout is not None else f"b{self._count}-{hint}"
        if not _NAME.match(name):
            raise TopologyError(f"Trident name {name!r} is invalid: use letters, digits, '_' or '-'")
        if name in self.components:
            raise TopologyError(f"two Trident components are named '{name}'")
        c = _Component(self, name, par, fields, spout)
        self.components[name] = c
        return c

    def _connect(self, src: Stream, dest: _Component, grouping: Grouping) -> tuple[str, str]:
        c = src._comp
        sname = f"s{len(c.streams) + 1}"
        c.streams[sname] = src.fields
        c.add(src._pipe, EmitPipe(c.next_pid(), src.fields, sname))
        dest.inputs.append((c.name, sname, grouping))
        if dest.name not in c.downstream:
            c.downstream.append(dest.name)
        return c.name, sname

    def new_stream(self, name: str, spout: TridentSpout, par: int = 1) -> Stream:
        """A stream of the batches `spout` emits; `par` emitter tasks share its partitions."""
        if not isinstance(spout, TridentSpout):
            raise TopologyError(f"new_stream('{name}'): {spout!r} is not a TridentSpout")
        comp = self._new_component(name, par, spout.fields, spout)
        return Stream(comp, comp.pipes[0])

    def merge(self, *streams: Stream, par: int = 1) -> Stream:
        """One stream of the tuples of all `streams` (same number of fields;
        the names are the first stream's)."""
        if not streams:
            raise TopologyError("merge() needs at least one stream")
        width = len(streams[0].fields)
        for s in streams:
            if len(s.fields) != width:
                raise TopologyError(f"merge: streams have different fields: {[list(x.fields) for x in streams]}")
        comp = self._new_component("merge", par, streams[0].fields)
        for s in streams:
            self._connect(s, comp, Grouping.shuffle())
        return Stream(comp, comp.pipes[0])

    def join(self, left: Stream, left_fields: str | Sequence[str], right: Stream,
             right_fields: str | Sequence[str], out_fields: str | Sequence[str] | None = None,
             how: str = "inner", par: int = 1) -> Stream:
        """Join the tuples of `left` and `right` of the same batch whose
        `left_fields` equal their `right_fields` (Trident's join: within a
        batch, never across batches). Rows are the join fields, then the other
        fields of `left`, then the other fields of `right`; `out_fields` renames
        them (default: the left join fields' names and the others' own, which
        must not clash). ``how="left"`` keeps left tuples without a match
        (right fields None), ``"outer"`` right ones too. Both inputs are
        fields-grouped on their join fields over `par` tasks, and a task emits
        its joined rows when it has the whole batch."""
        if how not in JOIN_HOWS:
            raise TopologyError(f"join: how={how!r} is unknown; use one of {', '.join(JOIN_HOWS)}")
        lf, rf = _fieldlist(left_fields), _fieldlist(right_fields)
        if not lf or len(lf) != len(rf):
            raise TopologyError(f"join: give as many join fields for each stream (at least one), "
                                f"got {list(lf)} and {list(rf)}")
        _check_fields("join (left stream)", left.fields, lf)
        _check_fields("join (right stream)", right.fields, rf)
        if len(set(lf)) != len(lf) or len(set(rf)) != len(rf):
            raise TopologyError(f"join: a join field is named twice in {list(lf)} / {list(rf)}")
        default = (*lf, *(f for f in left.fields if f not in lf), *(f for f in right.fields if f not in rf))
        if out_fields is None:
            dup = sorted({f for f in default if default.count(f) > 1})
            if dup:
                raise TopologyError(f"join: both streams have fields {dup}; pass out_fields=[...] "
                                    f"({len(default)} names) or project first")
            out = default
        else:
            out = _fieldlist(out_fields)
            if len(out) != len(default):
                raise TopologyError(f"join: out_fields needs {len(default)} names (join fields, the left's "
                                    f"others, the right's others: {list(default)}), got {list(out)}")
            if len(set(out)) != len(out):
                raise TopologyError(f"join: out_fields {list(out)} names a field twice")
        comp = self._new_component("join", par, out)
        root = JoinPipe(0, out, left.fields, lf, right.fields, rf, how)
        comp.pipes[0] = root
        for side, (stream, fields) in enumerate(((left, lf), (right, rf))):
            key = self._connect(stream, comp, Grouping.fields(*fields))
            # A side pipe feeds the join through its buffer, not as a child.
            side_pipe = JoinSidePipe(comp.next_pid(), stream.fields, root, side)
            comp.pipes.append(side_pipe)
            comp.side_roots[key] = side_pipe
        return Stream(comp, root)

    def build_builder(self) -> TopologyBuilder:
        b = TopologyBuilder(self.name, self.config)
        emitters = [c for c in self.components.values() if c.spout is not None]
        if not emitters:
            raise TopologyError(f"Trident topology '{self.name}' has no stream; call new_stream(...)")
        # Components are added in name order: TopologySpec.with_config (the
        # worker's path when overrides touch topology.workers) rebuilds the
        # acker's inputs in name order, and the fingerprint hashes that order.
        added_coordinator = False
        meta_state = meta_server_state([st.factory for _, st in sorted(self.states.items())])
        for c in sorted(self.components.values(), key=lambda c: c.name):
            if not added_coordinator and c.name > COORDINATOR:
                self._add_coordinator(b, meta_state)
                added_coordinator = True
            committer = any(isinstance(p, PersistPipe) for p in c.pipes)
            cls = type(f"Trident_{c.name.replace('-', '_')}", (TridentBolt,), {
                "root": c.pipes[0],
                "pipes": list(c.pipes),
                "spout": c.spout,
                "upstream": tuple(dict.fromkeys(src for src, _, _ in c.inputs)),
                "downstream": tuple(c.downstream),
                "side_roots": dict(c.side_roots),
                "meta_state": meta_state,
                "__module__": __name__,
            })
            outputs: list[StreamDecl] = [StreamDecl(stream_fields(f), name=s) for s, f in c.streams.items()]
            outputs.append(StreamDecl((TXID, ATTEMPT, "$count"), name=COORD_STREAM, direct=True))
            inputs: dict[Any, Grouping] = {}
            if c.spout is not None:
                inputs[(COORDINATOR, BATCH_STREAM)] = Grouping.all()
            for src, stream, grouping in c.inputs:
                inputs[(src, stream)] = grouping
                inputs[(src, COORD_STREAM)] = Grouping.direct()
            if committer:
                inputs[(COORDINATOR, COMMIT_STREAM)] = Grouping.all()
            b.set_bolt(c.name, cls, par=c.par, inputs=inputs, outputs=outputs)
        if not added_coordinator:
            self._add_coordinator(b, meta_state)
        return b

    @staticmethod
    def _add_coordinator(b: TopologyBuilder, meta_state: StateFactory | None) -> None:
        cls = MasterCoordinator if meta_state is None else type(
            "TridentCoordinator", (MasterCoordinator,), {"meta_state": meta_state, "__module__": __name__})
        b.set_spout(COORDINATOR, cls, outputs=[
            StreamDecl((TXID, ATTEMPT), name=BATCH_STREAM), StreamDecl((TXID, ATTEMPT), name=COMMIT_STREAM)])

    def build(self, overrides: Mapping[str, Any] | None = None) -> TopologySpec:
        """The compiled topology (an ordinary TopologySpec)."""
        spec = self.build_builder().build(overrides)
        if spec.config.get("topology.acker.executors") == 0:
            # Batch completion is the coordinator's tuple tree being acked: without
            # ackers every batch would look complete at once and commit unprocessed.
            raise TopologyError(f"Trident topology '{spec.name}' needs acking: do not set "
                                "topology.acker.executors to 0")
        return spec
