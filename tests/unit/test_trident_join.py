"""Trident joins, run in one process by storm.testing (the real runtime,
groupings and acking): inner, left and outer joins of two spouts' tuples of
the same batch (never across batches), on one or several fields, with renamed
output fields, a join of a stream with a derived copy of itself, exact results
through replayed batches, and the errors a user can make."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from storm import TopologyError
from storm.testing import TestTopology
from storm.trident import Count, MemoryState, Sum, TransactionalListSpout, TridentTopology

pytestmark = pytest.mark.timeout(60)

ORDERS = [[1, "apple", 3], [2, "pear", 1], [1, "fig", 2], [3, "kiwi", 5]]
USERS = [[1, "ann"], [2, "bob"], [4, "cy"]]


@pytest.fixture(autouse=True)
def _fresh_memory() -> Iterator[None]:
    MemoryState.clear()
    yield
    MemoryState.clear()


def topology(tmp_path: Path) -> TridentTopology:
    return TridentTopology("J", {
        "topology.trident.meta.path": str(tmp_path / "meta.sqlite"),
        "topology.trident.batch.emit.interval.millis": 0.0,
        "topology.max.spout.pending": 3,
    })


def run(t: TridentTopology, coordinator_tuples: int = 40) -> None:
    with TestTopology(t.build(), max_tuples=coordinator_tuples, timeout=30) as tt:
        tt.run()


def rows_of(state: str) -> dict[str, int]:
    return {k: v for k, v in MemoryState(state).read_all().items()}


def joined(t: TridentTopology, how: str, par: int = 2) -> None:
    orders = t.new_stream("orders", TransactionalListSpout(ORDERS, ["uid", "item", "qty"], batch_size=10))
    users = t.new_stream("users", TransactionalListSpout(USERS, ["id", "name"], batch_size=10))
    j = orders.join(users, on="uid", other_on="id", how=how, par=par)
    assert j.fields == ("uid", "item", "qty", "name")
    (j.map(["uid", "item", "name"], lambda u, i, n: (f"{u}/{i}/{n}",), "row")
     .group_by("row").persistent_aggregate(MemoryState("rows"), Count(), "n"))


@pytest.mark.parametrize(("how", "expected"), [
    ("inner", ["1/apple/ann", "1/fig/ann", "2/pear/bob"]),
    ("left", ["1/apple/ann", "1/fig/ann", "2/pear/bob", "3/kiwi/None"]),
    ("outer", ["1/apple/ann", "1/fig/ann", "2/pear/bob", "3/kiwi/None", "4/None/cy"]),
])
def test_inner_left_and_outer_joins_within_a_batch(tmp_path: Path, how: str, expected: list[str]) -> None:
    t = topology(tmp_path)
    joined(t, how)
    run(t)
    assert rows_of("rows") == {f'["{r}"]': 1 for r in expected}


def test_the_compiled_join_is_one_bolt_fields_grouped_on_the_keys(tmp_path: Path) -> None:
    t = topology(tmp_path)
    joined(t, "inner", par=3)
    spec = t.build()
    join = spec.components["b3-join"]
    assert join.par == 3 and not join.is_spout
    data = {(s.source, s.grouping.kind, s.grouping.field_names) for s in join.inputs if s.stream != "coord"}
    assert data == {("orders", "fields", ("uid",)), ("users", "fields", ("id",))}


def test_tuples_of_different_batches_never_join(tmp_path: Path) -> None:
    # One tuple a batch: order i meets user i only when they share a txid.
    t = topology(tmp_path)
    orders = t.new_stream("orders", TransactionalListSpout([[1, "a"], [2, "b"], [3, "c"]], ["k", "o"],
                                                           batch_size=1))
    users = t.new_stream("users", TransactionalListSpout([[1, "x"], [9, "y"], [3, "z"]], ["k", "u"],
                                                         batch_size=1))
    orders.join(users, on="k").project(["o", "u"]).map(["o", "u"], lambda o, u: (o + u,), "ou").group_by(
        "ou").persistent_aggregate(MemoryState("pairs"), Count(), "n")
    run(t)
    assert rows_of("pairs") == {'["ax"]': 1, '["cz"]': 1}


def test_multi_field_join_with_renamed_fields_and_a_self_join(tmp_path: Path) -> None:
    t = topology(tmp_path)
    sales = t.new_stream("sales", TransactionalListSpout(
        [["eu", 2024, 10], ["eu", 2025, 7], ["us", 2024, 4], ["eu", 2024, 1]], ["region", "year", "amount"],
        batch_size=10))
    targets = t.new_stream("targets", TransactionalListSpout(
        [["eu", 2024, 100], ["us", 2024, 50], ["us", 2025, 60]], ["r", "y", "amount"], batch_size=10))
    with pytest.raises(TopologyError, match="both streams have fields \\['amount'\\]"):
        sales.join(targets, on=["region", "year"], other_on=["r", "y"])
    j = t.join(sales, ["region", "year"], targets, ["r", "y"], ["region", "year", "sold", "target"])
    j.map(["region", "year", "sold", "target"], lambda r, y, s, g: (f"{r}{y}", s * 1000 + g), ["ry", "v"]).group_by(
        "ry").persistent_aggregate(MemoryState("multi"), Sum("v"), "v")
    # A stream joined with a derived copy of itself (two inputs from one component).
    doubled = sales.map(["region", "year", "amount"], lambda r, y, a: (r, y, a * 2), ["r2", "y2", "twice"])
    sales.join(doubled, on=["region", "year"], other_on=["r2", "y2"]).project(["amount", "twice"]).persistent_aggregate(
        MemoryState("self"), Sum("twice"), "s")
    run(t)
    assert rows_of("multi") == {'["eu2024"]': 10_100 + 1_100, '["us2024"]': 4_050}
    # eu/2024 has two sales: 2 x 2 pairs; each other key one pair.
    assert rows_of("self") == {"[]": 2 * (10 + 1) * 2 + 7 * 2 + 4 * 2}


def test_joined_counts_are_exact_through_replayed_batches(tmp_path: Path) -> None:
    n = 200
    clicks = [[i % 13, i] for i in range(n)]
    views = [[i % 7, i] for i in range(n)]
    calls = Counter[str]()

    def flaky(k: int) -> bool:
        calls["all"] += 1
        if calls["all"] in (5, 40, 41, 90):
            raise RuntimeError("injected failure")
        return True

    t = topology(tmp_path)
    a = t.new_stream("clicks", TransactionalListSpout(clicks, ["k", "c"], batch_size=20, partitions=2), par=2)
    b = t.new_stream("views", TransactionalListSpout(views, ["k", "v"], batch_size=20, partitions=2), par=2)
    (a.join(b, on="k", par=2).filter("k", flaky)
     .group_by("k").persistent_aggregate(MemoryState("pairs"), Count(), "n", par=2))
    run(t, 120)
    # Batch t of each spout: offsets [(t-1)*20, t*20) of each of its 2 partitions.
    expected: Counter[int] = Counter()
    for txid in range(1, n // 40 + 1):
        def batch(rows: list[list[int]], txid: int = txid) -> list[list[int]]:
            return [r for p in range(2) for r in rows[p::2][(txid - 1) * 20:txid * 20]]
        left, right = Counter(k for k, _ in batch(clicks)), Counter(k for k, _ in batch(views))
        for k in left:
            expected[k] += left[k] * right[k]
    assert calls["all"] > sum(expected.values()), "no batch was replayed"
    assert rows_of("pairs") == {f"[{k}]": v for k, v in expected.items() if v}


def test_join_errors_name_the_fix(tmp_path: Path) -> None:
    t = topology(tmp_path)
    a = t.new_stream("a", TransactionalListSpout([[1, 2]], ["k", "x"]))
    b = t.new_stream("b", TransactionalListSpout([[1, 3]], ["k", "y"]))
    with pytest.raises(TopologyError, match="how='cross' is unknown"):
        a.join(b, on="k", how="cross")
    with pytest.raises(TopologyError, match="no field 'zz'"):
        a.join(b, on="zz")
    with pytest.raises(TopologyError, match="as many join fields"):
        a.join(b, on=["k", "x"], other_on="k")
    with pytest.raises(TopologyError, match="out_fields needs 3 names"):
        a.join(b, on="k", out_fields=["k", "x"])
    assert a.join(b, on="k").fields == ("k", "x", "y")
