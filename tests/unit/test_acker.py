"""At-least-once tracking: RotatingMap semantics, and the XOR acking algorithm of
the system `__acker` bolt driven directly with the messages a real tuple tree
produces (spout init, bolt acks and fails) in every delivery order."""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from storm._acking import ACK_ACK, ACK_FAIL, ACK_INIT, ACK_RESULT, ROTATING_BUCKETS
from storm._runtime.acking import AckerBolt, Ids, RotatingMap
from storm._tuple import TICK_META, StreamMeta, Tuple

new_id = Ids().next

# -- RotatingMap ---------------------------------------------------------------------


def test_rotating_map_put_get_pop() -> None:
    m = RotatingMap()
    assert len(m) == 0 and m.get("a") is None and m.get("a", 5) == 5
    m.put("a", 1)
    m.put("b", 2)
    assert len(m) == 2 and "a" in m and "z" not in m
    assert m.get("a") == 1
    m.put("a", 3)  # update in place
    assert m.get("a") == 3 and len(m) == 2
    assert m.pop("a") == 3
    assert m.pop("a") is None and m.pop("a", "gone") == "gone"
    assert "a" not in m and len(m) == 1
    assert dict(m.items()) == {"b": 2}


@pytest.mark.parametrize("buckets", [2, 3, 5])
def test_rotating_map_entries_survive_buckets_minus_one_rotations(buckets: int) -> None:
    # With a rotation every timeout / (buckets - 1) seconds, an entry lives between
    # timeout and timeout * buckets / (buckets - 1): never less than the timeout.
    m = RotatingMap(buckets)
    m.put("k", "v")
    for _ in range(buckets - 1):
        assert m.rotate() == {}
        assert m.get("k") == "v"
    assert m.rotate() == {"k": "v"}
    assert "k" not in m and len(m) == 0


def test_rotating_map_put_refreshes_an_old_entry() -> None:
    m = RotatingMap(3)
    m.put("k", 1)
    m.rotate()
    m.rotate()
    m.put("k", 2)  # moved back to the newest bucket
    assert len(m) == 1
    assert m.rotate() == {} and m.rotate() == {}
    assert m.get("k") == 2
    assert m.rotate() == {"k": 2}


def test_rotating_map_get_does_not_refresh() -> None:
    m = RotatingMap(2)
    m.put("k", 1)
    m.rotate()
    assert m.get("k") == 1
    assert m.rotate() == {"k": 1}


def test_rotating_map_needs_two_buckets() -> None:
    with pytest.raises(ValueError, match="at least 2 buckets"):
        RotatingMap(1)
    assert ROTATING_BUCKETS >= 2


ops = st.lists(
    st.one_of(
        st.tuples(st.just("put"), st.integers(0, 6), st.integers()),
        st.tuples(st.just("pop"), st.integers(0, 6), st.none()),
        st.tuples(st.just("get"), st.integers(0, 6), st.none()),
        st.tuples(st.just("rotate"), st.none(), st.none()),
    ),
    max_size=60,
)


@settings(max_examples=100, deadline=None)
@given(buckets=st.integers(2, 5), script=ops)
def test_rotating_map_matches_a_model(buckets: int, script: list[tuple[str, Any, Any]]) -> None:
    m = RotatingMap(buckets)
    model: dict[int, list[Any]] = {}  # key -> [value, rotations since it was last moved to the head]
    for op, key, value in script:
        if op == "put":
            if key in model and model[key][1] == 0:
                model[key][0] = value
            else:
                model[key] = [value, 0]
            m.put(key, value)
        elif op == "pop":
            expected = model.pop(key, [None])[0]
            assert m.pop(key) == expected
        elif op == "get":
            assert m.get(key) == model.get(key, [None])[0]
        else:
            expired = {k: v for k, (v, age) in model.items() if age == buckets - 1}
            for k in expired:
                del model[k]
            for entry in model.values():
                entry[1] += 1
            assert m.rotate() == expired
        assert len(m) == len(model)
        assert dict(m.items()) == {k: v for k, (v, _) in model.items()}


def test_new_ids_are_nonzero_62_bit() -> None:
    ids = [new_id() for _ in range(5000)]  # several refills of the pool
    assert all(0 < i < 2**62 for i in ids)
    assert len(set(ids)) == 5000
    assert max(ids) > 2**61  # really 62-bit, not small
    assert sum(i >> 61 for i in ids) > 2000  # the top bit is as often set as not


