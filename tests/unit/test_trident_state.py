"""Trident state rules: transactional and opaque value updates (replays of the
same txid, with the same and with different content), TxidMapState over the
in-memory and SQLite backends (one transaction per commit, the commit log, the
cache of hot keys) and the built-in aggregators."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from storm import StormError
from storm.trident import (
    Count,
    First,
    Max,
    MemoryState,
    Min,
    SQLiteState,
    StateFactory,
    Sum,
    encode_key,
    opaque_update,
    transactional_update,
)

pytestmark = pytest.mark.timeout(30)


def add(n: int) -> Any:
    return lambda old: (old or 0) + n


def test_transactional_value_applies_a_new_txid_and_skips_a_replay() -> None:
    v = transactional_update(None, 1, add(3))
    assert v == [1, 3]
    v2 = transactional_update(v, 2, add(4))
    assert v2 == [2, 7]
    # A replay of txid 2 carries the same tuples: already in, nothing to write.
    assert transactional_update(v2, 2, add(4)) is None


def test_opaque_value_recomputes_a_replayed_txid_from_prev() -> None:
    v = opaque_update(None, 1, add(3))
    assert v == [1, 3, None]
    v2 = opaque_update(v, 2, add(4))
    assert v2 == [2, 7, 3]
    # Txid 2 replayed with different content (5 instead of 4): built on prev.
    v3 = opaque_update(v2, 2, add(5))
    assert v3 == [2, 8, 3]
    # And replayed again with the first content: back to what it was.
    assert opaque_update(v3, 2, add(4)) == [2, 7, 3]
    assert opaque_update(v3, 3, add(1)) == [3, 9, 8]


@pytest.fixture(params=["memory", "sqlite"])
def make_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    MemoryState.clear()

    def make(kind: str) -> StateFactory:
        if request.param == "memory":
            return MemoryState(f"test-{kind}", kind=kind)
        return SQLiteState(tmp_path / "state.sqlite", f"t_{kind}", kind=kind)

    yield make
    MemoryState.clear()


@pytest.mark.parametrize("kind", ["transactional", "opaque"])
def test_map_state_counts_a_replayed_txid_once(make_factory: Any, kind: str) -> None:
    factory = make_factory(kind)
    state = factory.make(task=1)
    a, b = encode_key(["a"]), encode_key(["b"])
    state.apply(1, {a: add(2), b: add(1)})
    state.apply(2, {a: add(5)})
    state.apply(2, {a: add(5)})  # the same batch again (e.g. a re-sent commit)
    assert factory.read([["a"], ["b"], ["c"]]) == [7, 1, None]
    # A fresh instance (a restarted worker) reads the same from the backend.
    again = factory.make(task=1)
    again.apply(2, {a: add(5)})
    assert again.get([a]) == [7]
    assert factory.commits() == [(1, 1), (1, 2), (1, 2), (1, 2)]


def test_opaque_map_state_takes_the_new_content_of_a_replayed_txid(make_factory: Any) -> None:
    factory = make_factory("opaque")
    state = factory.make(task=3)
    k = encode_key(["w"])
    state.apply(1, {k: add(10)})
    state.apply(2, {k: add(1)})
    state.apply(2, {k: add(4)})  # txid 2 replayed with other tuples
    assert factory.read([["w"]]) == [14]
    transactional = make_factory("transactional")
    t = transactional.make(task=3)
    t.apply(1, {k: add(10)})
    t.apply(2, {k: add(1)})
    t.apply(2, {k: add(4)})  # a transactional spout never does this: the first content stays
    assert transactional.read([["w"]]) == [11]


def test_non_transactional_state_applies_every_time(make_factory: Any) -> None:
    factory = make_factory("non_transactional")
    s = factory.make(task=1)
    k = encode_key(["x"])
    s.apply(1, {k: add(1)})
    s.apply(1, {k: add(1)})
    assert factory.read([["x"]]) == [2]


def test_the_cache_serves_hot_keys_and_stays_bounded(tmp_path: Path) -> None:
    factory = SQLiteState(tmp_path / "c.sqlite", "cached", cache_size=2)
    s = factory.make(task=1)
    keys = [encode_key([w]) for w in "abc"]
    s.apply(1, {keys[0]: add(1)})
    s.apply(2, {keys[0]: add(1)})
    assert (s.cache_hits, s.cache_misses) == (1, 1)
    s.apply(3, {keys[1]: add(1), keys[2]: add(1)})
    assert len(s._cache) == 2
    assert factory.read([["a"], ["b"], ["c"]]) == [2, 1, 1]


def test_a_failing_update_rolls_the_commit_back(tmp_path: Path) -> None:
    factory = SQLiteState(tmp_path / "r.sqlite", "rb")
    s = factory.make(task=1)
    s.apply(1, {encode_key(["a"]): add(1)})

    def boom(old: Any) -> Any:
        raise ValueError("boom")

    with pytest.raises(ValueError):
        s.apply(2, {encode_key(["a"]): add(1), encode_key(["b"]): boom})
    assert factory.read([["a"], ["b"]]) == [1, None]
    assert factory.commits() == [(1, 1)]
    s.apply(2, {encode_key(["a"]): add(1)})
    assert factory.read([["a"]]) == [2]


def test_bad_state_arguments_are_reported() -> None:
    with pytest.raises(StormError, match="kind"):
        MemoryState("x", kind="exactly")
    with pytest.raises(StormError, match="table"):
        SQLiteState("x.sqlite", "bad table;")


def test_builtin_aggregators() -> None:
    c = Count()
    assert c.combine(c.combine(c.zero(), c.init([])), c.init([])) == 2
    s = Sum("n")
    assert s.input_fields == ("n",) and s.combine(s.init([2]), s.init([3])) == 5
    assert Min("n").combine(4, 2) == 2 and Max("n").combine(4, 2) == 4
    assert Min("n").combine(None, 2) == 2 and Max("n").combine(3, None) == 3
    f = First("n")
    assert f.combine(f.init(["x"]), f.init(["y"])) == "x" and f.combine(None, "y") == "y"
