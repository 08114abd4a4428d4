"""Every grouping's choice semantics, through storm._grouping.make_chooser: the
routing function one emitting task builds for one subscription."""

from __future__ import annotations

import ast
import json
import os
import random
import subprocess
import sys
from collections import Counter
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import storm._grouping as grouping_mod
from storm import CustomGrouping, Grouping, TopologyError, stable_hash
from storm._grouping import Chooser, make_chooser

FIELDS = ["word", "n"]


def chooser(
    g: Grouping,
    targets: Sequence[int],
    fields: Sequence[str] = FIELDS,
    source_task: int = 1,
    local: set[int] | None = None,
    rng: random.Random | None = None,
    stream: str = "default",
    context: Any = None,
) -> Chooser:
    c = make_chooser(
        g, targets, fields, source_task=source_task, stream=stream,
        local_tasks=local or set(), context=context, rng=rng,
    )
    assert c is not None
    return c


task_sets = st.lists(st.integers(1, 500), min_size=1, max_size=12, unique=True)


# -- shuffle / none -----------------------------------------------------------------


@pytest.mark.parametrize("kind", [Grouping.shuffle(), Grouping.none(), Grouping.SHUFFLE, Grouping.NONE])
@settings(max_examples=30, deadline=None)
@given(targets=task_sets, rounds=st.integers(1, 6), source=st.integers(1, 1000), seed=st.integers(0, 2**32))
def test_shuffle_and_none_spread_exactly_evenly(
    kind: Grouping, targets: list[int], rounds: int, source: int, seed: int
) -> None:
    ch = chooser(kind, targets, source_task=source, rng=random.Random(seed))
    picks = [ch(["w", i]) for i in range(rounds * len(targets))]
    assert all(len(p) == 1 for p in picks)
    counts = Counter(p[0] for p in picks)
    assert counts == dict.fromkeys(targets, rounds)
    # Round robin: each run of len(targets) consecutive picks covers every task.
    for r in range(rounds):
        window = picks[r * len(targets):(r + 1) * len(targets)]
        assert sorted(p[0] for p in window) == sorted(targets)


def test_shuffle_order_is_shuffled_per_emitter() -> None:
    targets = list(range(1, 21))
    orders = set()
    for source in range(1, 11):
        ch = chooser(Grouping.shuffle(), targets, source_task=source)
        orders.add(tuple(ch([0])[0] for _ in range(20)))
    assert len(orders) > 1  # not every emitter hits task 1 first
    assert all(sorted(o) == targets for o in orders)


# -- fields -------------------------------------------------------------------------

keys = st.recursive(
    st.one_of(
        st.text(max_size=20),
        st.integers(-(2**63), 2**64 - 1),
        st.binary(max_size=10),
        st.floats(allow_nan=False),
        st.booleans(),
        st.none(),
    ),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.tuples(inner, inner)),
    max_leaves=6,
)


@settings(max_examples=100, deadline=None)
@given(targets=task_sets, key=keys, other=st.text(), seed=st.integers(0, 2**32))
def test_fields_sends_equal_keys_to_one_task_in_every_emitter(
    targets: list[int], key: Any, other: str, seed: int
) -> None:
    rng = random.Random(seed)
    shuffled = list(targets)
    rng.shuffle(shuffled)
    a = chooser(Grouping.fields("word"), targets, source_task=1)
    b = chooser(Grouping.fields("word"), shuffled, source_task=rng.randint(2, 10**6), rng=rng)
    first = a([key, other])
    assert len(first) == 1 and first[0] in targets
    assert a([key, other + "x"]) == first  # only the grouped field matters
    assert a([key, 0]) == first  # and again, now from the cache
    assert b([key, other]) == first  # another emitter, targets given in another order


def test_fields_routing_is_the_stable_hash_of_the_key() -> None:
    targets = [7, 3, 11, 5]
    ch = chooser(Grouping.fields("word"), targets)
    for word in ["a", "storm", "ünïcode", "", "x" * 100]:
        assert ch([word, 1]) == (sorted(targets)[stable_hash([word]) % 4],)


