"""Stream groupings: the declarations users write (Grouping.fields("word"), ...)
and the choosers the runtime builds from them, one per emitting task and
subscription. A chooser maps a tuple's values to the target task ids; hot paths
return cached tuples so a routing decision allocates nothing."""

from __future__ import annotations

import itertools
import random
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import msgpack

from ._errors import TopologyError

if TYPE_CHECKING:
    from ._context import TopologyContext

Chooser = Callable[[Sequence[Any]], Sequence[int]]

_CACHE_LIMIT = 1 << 16


def _canonical(v: Any) -> Any:
    """`v` with every bool and integral float replaced by the equal int, so values
    that are equal in Python (1 == 1.0 == True) hash alike. The choosers cache
    routes in dicts, which treat such values as one key: without this, which task
    a key goes to would depend on which spelling an emitter happened to see first."""
    t = type(v)
    if t is str or t is int or t is bytes:
        return v
    if t is bool:
        return int(v)
    if t is float:
        if v.is_integer() and -(1 << 63) <= v < (1 << 64):
            return int(v)
        return v
    if t is tuple or t is list:
        return [_canonical(x) for x in v]
    return v


def stable_hash(key_values: Sequence[Any]) -> int:
    """A hash of field values that is identical in every process and run
    (Python's hash() of str is salted per process, so it cannot be used).
    Values equal in Python hash alike: 1, 1.0 and True; (1, 2) and [1, 2]."""
    if len(key_values) == 1:
        v = key_values[0]
        if isinstance(v, str):
            return zlib.crc32(v.encode("utf-8", "surrogatepass"))
        if isinstance(v, bytes):
            return zlib.crc32(v)
    return zlib.crc32(msgpack.packb([_canonical(v) for v in key_values], use_bin_type=True))


class CustomGrouping:
    """Base for a user grouping: choose the target tasks for each tuple.

    Example::

        class ByLength(CustomGrouping):
            def choose_tasks(self, task_id, values):
                return [self.targets[len(values[0]) % len(self.targets)]]
    """

    targets: list[int]

    def prepare(self, context: TopologyContext, stream: str, target_tasks: list[int]) -> None:
        self.targets = list(target_tasks)

    def choose_tasks(self, task_id: int, values: Sequence[Any]) -> Sequence[int]:
        raise NotImplementedError


@dataclass(frozen=True)
class Grouping:
    """How a stream's tuples are split among a bolt's tasks (Storm's groupings).

    Use the constructors: ``Grouping.shuffle()``, ``Grouping.fields("word")``,
    ``Grouping.partial_key("word")``, ``Grouping.all()``, ``Grouping.global_()``,
    ``Grouping.none()``, ``Grouping.direct()``, ``Grouping.local_or_shuffle()``,
    ``Grouping.custom(MyGrouping)``; or the constants ``Grouping.SHUFFLE``, ...
    """

    kind: str
    field_names: tuple[str, ...] = ()
    custom_cls: Any = None
    custom_args: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    SHUFFLE: ClassVar[Grouping]
    ALL: ClassVar[Grouping]
    GLOBAL: ClassVar[Grouping]
    NONE: ClassVar[Grouping]
    DIRECT: ClassVar[Grouping]
    LOCAL_OR_SHUFFLE: ClassVar[Grouping]

    @staticmethod
    def shuffle() -> Grouping:
        """Round-robin over the target tasks in a random order: an even spread."""
        return Grouping("shuffle")

    @staticmethod
    def fields(*names: str | Sequence[str]) -> Grouping:
        """Tuples with equal values of `names` always go to the same task."""
        flat: list[str] = []
        for n in names:
            flat.extend([n] if isinstance(n, str) else list(n))
        if not flat:
            raise TopologyError("Grouping.fields() needs at least one field name")
        return Grouping("fields", tuple(flat))

    @staticmethod
    def partial_key(*names: str | Sequence[str]) -> Grouping:
        """Each key goes to one of two candidate tasks, the less loaded one."""
        g = Grouping.fields(*names)
        return Grouping("partial_key", g.field_names)

    @staticmethod
    def all() -> Grouping:
        """Every target task gets a copy of every tuple."""
        return Grouping("all")

    @staticmethod
    def global_() -> Grouping:
        """Every tuple goes to the target task with the lowest id."""
        return Grouping("global")

    @staticmethod
    def none() -> Grouping:
        """No preference (behaves like shuffle)."""
        return Grouping("none")

    @staticmethod
    def direct() -> Grouping:
        """The emitter chooses the task with emit(..., direct_task=id)."""
        return Grouping("direct")

    @staticmethod
    def local_or_shuffle() -> Grouping:
        """Shuffle among target tasks in the same worker, if any; else among all."""
        return Grouping("local_or_shuffle")

    @staticmethod
    def custom(cls: type[CustomGrouping] | CustomGrouping, **kwargs: Any) -> Grouping:
        """A user CustomGrouping subclass (instantiated with kwargs in each task)."""
        target = cls if isinstance(cls, type) else type(cls)
        if not (isinstance(target, type) and issubclass(target, CustomGrouping)):
            raise TopologyError(
                f"Grouping.custom() needs a CustomGrouping subclass, got {cls!r}"
            )
        return Grouping("custom", custom_cls=cls, custom_args=dict(kwargs))

    def describe(self) -> str:
        if self.field_names:
            return f"{self.kind}({', '.join(self.field_names)})"
        if self.kind == "custom":
            name = self.custom_cls.__name__ if isinstance(self.custom_cls, type) else type(self.custom_cls).__name__
            return f"custom({name})"
        return self.kind


