"""The Trident stream API compiled to spouts and bolts, run in one process by
storm.testing (the real runtime, groupings and acking): word count into a
state, the other operations and aggregations, merges; the master coordinator's
ordering rules on their own (overlapping batches, commits strictly in txid
order, replays of a failed batch and every later one, resuming after the last
committed txid); and the errors a user can make."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from storm import TopologyError
from storm.testing import TestTopology
from storm.trident import (
    Aggregator,
    Count,
    MasterCoordinator,
    MemoryState,
    MetaStore,
    NonTransactionalListSpout,
    OpaqueListSpout,
    ReducerAggregator,
    Sum,
    TransactionalListSpout,
    TridentTopology,
)
from storm.trident._executor import BATCH_STREAM, COMMIT_STREAM

pytestmark = pytest.mark.timeout(60)

LINES = [["a b a"], ["c b"], ["a"], ["d a b"]] * 5


@pytest.fixture(autouse=True)
def _fresh_memory() -> Iterator[None]:
    MemoryState.clear()
    yield
    MemoryState.clear()


def topology(tmp_path: Path, pending: int = 3) -> TridentTopology:
    return TridentTopology("T", {
        "topology.trident.meta.path": str(tmp_path / "meta.sqlite"),
        "topology.trident.batch.emit.interval.millis": 0.0,
        "topology.max.spout.pending": pending,
    })


def run(t: TridentTopology, coordinator_tuples: int = 80) -> TestTopology:
    with TestTopology(t.build(), max_tuples=coordinator_tuples, timeout=30) as tt:
        tt.run()
    return tt


def true_words() -> Counter[str]:
    c: Counter[str] = Counter()
    for (line,) in LINES:
        c.update(line.split())
    return c


@pytest.mark.parametrize("spout_cls", [TransactionalListSpout, OpaqueListSpout, NonTransactionalListSpout])
def test_word_count_into_a_state(tmp_path: Path, spout_cls: Any) -> None:
    t = topology(tmp_path)
    state = (t.new_stream("lines", spout_cls(LINES, ["line"], batch_size=3, partitions=2), par=2)
             .each("line", str.split, "word")
             .group_by("word")
             .persistent_aggregate(MemoryState("wc"), Count(), "count", par=2))
    assert state.name == "b2-persist" and state.component == "b2-persist"
    tt = run(t)
    assert MemoryState("wc").read_all() == {f'["{w}"]': n for w, n in true_words().items()}
    commits = MemoryState("wc").commits()
    per_task: dict[int, list[int]] = {}
    for task, txid in commits:
        per_task.setdefault(task, []).append(txid)
    for txids in per_task.values():
        assert txids == sorted(txids) and len(set(txids)) == len(txids)
    assert not tt.result.failed("trident-coord")


def test_the_compiled_topology_is_ordinary_spouts_and_bolts(tmp_path: Path) -> None:
    t = topology(tmp_path)
    (t.new_stream("lines", TransactionalListSpout(LINES, ["line"]), par=2)
     .each("line", str.split, "word")
     .group_by("word")
     .persistent_aggregate(MemoryState("x"), Count(), "count", par=3))
    spec = t.build()
    assert [c.name for c in spec.components.values() if not c.system] == ["b2-persist", "lines", "trident-coord"]
    assert spec.components["trident-coord"].is_spout
    persist = {(s.source, s.stream): s.grouping.describe() for s in spec.components["b2-persist"].inputs}
    assert persist == {("lines", "s1"): "fields(word)", ("lines", "coord"): "direct",
                       ("trident-coord", "commit"): "all"}
    lines = {(s.source, s.stream): s.grouping.describe() for s in spec.components["lines"].inputs}
    assert lines == {("trident-coord", "batch"): "all"}
    assert spec.components["lines"].outputs["coord"].direct


def test_operations_and_aggregations(tmp_path: Path) -> None:
    t = topology(tmp_path)
    words = (t.new_stream("lines", TransactionalListSpout(LINES, ["line"], batch_size=4), par=1)
             .flat_map("line", lambda s: [(w, len(w)) for w in s.split()], ["word", "len"])
             .filter("word", lambda w: w != "d")
             .map(["word", "len"], lambda w, n: (w.upper(), n * 10), ["word", "size"]))
    words.project("size").aggregate(Sum("size"), "total").each(
        "total", lambda n: [n], "copy").persistent_aggregate(MemoryState("sum"), Sum("copy"), "all")
    words.group_by("word").aggregate(Count(), "n", par=2).group_by("word").persistent_aggregate(
        MemoryState("grouped"), Sum("n"), "n")
    words.partition_aggregate(Count(), "n").persistent_aggregate(MemoryState("parts"), Sum("n"), "n")

    class Concat(ReducerAggregator):
        input_fields = ("word",)

        def init(self) -> Any:
            return ""

        def reduce(self, curr: Any, values: Any) -> Any:
            return curr + values[0][0]

    words.global_().persistent_aggregate(MemoryState("letters"), Concat(), "s")
    run(t, 100)
    expected = {w.upper(): n for w, n in true_words().items() if w != "d"}
    assert MemoryState("sum").read_all() == {"[]": sum(n * 10 for n in expected.values())}
    assert MemoryState("grouped").read_all() == {f'["{w}"]': n for w, n in expected.items()}
    assert MemoryState("parts").read_all() == {"[]": sum(expected.values())}
    letters = MemoryState("letters").read_all()["[]"]
    assert Counter(letters) == Counter({w[0]: n for w, n in expected.items()})


def test_a_general_aggregator_and_merge(tmp_path: Path) -> None:
    class TopWord(Aggregator):
        input_fields = ("word",)

        def init(self) -> Any:
            return Counter()

        def aggregate(self, state: Any, values: Any) -> Any:
            state[values[0]] += 1
            return state

        def complete(self, state: Any) -> Any:
            return [state.most_common(1)[0]] if state else []

    t = topology(tmp_path)
    a = t.new_stream("left", TransactionalListSpout(LINES, ["line"], batch_size=100)).each(
        "line", str.split, "word").project("word")
    b = t.new_stream("right", TransactionalListSpout([["z"]] * 7, ["w"], batch_size=100))
    merged = t.merge(a, b, par=2)
    assert merged.fields == ("word",)
    merged.group_by("word").persistent_aggregate(MemoryState("merged"), Count(), "n", par=2)
    # The whole input is in the first batch: the top word of that batch is "a".
    merged.aggregate(TopWord(), ["word", "n"]).group_by("word").persistent_aggregate(
        MemoryState("top"), Sum("n"), "n")
    run(t, 40)
    expected = dict(true_words())
    expected["z"] = 7
    assert MemoryState("merged").read_all() == {f'["{w}"]': n for w, n in expected.items()}
    assert MemoryState("top").read_all() == {'["a"]': true_words()["a"]}


def test_user_errors_name_the_field_and_the_fix(tmp_path: Path) -> None:
    t = topology(tmp_path)
    s = t.new_stream("lines", TransactionalListSpout(LINES, ["line"]))
    with pytest.raises(TopologyError, match="no field 'word'"):
        s.group_by("word")
    with pytest.raises(TopologyError, match="already exist"):
        s.each("line", str.split, "line")
    with pytest.raises(TopologyError, match="not a TridentSpout"):
        t.new_stream("x", object())  # type: ignore[arg-type]
    with pytest.raises(TopologyError, match="no stream"):
        TridentTopology("empty").build()
    with pytest.raises(TopologyError, match="needs acking"):
        t.build({"topology.acker.executors": 0})
    s.group_by("line").persistent_aggregate(MemoryState("a"), Count(), name="counts")
    with pytest.raises(TopologyError, match="two states"):
        s.global_().persistent_aggregate(MemoryState("b"), Count(), name="counts")


# -- the master coordinator on its own -------------------------------------


class _Context:
    task_id = 1
    component_id = "trident-coord"


def coordinator(tmp_path: Path, pending: int) -> tuple[MasterCoordinator, list[tuple[str, int, Any]]]:
    sent: list[tuple[str, int, Any]] = []
    c = MasterCoordinator()

    def emit(values: list[Any], stream: str = "default", msg_id: Any = None, **_: Any) -> list[int]:
        sent.append((stream, values[0], msg_id))
        return []

    c.emit = emit  # type: ignore[method-assign]
    c.open({"topology.name": "T", "topology.max.spout.pending": pending,
            "topology.trident.meta.path": str(tmp_path / "meta.sqlite"),
            "topology.trident.batch.emit.interval.millis": 0.0}, _Context())  # type: ignore[arg-type]
    return c, sent


def test_batches_overlap_but_commits_follow_txid_order(tmp_path: Path) -> None:
    c, sent = coordinator(tmp_path, pending=3)
    for _ in range(5):
        c.next_tuple()
    batches = [(txid, mid) for stream, txid, mid in sent if stream == BATCH_STREAM]
    assert [t for t, _ in batches] == [1, 2, 3]  # three in flight at once
    c.ack(batches[2][1])  # txid 3 finished first: it must wait for 1 and 2
    c.ack(batches[1][1])
    c.next_tuple()
    assert not [s for s in sent if s[0] == COMMIT_STREAM]
    c.ack(batches[0][1])
    c.next_tuple()
    commits = [(txid, mid) for stream, txid, mid in sent if stream == COMMIT_STREAM]
    assert [t for t, _ in commits] == [1]
    c.next_tuple()
    assert len([s for s in sent if s[0] == COMMIT_STREAM]) == 1, "one commit at a time"
    c.ack(commits[0][1])
    for _ in range(3):
        c.next_tuple()
    commits = [(txid, mid) for stream, txid, mid in sent if stream == COMMIT_STREAM]
    assert [t for t, _ in commits] == [1, 2]
    c.ack(commits[1][1])
    c.next_tuple()
    c.ack([m for s, t, m in sent if s == COMMIT_STREAM][-1])
    assert c.committed == 3
    c.close()


def test_a_failed_batch_is_replayed_with_every_later_one(tmp_path: Path) -> None:
    c, sent = coordinator(tmp_path, pending=3)
    for _ in range(3):
        c.next_tuple()
    first = {txid: mid for stream, txid, mid in sent if stream == BATCH_STREAM}
    c.ack(first[1])
    c.fail(first[2])
    c.ack(first[3])  # the old attempt of 3: ignored, 3 is replayed after 2
    sent.clear()
    c.next_tuple()
    replays = [(txid, mid) for stream, txid, mid in sent if stream == BATCH_STREAM]
    assert [t for t, _ in replays] == [2, 3]
    assert all(mid[2] > first[t][2] for t, mid in replays), "new attempts are higher"
    assert [t for s, t, _ in sent if s == COMMIT_STREAM] == [1]
    c.close()


def test_a_restarted_coordinator_resumes_after_the_committed_txid(tmp_path: Path) -> None:
    m = MetaStore(str(tmp_path / "meta.sqlite"))
    m.set_committed("T", 41)
    m.close()
    c, sent = coordinator(tmp_path, pending=1)
    c.next_tuple()
    assert [(s, t) for s, t, _ in sent] == [(BATCH_STREAM, 42)]
    c.close()


def test_public_surface_of_storm_trident() -> None:
    import storm.trident as trident

    assert sorted(trident.__all__) == sorted([
        "Aggregator", "CombinerAggregator", "Count", "First", "GroupedStream", "MasterCoordinator",
        "Max", "MemoryState", "MetaStore", "Min", "NonTransactionalListSpout", "OpaqueKafkaSpout", "OpaqueListSpout", "PostgresState",
        "ReducerAggregator", "RedisState", "SQLiteState", "StateFactory", "Stream", "Sum",
        "TransactionalKafkaSpout", "TransactionalListSpout", "TridentBolt", "TridentSpout", "TridentState", "TridentTopology",
        "TxidMapState", "encode_key", "opaque_update", "transactional_update",
    ])
    for name in trident.__all__:
        assert getattr(trident, name) is not None


def test_state_query_reads_each_key_once_per_batch(tmp_path: Path) -> None:
    from storm.trident import TridentState, encode_key

    lengths = MemoryState("lengths")
    lengths.make(task=0).apply(1, {encode_key(["a"]): lambda old: 10, encode_key(["b"]): lambda old: 20})
    looked_up = TridentState("lengths", lengths, component="", group=("word",))
    t = topology(tmp_path)
    (t.new_stream("lines", TransactionalListSpout(LINES, ["line"], batch_size=5))
     .each("line", str.split, "word")
     .state_query(looked_up, "word", "known")
     .map(["word", "known"], lambda w, k: (w, k or 0), ["word", "known"])
     .group_by("word")
     .persistent_aggregate(MemoryState("sums"), Sum("known"), "total"))
    run(t, 40)
    words = true_words()
    assert MemoryState("sums").read_all() == {
        f'["{w}"]': {"a": 10, "b": 20}.get(w, 0) * n for w, n in words.items()}
    with pytest.raises(TopologyError, match="key field"):
        t.new_stream("more", TransactionalListSpout(LINES, ["line"])).state_query(looked_up, [], "x")


def test_partition_persist_after_partition_by(tmp_path: Path) -> None:
    t = topology(tmp_path)
    state = (t.new_stream("lines", TransactionalListSpout(LINES, ["line"], batch_size=3, partitions=2), par=2)
             .each("line", str.split, "word")
             .partition_by("word", par=2)
             .partition_persist(MemoryState("pp"), Count(), "word", name="pp"))
    assert state.group == ("word",)
    run(t)
    assert MemoryState("pp").read_all() == {f'["{w}"]': n for w, n in true_words().items()}


def test_attempts_of_a_restarted_coordinator_exceed_the_old_ones(tmp_path: Path) -> None:
    c, sent = coordinator(tmp_path, pending=1)
    c.next_tuple()
    old_attempt = sent[-1][2][2]
    c.close()
    m = MetaStore(str(tmp_path / "meta.sqlite"))
    m.reserve_attempts("T", old_attempt + 10**15)  # as if the clock had stepped back a lot since
    m.close()
    c2, sent2 = coordinator(tmp_path, pending=1)
    c2.next_tuple()
    assert sent2[-1][2][2] > old_attempt + 10**15
    c2.close()