def test_fields_spreads_many_keys_over_every_task() -> None:
    targets = list(range(1, 9))
    ch = chooser(Grouping.fields("word"), targets)
    counts = Counter(ch([f"word-{i}", 0])[0] for i in range(8000))
    assert set(counts) == set(targets)
    assert min(counts.values()) > 700 and max(counts.values()) < 1300


def test_fields_multi_field_keys() -> None:
    fields = ["user", "ts", "page"]
    ch = chooser(Grouping.fields("user", "page"), list(range(1, 17)), fields=fields)
    other = chooser(Grouping.fields(["user", "page"]), list(range(1, 17)), fields=fields, source_task=9)
    seen: dict[tuple[str, str], Sequence[int]] = {}
    for i in range(2000):
        user, page = f"u{i % 13}", f"p{i % 7}"
        got = ch([user, i, page])
        assert got == seen.setdefault((user, page), got)
        assert other([user, -i, page]) == got
    # Both fields matter: the 91 (user, page) pairs do not all land on one task.
    assert len({t for v in seen.values() for t in v}) > 4


def test_fields_with_unhashable_values_routes_consistently() -> None:
    a = chooser(Grouping.fields("word"), list(range(1, 11)))
    b = chooser(Grouping.fields("word"), list(range(1, 11)), source_task=2)
    many = chooser(Grouping.fields("word", "n"), list(range(1, 11)))
    for value in ([1, 2], ["a", ["b"]], {"k": [1]}, [], {"x": {"y": 1}}):
        first = a([value, 0])
        assert a([value, 1]) == first == b([value, 2])
        assert many([value, [3]]) == many([value, [3]])


def test_fields_equal_keys_of_different_types_share_a_task() -> None:
    # 1 == 1.0 == True and (1, 2) == [1, 2]-as-a-key: the route cache treats them
    # as one key, so the route must not depend on which spelling came first.
    targets = list(range(1, 11))
    for spellings in ([1, 1.0, True], [0, 0.0, -0.0, False], [(1, 2), [1, 2], (1.0, True + 1)]):
        routes = set()
        for order in (spellings, spellings[::-1]):
            ch = chooser(Grouping.fields("word"), targets)
            routes |= {ch([k, 0]) for k in order}
        assert len(routes) == 1, spellings


def test_fields_routes_stay_consistent_when_the_cache_is_cleared(monkeypatch: pytest.MonkeyPatch) -> None:
    reference = chooser(Grouping.fields("word"), list(range(1, 6)))
    expected = {i: reference([i, 0]) for i in range(200)}
    monkeypatch.setattr(grouping_mod, "_CACHE_LIMIT", 8)
    for g in (Grouping.fields("word"), Grouping.fields("word", "n")):
        ch = chooser(g, list(range(1, 6)))
        for _ in range(3):
            for i in range(200):
                assert len(ch([i, 0])) == 1
                if g.field_names == ("word",):
                    assert ch([i, 0]) == expected[i]


def test_fields_hot_path_returns_cached_tuples() -> None:
    ch = chooser(Grouping.fields("word"), [1, 2, 3])
    assert ch(["a", 0]) is ch(["a", 1])


def test_fields_single_target() -> None:
    ch = chooser(Grouping.fields("word"), [42])
    assert {ch([w, 0]) for w in ["a", "b", [1]]} == {(42,)}


STABLE_KEYS = """[
    ["word"], ["ünïcode ✓"], [""], [b"bytes"], [0], [1], [-1], [9223372036854775807],
    [-9223372036854775808], [18446744073709551615], [1.5], [True], [None], [(1, "a")], [[1, [2, "x"]]], ["user", 42],
    [{"k": "v"}], [(1, 2.0), b"\\x00"],
]"""

_HASH_SCRIPT = """
import ast, json, sys
from storm import stable_hash
keys = ast.literal_eval(sys.argv[1])
print(json.dumps({"stable": [stable_hash(k) for k in keys], "builtin": hash("word")}))
"""