Grouping.SHUFFLE = Grouping("shuffle")
Grouping.ALL = Grouping("all")
Grouping.GLOBAL = Grouping("global")
Grouping.NONE = Grouping("none")
Grouping.DIRECT = Grouping("direct")
Grouping.LOCAL_OR_SHUFFLE = Grouping("local_or_shuffle")


def _round_robin(tasks: Sequence[int], rng: random.Random) -> Chooser:
    order = [(t,) for t in tasks]
    rng.shuffle(order)
    step = itertools.cycle(order).__next__

    def choose(values: Sequence[Any]) -> Sequence[int]:
        return step()

    # The runtime calls the C-level iterator directly on its hot path.
    choose.next = step  # type: ignore[attr-defined]
    return choose


def _constant(tasks: tuple[int, ...]) -> Chooser:
    def choose(values: Sequence[Any]) -> Sequence[int]:
        return tasks

    choose.next = itertools.repeat(tasks).__next__  # type: ignore[attr-defined]
    return choose


def make_chooser(
    grouping: Grouping,
    target_tasks: Sequence[int],
    field_names: Sequence[str],
    *,
    source_task: int,
    stream: str,
    local_tasks: frozenset[int] | set[int],
    context: TopologyContext | None,
    rng: random.Random | None = None,
) -> Chooser | None:
    """Build the routing function for one emitting task and one subscription.

    Returns None for direct grouping (the emitter names the task itself).
    """
    rng = rng or random.Random(source_task * 7919 + 17)
    targets = sorted(target_tasks)
    kind = grouping.kind
    if kind in ("shuffle", "none"):
        return _round_robin(targets, rng)
    if kind == "local_or_shuffle":
        local = [t for t in targets if t in local_tasks]
        return _round_robin(local or targets, rng)
    if kind == "all":
        return _constant(tuple(targets))
    if kind == "global":
        return _constant((targets[0],))
    if kind == "direct":
        return None
    if kind in ("fields", "partial_key"):
        idx = [list(field_names).index(f) for f in grouping.field_names]
        return _fields_chooser(targets, idx, partial=(kind == "partial_key"))
    if kind == "custom":
        c = grouping.custom_cls
        inst: CustomGrouping = c(**grouping.custom_args) if isinstance(c, type) else c
        inst.prepare(context, stream, list(targets))  # type: ignore[arg-type]
        choose_tasks = inst.choose_tasks

        def custom(values: Sequence[Any]) -> Sequence[int]:
            return tuple(choose_tasks(source_task, values))

        return custom
    raise TopologyError(f"unknown grouping kind '{kind}'")


def _fields_chooser(targets: list[int], idx: list[int], partial: bool) -> Chooser:
    singles = [(t,) for t in targets]
    n = len(targets)
    cache: dict[Any, Any] = {}
    if not partial:
        if n == 1:
            return _constant(singles[0])
        if len(idx) == 1:
            i0 = idx[0]
            # A plain dict, so the runtime's `table[key]` is CPython's specialised
            # exact-dict subscript; a miss (KeyError) lands here once per key.
            table: dict[Any, tuple[int, ...]] = {}

            def one_field(values: Sequence[Any]) -> Sequence[int]:
                key = values[i0]
                try:
                    return table[key]
                except KeyError:
                    if len(table) >= _CACHE_LIMIT:
                        table.clear()
                    hit = table[key] = singles[stable_hash((key,)) % n]
                    return hit
                except TypeError:  # unhashable value (a list, a dict): no caching
                    return singles[stable_hash((key,)) % n]

            # The runtime looks keys up in the table itself on its hot path.
            one_field.table = table  # type: ignore[attr-defined]
            one_field.key_index = i0  # type: ignore[attr-defined]
            return one_field

        def many_fields(values: Sequence[Any]) -> Sequence[int]:
            key_values = [values[i] for i in idx]
            try:
                key: Any = tuple(key_values)
                hit = cache.get(key)
            except TypeError:
                return singles[stable_hash(key_values) % n]
            if hit is None:
                if len(cache) >= _CACHE_LIMIT:
                    cache.clear()
                hit = cache[key] = singles[stable_hash(key_values) % n]
            return hit

        return many_fields

    # partial key: two candidates from two independent hashes; send to the one
    # this emitter has sent fewer tuples to so far.
    load = [0] * n

    def candidates(key_values: list[Any]) -> tuple[int, int]:
        h = stable_hash(key_values)
        h2 = zlib.crc32(h.to_bytes(4, "little"), 0x9E3779B9)
        a, b = h % n, h2 % n
        if a == b and n > 1:
            b = (a + 1) % n
        return a, b

    def partial_key(values: Sequence[Any]) -> Sequence[int]:
        key_values = [values[i] for i in idx]
        try:
            key: Any = tuple(key_values)
            pair = cache.get(key)
            if pair is None:
                if len(cache) >= _CACHE_LIMIT:
                    cache.clear()
                pair = cache[key] = candidates(key_values)
        except TypeError:
            pair = candidates(key_values)
        a, b = pair
        pick = a if load[a] <= load[b] else b
        load[pick] += 1
        return singles[pick]

    return partial_key
