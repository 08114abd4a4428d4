"""Where a task's tuples go: one Route per output stream (the combined chooser
of every subscription's grouping), the checks an emit must pass before
anything is delivered, and the order executors run in.

The groupings' choosers themselves are the model's (storm._grouping); this
module only combines them and picks the cheapest way to call them. It does not
deliver: the collectors (emit.py) do."""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final

from .._errors import EmitError
from .._grouping import make_chooser
from .._serialization import check_values
from .._tuple import StreamMeta

if TYPE_CHECKING:
    from .._context import TopologyContext
    from .._topology import ComponentDef, TopologySpec

__all__ = ["FAST_TYPES", "Route", "build_routes", "check_emit", "check_fast", "choose",
           "topological_order", "undeclared_stream"]

FAST_TYPES: Final[frozenset[type]] = frozenset({str, int, float, bool, type(None), bytes})
INT_MIN: Final = -(1 << 63)  # msgpack encodes ints in [-2**63, 2**64)
INT_MAX: Final = (1 << 64) - 1
_EMPTY: Final[tuple[int, ...]] = ()

# How an emit picks tasks without a Python-level chooser call where it can.
BY_CALL: Final = 0  # call route.choose(values)
BY_KEY: Final = 1  # look values[key_index] up in route.table (fields grouping on one field)
BY_CYCLE: Final = 2  # call the C-level iterator route.next (shuffle, all, global, none)


class Route:
    """Routing of one output stream of one task: the stream, its field count
    and a chooser combining every subscription's grouping."""

    __slots__ = ("stream", "meta", "nfields", "choose", "direct_targets", "count", "direct",
                 "mode", "table", "key_index", "next", "slow", "targets")

    def __init__(self, meta: StreamMeta, choosers: list[Callable[[Sequence[Any]], Sequence[int]]],
                 direct_targets: frozenset[int]) -> None:
        self.stream = meta.stream
        self.meta = meta
        self.nfields = len(meta.fields)
        self.direct_targets = direct_targets
        self.direct = meta.direct
        self.slow = meta.direct or meta.ordered  # both take the checked emit path
        self.count = 0
        self.mode = BY_CALL
        self.table: Any = None
        self.key_index = 0
        self.next: Any = None
        self.targets: set[int] = set(direct_targets)
        self.choose: Callable[[Sequence[Any]], Sequence[int]]
        if not choosers:
            self.choose = _no_targets
            self.mode = BY_CYCLE
            self.next = itertools.repeat(_EMPTY).__next__
        elif len(choosers) == 1:
            c = self.choose = choosers[0]
            if getattr(c, "table", None) is not None:
                self.mode, self.table, self.key_index = BY_KEY, c.table, c.key_index  # type: ignore[attr-defined]
            elif getattr(c, "next", None) is not None:
                self.mode, self.next = BY_CYCLE, c.next  # type: ignore[attr-defined]
        else:
            self.choose = _Combined(choosers)


def _no_targets(values: Sequence[Any]) -> Sequence[int]:
    return _EMPTY


class _Combined:
    """Several subscriptions on one stream: the union of their choices."""

    def __init__(self, choosers: list[Callable[[Sequence[Any]], Sequence[int]]]) -> None:
        self.choosers = choosers

    def __call__(self, values: Sequence[Any]) -> Sequence[int]:
        out: list[int] = []
        for c in self.choosers:
            out.extend(c(values))
        return out


def build_routes(cdef: ComponentDef, task_id: int, spec: TopologySpec, local_tasks: frozenset[int],
                 context: TopologyContext) -> dict[str, Route]:
    """One Route per output stream of task `task_id` of `cdef`."""
    routes: dict[str, Route] = {}
    for sname, decl in cdef.outputs.items():
        sid = spec.stream_ids[(cdef.name, sname)]
        meta = spec.streams[sid]
        choosers = []
        direct: set[int] = set()
        all_targets: set[int] = set()
        for sub in spec.subscribers.get((cdef.name, sname), []):
            targets = spec.components[sub.target].tasks
            chooser = make_chooser(
                sub.grouping, targets, decl.fields, source_task=task_id, stream=sname,
                local_tasks=local_tasks, context=context,
                rng=random.Random(task_id * 1_000_003 + sid),
            )
            if chooser is None:
                direct.update(targets)
            else:
                choosers.append(chooser)
            all_targets.update(targets)
        route = Route(meta, choosers, frozenset(direct))
        route.targets = all_targets
        routes[sname] = route
    return routes


def undeclared_stream(component: str, routes: dict[str, Route], stream: str) -> EmitError:
    declared = ", ".join(sorted(s for s in routes if not s.startswith("__"))) or "none"
    return EmitError(
        f"component '{component}' emitted on undeclared stream '{stream}'; declared "
        f"streams: {declared}. Add it to the component's outputs"
    )


def check_fast(values: Sequence[Any], meta: StreamMeta) -> None:
    """Raise the full error if a value is not one msgpack surely encodes (the
    common types are checked here, anything else by check_values)."""
    for v in values:
        t = type(v)
        if t is not str and (t not in FAST_TYPES or (t is int and not INT_MIN <= v <= INT_MAX)):
            check_values(values, meta.component, meta.stream, meta.fields)
            break


def choose(route: Route, values: Sequence[Any]) -> Sequence[int]:
    """Check values and pick target tasks (a non-direct stream)."""
    check_fast(values, route.meta)
    mode = route.mode
    if mode == BY_KEY:
        try:
            tasks: Sequence[int] = route.table[values[route.key_index]]
            return tasks
        except (KeyError, TypeError):
            return route.choose(values)
    if mode == BY_CYCLE:
        tasks = route.next()
        return tasks
    return route.choose(values)


def check_emit(component: str, route: Route, values: Any, direct_task: int | None) -> Sequence[int]:
    """Every check of an emit, with a full message, then the target tasks."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise EmitError(
            f"component '{component}' emitted {values!r} on stream '{route.stream}'; "
            "emit takes a list of values, e.g. emit([word])"
        )
    if len(values) != route.nfields:
        raise EmitError(
            f"component '{component}' emitted {len(values)} values on stream "
            f"'{route.stream}', which declares {route.nfields} fields {list(route.meta.fields)}"
        )
    check_fast(values, route.meta)
    if direct_task is not None:
        if not route.meta.direct:
            raise EmitError(
                f"component '{component}' emitted with direct_task on stream "
                f"'{route.stream}', which is not direct; declare Stream(..., direct=True)"
            )
        if direct_task not in route.direct_targets:
            raise EmitError(
                f"component '{component}' emitted directly to task {direct_task} on stream "
                f"'{route.stream}', which is not a task subscribed to it with direct grouping "
                f"(subscribed: {sorted(route.direct_targets)})"
            )
        return (direct_task,)
    if route.direct:
        raise EmitError(
            f"component '{component}' emitted on direct stream '{route.stream}' without "
            "direct_task; pass direct_task=<task id>"
        )
    return route.choose(values)


def topological_order(spec: TopologySpec) -> list[str]:
    """Component names, sources first, so one loop pass carries tuples far."""
    order: list[str] = []
    seen: set[str] = set()
    frontier = [c.name for c in spec.components.values() if c.is_spout]
    while frontier:
        nxt: list[str] = []
        for name in frontier:
            if name in seen:
                continue
            seen.add(name)
            order.append(name)
            for c in spec.components.values():
                if c.name not in seen and any(s.source == name for s in c.inputs):
                    nxt.append(c.name)
        frontier = nxt
    order.extend(n for n in spec.components if n not in seen)
    return order
