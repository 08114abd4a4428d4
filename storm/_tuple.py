"""The Tuple users receive in Bolt.execute, and the per-stream metadata it shares.

A Tuple is created once per delivery, so it holds only its values, its source
task and its place in the tuple trees, and points at a shared StreamMeta for
everything that is the same for every tuple of a stream."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Final

# Final: the compiled core inlines them or reads them from a C static, not
# from the module's dict at each tuple.
TICK_STREAM: Final = "__tick"
SYSTEM_COMPONENT: Final = "__system"
DEFAULT_STREAM: Final = "default"


class StreamMeta:
    """What every tuple of one (component, stream) shares: names and field index."""

    __slots__ = ("component", "stream", "fields", "index", "sid", "direct", "ordered")

    def __init__(
        self, component: str, stream: str, fields: Sequence[str], sid: int, direct: bool = False,
        ordered: bool = False,
    ) -> None:
        self.component = component
        self.stream = stream
        self.fields = tuple(fields)
        self.index = {name: i for i, name in enumerate(self.fields)}
        self.sid = sid
        self.direct = direct
        self.ordered = ordered

    def __repr__(self) -> str:
        return f"StreamMeta({self.component!r}, {self.stream!r}, {self.fields!r})"


TICK_META: Final = StreamMeta(SYSTEM_COMPONENT, TICK_STREAM, ("rate_secs",), -1)


def roots_of(root: Any, edge: Any, more: dict[Any, Any] | None) -> Any:
    """Trees in the shape code off the hot path reads (tracing hooks, tests):
    a (root, edge) pair, or a dict root -> edge for a tuple in several trees."""
    if more is None:
        return (root, edge)
    trees = {root: edge}
    trees.update(more)
    return trees


class Tuple:
    """One tuple delivered to a bolt.

    ``tup[0]``, ``tup["word"]`` and ``tup.values`` read values; ``tup.fields``,
    ``tup.stream``, ``tup.source_component`` and ``tup.source_task`` say where it
    came from; ``tup.is_tick`` is true for tick tuples.
    """

    # Ack tracking, one form (see storm._runtime.acking): `root` is the tree
    # the tuple belongs to (None: outside any tree) and `edge` its edge id in
    # it; `more` holds the other trees, root -> edge, of a tuple anchored into
    # several (None otherwise). ack_val: the XOR of the edge ids of the tuples
    # anchored to this one. Compiled, this is a native class: no __dict__.
    __slots__ = ("values", "meta", "source_task", "root", "edge", "more", "ack_val")

    def __init__(
        self, values: Sequence[Any], meta: StreamMeta, source_task: int, root: Any = None,
        edge: int = 0, more: dict[Any, Any] | None = None,
    ) -> None:
        self.values: Any = values
        self.meta = meta
        self.source_task = source_task
        self.root: Any = root
        self.edge = edge  # a machine word when compiled: acking it reads no object
        self.more: dict[Any, Any] | None = more
        self.ack_val: int = 0  # a machine word when compiled (ids are below 2**62)

    @property
    def in_tree(self) -> bool:
        """Whether the tuple belongs to a tuple tree (acking it matters)."""
        return self.root is not None

    @property
    def roots(self) -> Any:
        """The trees of the tuple, for code off the hot path (tracing, tests):
        None, a (root, edge) pair, or a dict root -> edge for several trees."""
        return None if self.root is None else roots_of(self.root, self.edge, self.more)

    def trees(self) -> list[tuple[Any, Any]]:
        """(root, edge) of every tree the tuple belongs to."""
        if self.root is None:
            return []
        out = [(self.root, self.edge)]
        if self.more is not None:
            out.extend(self.more.items())
        return out

    @property
    def fields(self) -> tuple[str, ...]:
        return self.meta.fields

    @property
    def stream(self) -> str:
        return self.meta.stream

    @property
    def source_component(self) -> str:
        return self.meta.component

    @property
    def component(self) -> str:
        """streamparse's name of source_component."""
        return self.meta.component

    @property
    def task(self) -> int:
        return self.source_task

    @property
    def is_tick(self) -> bool:
        return self.meta is TICK_META

    def __getitem__(self, key: int | str) -> Any:
        if isinstance(key, str):
            try:
                return self.values[self.meta.index[key]]
            except KeyError:
                raise KeyError(
                    f"stream '{self.meta.stream}' of '{self.meta.component}' has no field "
                    f"'{key}'; its fields are {list(self.meta.fields)}"
                ) from None
        return self.values[key]

    def get(self, field: str, default: Any = None) -> Any:
        i = self.meta.index.get(field)
        return default if i is None else self.values[i]

    def as_dict(self) -> dict[str, Any]:
        return dict(zip(self.meta.fields, self.values, strict=False))

    def __len__(self) -> int:
        return len(self.values)

    def __iter__(self) -> Iterator[Any]:
        return iter(self.values)

    def __repr__(self) -> str:
        return (
            f"Tuple(component={self.meta.component!r}, stream={self.meta.stream!r}, "
            f"task={self.source_task}, values={list(self.values)!r})"
        )