def test_stable_hash_is_identical_across_processes_and_hash_seeds() -> None:
    keys = ast.literal_eval(STABLE_KEYS)
    mine = [stable_hash(k) for k in keys]
    assert all(isinstance(h, int) and 0 <= h < 2**32 for h in mine)
    procs = []
    for seed in ("1", "4242"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        procs.append(subprocess.Popen(
            [sys.executable, "-c", _HASH_SCRIPT, STABLE_KEYS],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        ))
    results = []
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        results.append(json.loads(out))
    # The seeds really differ (Python's own str hash changes) ...
    assert results[0]["builtin"] != results[1]["builtin"]
    # ... but stable_hash does not.
    assert results[0]["stable"] == results[1]["stable"] == mine


def test_stable_hash_distinguishes_keys() -> None:
    assert stable_hash(["a"]) != stable_hash(["b"])
    assert stable_hash(["a", "b"]) != stable_hash(["b", "a"])
    assert stable_hash([1]) != stable_hash([2])
    assert stable_hash([1]) == stable_hash([1.0]) == stable_hash([True])
    assert stable_hash([(1, 2)]) == stable_hash([[1, 2]])


# -- partial key --------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(targets=st.lists(st.integers(1, 500), min_size=2, max_size=12, unique=True), key=keys)
def test_partial_key_uses_exactly_two_candidates_per_key(targets: list[int], key: Any) -> None:
    ch = chooser(Grouping.partial_key("word"), targets)
    counts = Counter(ch([key, i])[0] for i in range(100))
    # A key sent alone alternates between its two candidates: 50 / 50.
    assert len(counts) == 2 and set(counts.values()) == {50}
    # Another emitter has the same two candidates for the key.
    other = chooser(Grouping.partial_key("word"), targets[::-1], source_task=77)
    assert {other([key, 0])[0], other([key, 0])[0]} == set(counts)


def test_partial_key_balances_a_skewed_key() -> None:
    targets = list(range(1, 9))
    rng = random.Random(5)
    stream = ["hot" if rng.random() < 0.5 else f"k{rng.randrange(1000)}" for _ in range(20000)]

    pk = chooser(Grouping.partial_key("word"), targets)
    hot: Counter[int] = Counter()
    load: Counter[int] = Counter()
    for k in stream:
        t = pk([k, 0])[0]
        load[t] += 1
        if k == "hot":
            hot[t] += 1
    assert len(hot) == 2
    hot_a, hot_b = hot.values()
    assert abs(hot_a - hot_b) < 0.2 * (hot_a + hot_b)

    fields = chooser(Grouping.fields("word"), targets)
    fields_load = Counter(fields([k, 0])[0] for k in stream)
    # With fields grouping one task takes the whole hot key; partial key halves it.
    assert max(load.values()) < 0.65 * max(fields_load.values())


def test_partial_key_multi_field_and_single_target() -> None:
    ch = chooser(Grouping.partial_key("word", "n"), [1, 2, 3, 4])
    assert len({ch(["a", 1])[0] for _ in range(10)}) == 2
    assert len({ch([["list"], 1])[0] for _ in range(10)}) == 2
    one = chooser(Grouping.partial_key("word"), [9])
    assert {one([w, 0]) for w in "abc"} == {(9,)}


# -- all / global / direct / local_or_shuffle -----------------------------------------


@given(targets=task_sets)
def test_all_returns_every_task(targets: list[int]) -> None:
    ch = chooser(Grouping.all(), targets)
    assert ch(["a", 1]) == tuple(sorted(targets)) == ch(["b", 2])


@given(targets=task_sets)
def test_global_returns_the_lowest_task(targets: list[int]) -> None:
    for g in (Grouping.global_(), Grouping.GLOBAL):
        ch = chooser(g, targets)
        assert {ch([w, 0]) for w in "abcdef"} == {(min(targets),)}


def test_direct_has_no_chooser() -> None:
    for g in (Grouping.direct(), Grouping.DIRECT):
        assert make_chooser(g, [1, 2], FIELDS, source_task=1, stream="s",
                            local_tasks=set(), context=None) is None


@settings(max_examples=50, deadline=None)
@given(targets=task_sets, data=st.data())
def test_local_or_shuffle_prefers_local_tasks(targets: list[int], data: st.DataObject) -> None:
    local = set(data.draw(st.lists(st.sampled_from(targets), min_size=1, unique=True)))
    local |= set(data.draw(st.lists(st.integers(1000, 2000), max_size=3)))  # other components' tasks
    ch = chooser(Grouping.local_or_shuffle(), targets, local=local)
    mine = sorted(set(targets) & local)
    counts = Counter(ch(["w", i])[0] for i in range(3 * len(mine)))
    assert counts == dict.fromkeys(mine, 3)


@given(targets=task_sets)
def test_local_or_shuffle_falls_back_to_all_tasks(targets: list[int]) -> None:
    for g in (Grouping.local_or_shuffle(), Grouping.LOCAL_OR_SHUFFLE):
        ch = chooser(g, targets, local={9999})
        counts = Counter(ch(["w", i])[0] for i in range(2 * len(targets)))
        assert counts == dict.fromkeys(targets, 2)


# -- custom -----------------------------------------------------------------------


class Modulo(CustomGrouping):
    """Sends n to targets[n % len] and n+offset as well; records its prepare call."""

    instances: list[Modulo] = []

    def __init__(self, offset: int = 0, copies: int = 1) -> None:
        self.offset = offset
        self.copies = copies
        self.calls: list[tuple[int, list[Any]]] = []
        Modulo.instances.append(self)

    def prepare(self, context: Any, stream: str, target_tasks: list[int]) -> None:
        super().prepare(context, stream, target_tasks)
        self.prepared = (context, stream, list(target_tasks))

    def choose_tasks(self, task_id: int, values: Sequence[Any]) -> list[int]:
        self.calls.append((task_id, list(values)))
        n = values[1] + self.offset
        return [self.targets[(n + i) % len(self.targets)] for i in range(self.copies)]


def test_custom_grouping_is_prepared_and_its_choice_is_used() -> None:
    Modulo.instances.clear()
    context = object()
    g = Grouping.custom(Modulo, offset=1, copies=2)
    assert g.describe() == "custom(Modulo)"
    ch = chooser(g, [30, 10, 20], source_task=5, stream="numbers", context=context)
    [inst] = Modulo.instances
    assert (inst.offset, inst.copies) == (1, 2)
    assert inst.prepared == (context, "numbers", [10, 20, 30])
    assert inst.targets == [10, 20, 30]
    assert ch(["x", 0]) == (20, 30)
    assert ch(["y", 1]) == (30, 10)
    assert inst.calls == [(5, ["x", 0]), (5, ["y", 1])]
    # One instance per emitting task.
    chooser(g, [10, 20, 30], source_task=6)
    assert len(Modulo.instances) == 2


def test_custom_grouping_instance_is_used_as_is() -> None:
    inst = Modulo(offset=0)
    ch = chooser(Grouping.custom(inst), [1, 2, 3])
    assert ch(["x", 4]) == (2,)
    assert inst.targets == [1, 2, 3]


def test_custom_grouping_may_return_any_sequence() -> None:
    class Everyone(CustomGrouping):
        def choose_tasks(self, task_id: int, values: Sequence[Any]) -> Sequence[int]:
            return iter(self.targets)  # type: ignore[return-value]

    assert chooser(Grouping.custom(Everyone), [2, 1])(["a", 0]) == (1, 2)


def test_custom_grouping_base_must_be_overridden() -> None:
    with pytest.raises(NotImplementedError):
        chooser(Grouping.custom(CustomGrouping), [1])(["a", 0])


# -- declarations -------------------------------------------------------------------


def test_grouping_declarations() -> None:
    assert Grouping.fields("a", ["b", "c"]).field_names == ("a", "b", "c")
    assert Grouping.partial_key(["a"]) == Grouping("partial_key", ("a",))
    assert Grouping.shuffle() == Grouping.SHUFFLE
    assert Grouping.all() == Grouping.ALL
    assert Grouping.fields("a", "b").describe() == "fields(a, b)"
    assert Grouping.global_().describe() == "global"
    with pytest.raises(TopologyError, match="unknown grouping kind 'broadcast'"):
        make_chooser(Grouping("broadcast"), [1], FIELDS, source_task=1, stream="s",
                     local_tasks=set(), context=None)