def test_seeded_ids_repeat_and_unseeded_ones_differ() -> None:
    a = Ids(random.Random(7))
    b = Ids(random.Random(7))
    assert [a.next() for _ in range(3000)] == [b.next() for _ in range(3000)]
    assert len({Ids().next() for _ in range(50)}) == 50


def test_seeded_ids_are_the_same_numbers_compiled_and_interpreted() -> None:
    # The suite runs compiled and pure-Python, and both must draw exactly these:
    # the multiply-with-carry generators run in 64-bit machine integers when
    # compiled, and a seeded Ids draws from its pool in both builds.
    mwc = Ids(random.Random(7), machine_words=True)
    assert [mwc.next() for _ in range(3)] == [
        1890514869540109156, 3357071227403944067, 2788922353750101105]
    pooled = Ids(random.Random(7))
    assert not pooled.machine_words
    assert [pooled.next() for _ in range(3)] == [
        4244735578660082708, 3953650018125175471, 76764311875299180]


@pytest.mark.parametrize("machine_words", [True, False])
def test_both_generators_draw_nonzero_62_bit_ids(machine_words: bool) -> None:
    gen = Ids(machine_words=machine_words)
    ids = [gen.next() for _ in range(5000)]
    assert all(0 < i < 2**62 for i in ids)
    assert len(set(ids)) == 5000
    assert sum(i >> 61 for i in ids) > 2000  # the top bit is as often set as not
    assert sum(i & 1 for i in ids) > 2000  # and the lowest


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.parametrize("machine_words", [True, False])
def test_a_forked_child_draws_other_ids_than_its_parent(machine_words: bool) -> None:
    ids = Ids(machine_words=machine_words)
    ids.next()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next ids, to the parent, and out at once
        try:
            os.write(write_end, b",".join(str(ids.next()).encode() for _ in range(20)))
        finally:
            os._exit(0)
    os.close(write_end)
    try:
        with os.fdopen(read_end, "rb") as f:
            child = [int(x) for x in f.read().split(b",")]
    finally:
        os.waitpid(pid, 0)
    parent = [ids.next() for _ in range(20)]
    assert len(child) == 20
    assert not set(child) & set(parent)


# -- the acker -------------------------------------------------------------------------

SPOUT_TASK = 7
INIT_META = StreamMeta("words", ACK_INIT, ("root", "xor", "task"), 1, direct=True)
ACK_METAS = {
    "words": StreamMeta("words", ACK_ACK, ("root", "xor"), 2, direct=True),
    "split": StreamMeta("split", ACK_ACK, ("root", "xor"), 3, direct=True),
}
FAIL_META = StreamMeta("split", ACK_FAIL, ("root",), 4, direct=True)


@dataclass
class Recorder:
    """Stands in for the acker's emit: records [values, stream, direct_task]."""

    sent: list[tuple[list[Any], str, int | None]] = field(default_factory=list)

    def __call__(self, values: Any, stream: str = "default", anchors: Any = None,
                 direct_task: int | None = None, need_task_ids: bool = True) -> list[int]:
        self.sent.append((list(values), stream, direct_task))
        return [direct_task] if direct_task is not None else []

    def results(self, root: int | None = None) -> list[bool]:
        out = []
        for values, stream, task in self.sent:
            assert stream == ACK_RESULT and task == SPOUT_TASK, (values, stream, task)
            if root is None or values[0] == root:
                out.append(values[1])
        return out


def make_acker(conf: dict[str, Any] | None = None) -> tuple[AckerBolt, Recorder]:
    acker = AckerBolt()
    acker.prepare(conf or {}, None)  # type: ignore[arg-type]
    rec = Recorder()
    acker.emit = rec  # type: ignore[assignment]
    return acker, rec


def init(root: int, xor: int) -> Tuple:
    return Tuple([root, xor, SPOUT_TASK], INIT_META, SPOUT_TASK)


def ack(root: int, xor: int, source: str = "split") -> Tuple:
    return Tuple([root, xor], ACK_METAS[source], 3)


def fail(root: int) -> Tuple:
    return Tuple([root], FAIL_META, 3)


