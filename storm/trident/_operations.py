"""Trident aggregators: the combiner, reducer and general aggregator protocols
and the built-in Count, Sum, Min, Max, First. Pure functions of values; no
runtime, no state."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any


class CombinerAggregator:
    """Aggregates by combining: ``init(values)`` per tuple, ``combine(a, b)``,
    ``zero()`` for nothing. Combined per batch before a state is touched.

    Example::

        class Longest(CombinerAggregator):
            input_fields = ("word",)
            def init(self, values): return len(values[0])
            def combine(self, a, b): return max(a, b)
            def zero(self): return 0
    """

    input_fields: tuple[str, ...] = ()

    def init(self, values: Sequence[Any]) -> Any:
        raise NotImplementedError

    def combine(self, a: Any, b: Any) -> Any:
        raise NotImplementedError

    def zero(self) -> Any:
        return None


class ReducerAggregator:
    """Aggregates by folding each tuple into the value: ``init()`` then
    ``reduce(curr, values)`` per tuple, in batch order."""

    input_fields: tuple[str, ...] = ()

    def init(self) -> Any:
        raise NotImplementedError

    def reduce(self, curr: Any, values: Sequence[Any]) -> Any:
        raise NotImplementedError


class Aggregator:
    """The general form (batch-scoped, not persistable): ``init()`` -> state,
    ``aggregate(state, values)`` -> state, ``complete(state)`` -> output tuples."""

    input_fields: tuple[str, ...] = ()

    def init(self) -> Any:
        raise NotImplementedError

    def aggregate(self, state: Any, values: Sequence[Any]) -> Any:
        raise NotImplementedError

    def complete(self, state: Any) -> Iterable[Sequence[Any]]:
        raise NotImplementedError


class Count(CombinerAggregator):
    """How many tuples."""

    def init(self, values: Sequence[Any]) -> int:
        return 1

    def combine(self, a: Any, b: Any) -> Any:
        return a + b

    def zero(self) -> int:
        return 0


class Sum(CombinerAggregator):
    """The sum of one field."""

    def __init__(self, field: str) -> None:
        self.input_fields = (field,)

    def init(self, values: Sequence[Any]) -> Any:
        return values[0]

    def combine(self, a: Any, b: Any) -> Any:
        return a + b

    def zero(self) -> int:
        return 0


class Min(CombinerAggregator):
    """The smallest value of one field."""

    def __init__(self, field: str) -> None:
        self.input_fields = (field,)

    def init(self, values: Sequence[Any]) -> Any:
        return values[0]

    def combine(self, a: Any, b: Any) -> Any:
        return b if a is None else a if b is None else min(a, b)


class Max(CombinerAggregator):
    """The largest value of one field."""

    def __init__(self, field: str) -> None:
        self.input_fields = (field,)

    def init(self, values: Sequence[Any]) -> Any:
        return values[0]

    def combine(self, a: Any, b: Any) -> Any:
        return b if a is None else a if b is None else max(a, b)


class First(CombinerAggregator):
    """The first value of one field seen (per batch; persisted: the first ever)."""

    def __init__(self, field: str) -> None:
        self.input_fields = (field,)

    def init(self, values: Sequence[Any]) -> Any:
        return values[0]

    def combine(self, a: Any, b: Any) -> Any:
        return b if a is None else a
