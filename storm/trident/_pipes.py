"""The in-task dataflow of a compiled Trident component: a tree of pipes that
each tuple of a batch is pushed through (functions, filters, projections),
ending in emits to the next component, batch aggregations (finished when the
batch is complete) or persistence (applied at the batch's commit). Owns no
sockets and no batch bookkeeping: the executor bolt drives it."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from ._operations import Aggregator, CombinerAggregator, ReducerAggregator
from ._state import Backing, StateFactory, TxidMapState, Updater, current_value, encode_key

if TYPE_CHECKING:
    from ._executor import BatchRecord


def _rows(result: Any, width: int, where: str) -> Iterable[list[Any]]:
    """A function's result as output rows: an iterable of tuples, or of scalars
    when there is one output field."""
    if result is None:
        return ()
    rows = []
    for r in result:
        if isinstance(r, (list, tuple)):
            row = list(r)
        elif width == 1:
            row = [r]
        else:
            raise TypeError(f"{where}: expected rows of {width} values, got {r!r}")
        if len(row) != width:
            raise TypeError(f"{where}: expected rows of {width} values, got {r!r}")
        rows.append(row)
    return rows


class Pipe:
    """A step of the dataflow; `fields` are the fields of what it outputs."""

    def __init__(self, pid: int, fields: Sequence[str]) -> None:
        self.pid = pid
        self.fields = tuple(fields)
        self.children: list[Pipe] = []

    def push(self, values: list[Any], b: BatchRecord) -> None:
        for c in self.children:
            c.push(values, b)

    def describe(self) -> str:
        return type(self).__name__


class FunctionPipe(Pipe):
    """each / map / flat_map / filter / project, as one function of the values
    to zero or more output rows."""

    def __init__(self, pid: int, fields: Sequence[str], fn: Callable[[list[Any]], Iterable[list[Any]]],
                 label: str) -> None:
        super().__init__(pid, fields)
        self.fn = fn
        self.label = label

    def push(self, values: list[Any], b: BatchRecord) -> None:
        for row in self.fn(values):
            for c in self.children:
                c.push(row, b)

    def describe(self) -> str:
        return self.label


class EmitPipe(Pipe):
    """Sends the values on to another component on stream `stream`."""

    def __init__(self, pid: int, fields: Sequence[str], stream: str) -> None:
        super().__init__(pid, fields)
        self.stream = stream

    def push(self, values: list[Any], b: BatchRecord) -> None:
        b.emit(self.stream, values)


def _selector(in_fields: Sequence[str], fields: Sequence[str]) -> Callable[[list[Any]], list[Any]]:
    idx = [list(in_fields).index(f) for f in fields]
    return lambda values: [values[i] for i in idx]


class BatchPipe(Pipe):
    """A step that outputs only when this task has the whole batch."""

    def finish(self, b: BatchRecord) -> None:
        raise NotImplementedError


class QueryPipe(BatchPipe):
    """state_query: when the batch is complete, read the current value of each
    tuple's key from the state (one multi_get per batch) and append it."""

    def __init__(self, pid: int, in_fields: Sequence[str], key_fields: Sequence[str],
                 factory: StateFactory, out_field: str) -> None:
        super().__init__(pid, (*in_fields, out_field))
        self.key = _selector(in_fields, key_fields)
        self.factory = factory
        self._backing: Backing | None = None

    def push(self, values: list[Any], b: BatchRecord) -> None:
        b.aggs.setdefault(self.pid, []).append(values)

    def finish(self, b: BatchRecord) -> None:
        rows: list[list[Any]] = b.aggs.pop(self.pid, [])
        if not rows:
            return
        if self._backing is None:  # one reader per worker process, opened on first use
            self._backing = self.factory.backing()
        keys = [encode_key(self.key(v)) for v in rows]
        unique = list(dict.fromkeys(keys))
        found = dict(zip(unique, self._backing.multi_get(unique), strict=True))
        kind = self.factory.kind
        for values, k in zip(rows, keys, strict=True):
            out = [*values, current_value(kind, found[k])]
            for c in self.children:
                c.push(out, b)


class AggregatePipe(BatchPipe):
    """A batch aggregation, per group (group_by ... aggregate) or for the whole
    partition; its rows are pushed on when the batch is complete."""

    def __init__(self, pid: int, in_fields: Sequence[str], group: Sequence[str], agg: Any,
                 out_fields: Sequence[str]) -> None:
        super().__init__(pid, tuple(group) + tuple(out_fields))
        self.key = _selector(in_fields, group)
        self.select = _selector(in_fields, agg.input_fields)
        self.agg = agg
        self.width = len(out_fields)

    def push(self, values: list[Any], b: BatchRecord) -> None:
        groups: dict[tuple[Any, ...], Any] = b.aggs.setdefault(self.pid, {})
        key = tuple(self.key(values))
        sel = self.select(values)
        agg = self.agg
        if isinstance(agg, CombinerAggregator):
            v = agg.init(sel)
            groups[key] = agg.combine(groups[key], v) if key in groups else v
        elif isinstance(agg, ReducerAggregator):
            groups[key] = agg.reduce(groups[key] if key in groups else agg.init(), sel)
        else:
            assert isinstance(agg, Aggregator)
            groups[key] = agg.aggregate(groups[key] if key in groups else agg.init(), sel)

    def finish(self, b: BatchRecord) -> None:
        groups = b.aggs.pop(self.pid, {})
        for key, value in groups.items():
            if isinstance(self.agg, Aggregator):
                rows = _rows(self.agg.complete(value), self.width, f"{type(self.agg).__name__}.complete")
            else:
                rows = [[value]]
            for row in rows:
                out = [*key, *row]
                for c in self.children:
                    c.push(out, b)