def tick() -> Tuple:
    return Tuple([1], TICK_META, 0)


@dataclass
class TreeTuple:
    """A tuple of the tree: `val` is its roots[root] (XOR of the edges it was
    created under), `ack_val` the XOR of the edges of children anchored to it."""

    val: int
    ack_val: int = 0


@dataclass(frozen=True)
class Shape:
    """The shape parameters hypothesis draws; the details come from a seeded rng."""

    seed: int
    spout_targets: int
    emits: int
    max_anchors: int
    ack_rate: float


shapes = st.builds(
    Shape,
    seed=st.integers(0, 2**64),
    spout_targets=st.integers(1, 4),
    emits=st.integers(0, 14),
    max_anchors=st.integers(1, 3),
    ack_rate=st.sampled_from([0.0, 0.3, 0.7, 1.0]),
)


def make_tree(shape: Shape) -> tuple[random.Random, int, Tuple, list[TreeTuple]]:
    """A random tuple tree, built as the runtime builds it: the spout emits to k
    tasks (one edge each); then bolts emit children anchored to one or more open
    input tuples of this root (a new random 64-bit edge per anchor, so a child of
    several inputs is multi-anchored), and inputs get acked along the way."""
    rng = random.Random(shape.seed)

    def edge() -> int:
        return rng.getrandbits(64) or 1

    root = edge()
    first = [TreeTuple(edge()) for _ in range(shape.spout_targets)]
    spout_xor = 0
    for t in first:
        spout_xor ^= t.val
    tuples = list(first)
    open_ = list(first)
    for _ in range(shape.emits):
        if not open_:
            break
        # Sampled with replacement: the same input twice means two edges, as in the runtime.
        anchors = [rng.randrange(len(open_)) for _ in range(rng.randint(1, shape.max_anchors))]
        child = TreeTuple(0)
        for i in anchors:
            e = edge()
            open_[i].ack_val ^= e
            child.val ^= e
        tuples.append(child)
        open_.append(child)
        if rng.random() < shape.ack_rate:
            open_.pop(anchors[0])
    return rng, root, init(root, spout_xor), tuples


def ack_messages(root: int, tuples: list[TreeTuple]) -> list[Tuple]:
    return [ack(root, t.val ^ t.ack_val) for t in tuples]


@settings(max_examples=250, deadline=None)
@given(shape=shapes, init_at=st.floats(0, 1))
def test_complete_exactly_once_after_the_last_message(shape: Shape, init_at: float) -> None:
    rng, root, init_msg, tuples = make_tree(shape)
    messages = ack_messages(root, tuples)
    rng.shuffle(messages)
    messages.insert(round(init_at * len(messages)), init_msg)  # acks before the init too
    acker, rec = make_acker()
    for i, msg in enumerate(messages):
        acker.execute(msg)
        if i < len(messages) - 1:
            assert rec.sent == [], f"reported after {i + 1} of {len(messages)} messages"
    assert rec.sent == [([root, True], ACK_RESULT, SPOUT_TASK)]
    assert len(acker.pending) == 0
    # Nothing left to time out.
    for _ in range(ROTATING_BUCKETS):
        acker.process_tick(tick())
    assert rec.results() == [True]


@settings(max_examples=100, deadline=None)
@given(shape=shapes, lost_at=st.floats(0, 1, exclude_max=True))
def test_a_missing_message_never_completes(shape: Shape, lost_at: float) -> None:
    rng, root, init_msg, tuples = make_tree(shape)
    messages = [init_msg, *ack_messages(root, tuples)]
    lost = int(lost_at * len(messages))
    del messages[lost]
    rng.shuffle(messages)
    acker, rec = make_acker()
    for msg in messages:
        acker.execute(msg)
    assert rec.sent == []
    for _ in range(ROTATING_BUCKETS):
        acker.process_tick(tick())
    # With the init in, the tree times out and fails once; without it, the acks
    # expire silently (the acker does not know which spout to tell).
    assert rec.results() == ([] if lost == 0 else [False])
    assert len(acker.pending) == 0


@settings(max_examples=250, deadline=None)
@given(shape=shapes, fails=st.integers(1, 3))
def test_a_fail_anywhere_reports_failure_once_and_never_success(shape: Shape, fails: int) -> None:
    rng, root, init_msg, tuples = make_tree(shape)
    # Bolts fail some inputs instead of acking them (their children may still ack).
    failing = {rng.randrange(len(tuples)) for _ in range(fails)}
    order = [init_msg] + [
        fail(root) if i in failing else ack(root, t.val ^ t.ack_val) for i, t in enumerate(tuples)
    ]
    rng.shuffle(order)
    acker, rec = make_acker()
    init_seen = fail_seen = False
    for msg in order:
        acker.execute(msg)
        init_seen |= msg is init_msg
        fail_seen |= msg.meta.stream == ACK_FAIL
        # Failure is reported as soon as the acker knows both the spout and a fail.
        assert rec.results() == ([False] if init_seen and fail_seen else [])
    for _ in range(ROTATING_BUCKETS):  # leftovers of the failed tree expire silently
        acker.process_tick(tick())
    assert rec.results() == [False]
    assert len(acker.pending) == 0


@settings(max_examples=60, deadline=None)
@given(trees=st.lists(shapes, min_size=2, max_size=5, unique_by=lambda s: s.seed))
def test_interleaved_trees_complete_independently(trees: list[Shape]) -> None:
    per_root: dict[int, list[Tuple]] = {}
    for shape in trees:
        _, root, init_msg, tuples = make_tree(shape)
        per_root[root] = [init_msg, *ack_messages(root, tuples)]
    order = [m for msgs in per_root.values() for m in msgs]
    random.Random(trees[0].seed).shuffle(order)
    remaining = {root: len(msgs) for root, msgs in per_root.items()}
    acker, rec = make_acker()
    for msg in order:
        acker.execute(msg)
        remaining[msg.values[0]] -= 1
        for root, left in remaining.items():
            assert rec.results(root) == ([True] if left == 0 else []), (root, left)
    assert len(acker.pending) == 0


def test_acks_before_init_complete_on_init() -> None:
    acker, rec = make_acker()
    e1, e2, e3 = 0x1111, 0x2222, 0x4444
    acker.execute(ack(5, e1 ^ e3))  # tuple e1 acked, anchored child e3
    acker.execute(ack(5, e3))
    acker.execute(ack(5, e2))
    assert rec.sent == [] and 5 in acker.pending
    acker.execute(init(5, e1 ^ e2))
    assert rec.sent == [([5, True], ACK_RESULT, SPOUT_TASK)]


def test_init_with_zero_xor_completes_immediately() -> None:
    # A spout emit whose edges XOR to 0 (the runtime acks an emit to no task itself).
    acker, rec = make_acker()
    acker.execute(init(9, 0))
    assert rec.results() == [True]


def test_timeout_fails_a_tree_after_the_rotating_buckets() -> None:
    acker, rec = make_acker()
    acker.execute(init(1, 0xABC))
    for _ in range(ROTATING_BUCKETS - 1):
        acker.process_tick(tick())
        assert rec.sent == []
    acker.process_tick(tick())
    assert rec.sent == [([1, False], ACK_RESULT, SPOUT_TASK)]
    # A late ack of the timed-out tree reports nothing and expires silently.
    acker.execute(ack(1, 0xABC))
    for _ in range(ROTATING_BUCKETS):
        acker.process_tick(tick())
    assert rec.results() == [False] and len(acker.pending) == 0


def test_orphan_acks_expire_without_a_report() -> None:
    acker, rec = make_acker()
    acker.execute(ack(2, 0x10))
    acker.execute(fail(3))
    for _ in range(ROTATING_BUCKETS):
        acker.process_tick(tick())
    assert rec.sent == [] and len(acker.pending) == 0


def test_timeouts_can_be_disabled() -> None:
    acker, rec = make_acker({"topology.enable.message.timeouts": False})
    acker.execute(init(1, 0xABC))
    for _ in range(3 * ROTATING_BUCKETS):
        acker.process_tick(tick())
    assert rec.sent == [] and 1 in acker.pending
    acker.execute(ack(1, 0xABC))
    assert rec.results() == [True]


def test_other_streams_are_ignored() -> None:
    acker, rec = make_acker()
    acker.execute(Tuple([1, 2], StreamMeta("x", "default", ("a", "b"), 9), 1))
    acker.execute(tick())
    assert rec.sent == [] and len(acker.pending) == 0