class PersistPipe(Pipe):
    """persistent_aggregate: per batch, combine (or collect, for a reducer) per
    group key; at the batch's commit, apply the partials to the state."""

    def __init__(self, pid: int, in_fields: Sequence[str], group: Sequence[str], agg: Any,
                 factory: StateFactory, state_name: str) -> None:
        super().__init__(pid, ())
        if not isinstance(agg, (CombinerAggregator, ReducerAggregator)):
            raise TypeError("persistent_aggregate needs a CombinerAggregator or ReducerAggregator")
        self.key = _selector(in_fields, group)
        self.select = _selector(in_fields, agg.input_fields)
        self.agg = agg
        self.factory = factory
        self.state_name = state_name

    def push(self, values: list[Any], b: BatchRecord) -> None:
        part: dict[tuple[Any, ...], Any] = b.aggs.setdefault(self.pid, {})
        key = tuple(self.key(values))  # encoded once per batch, at commit
        sel = self.select(values)
        agg = self.agg
        if isinstance(agg, CombinerAggregator):
            v = agg.init(sel)
            part[key] = agg.combine(part[key], v) if key in part else v
        else:
            part.setdefault(key, []).append(sel)

    def commit(self, state: TxidMapState, txid: int, part: dict[tuple[Any, ...], Any]) -> None:
        """Apply one batch's partials (a pipe is shared by the tasks of a
        worker; the state is the calling task's own)."""
        agg = self.agg
        updates: dict[str, Updater] = {}
        if isinstance(agg, CombinerAggregator):
            for key, p in part.items():
                def combine(old: Any, p: Any = p) -> Any:
                    return agg.combine(agg.zero() if old is None else old, p)
                updates[encode_key(key)] = combine
        else:
            assert isinstance(agg, ReducerAggregator)
            for key, rows in part.items():
                def fold(old: Any, rows: list[Any] = rows) -> Any:
                    acc = agg.init() if old is None else old
                    for r in rows:
                        acc = agg.reduce(acc, r)
                    return acc
                updates[encode_key(key)] = fold
        state.apply(txid, updates)


JOIN_HOWS = ("inner", "left", "outer")


class JoinPipe(BatchPipe):
    """join: the root of a join component. Each side's tuples of a batch are
    collected per join key (by a `JoinSidePipe`); when this task has the whole
    batch, every pair of rows with equal keys is pushed on as join fields + the
    rest of the left row + the rest of the right row. "left" also pushes left
    rows without a match (right fields None), "outer" right rows without a
    match as well (left fields None). Equal keys meet in one task because both
    inputs are fields-grouped on their join fields."""

    def __init__(self, pid: int, out_fields: Sequence[str], left_fields: Sequence[str],
                 left_on: Sequence[str], right_fields: Sequence[str], right_on: Sequence[str],
                 how: str) -> None:
        super().__init__(pid, out_fields)
        self.how = how
        self.keys = (_selector(left_fields, left_on), _selector(right_fields, right_on))
        self.rests = (_selector(left_fields, [f for f in left_fields if f not in left_on]),
                      _selector(right_fields, [f for f in right_fields if f not in right_on]))
        self.widths = (len(left_fields) - len(left_on), len(right_fields) - len(right_on))

    def add(self, side: int, values: list[Any], b: BatchRecord) -> None:
        sides: tuple[dict[tuple[Any, ...], list[list[Any]]], ...] | None = b.aggs.get(self.pid)
        if sides is None:
            sides = b.aggs[self.pid] = ({}, {})
        sides[side].setdefault(tuple(self.keys[side](values)), []).append(self.rests[side](values))

    def push(self, values: list[Any], b: BatchRecord) -> None:
        raise RuntimeError("a join's input arrives through its side pipes")

    def finish(self, b: BatchRecord) -> None:
        left, right = b.aggs.pop(self.pid, ({}, {}))
        children = self.children
        none_left = [None] * self.widths[0]
        none_right = [None] * self.widths[1]
        for key, lrows in left.items():
            rrows = right.get(key)
            if rrows is None:
                if self.how == "inner":
                    continue
                rrows = [none_right]
            for lrow in lrows:
                for rrow in rrows:
                    out = [*key, *lrow, *rrow]
                    for c in children:
                        c.push(out, b)
        if self.how == "outer":
            for key, rrows in right.items():
                if key in left:
                    continue
                for rrow in rrows:
                    out = [*key, *none_left, *rrow]
                    for c in children:
                        c.push(out, b)


class JoinSidePipe(Pipe):
    """Where one input stream of a join component enters: hands each tuple to
    the component's JoinPipe as side 0 (left) or 1 (right)."""

    def __init__(self, pid: int, fields: Sequence[str], join: JoinPipe, side: int) -> None:
        super().__init__(pid, fields)
        self.join = join
        self.side = side

    def push(self, values: list[Any], b: BatchRecord) -> None:
        self.join.add(self.side, values, b)

    def describe(self) -> str:
        return f"join {'left' if self.side == 0 else 'right'} side"
