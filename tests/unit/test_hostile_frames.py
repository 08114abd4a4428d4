"""Hostile and malformed input to a worker, in process: Worker.receive drops
and counts every frame or group that is oversized, truncated, not msgpack,
of the wrong shape or types, or addressed to a task the worker does not run,
and still delivers every well-formed group beside them; control messages of
the wrong shape never reach the run loop."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from storm import Bolt, Spout, Topology, Tuple
from storm._runtime import Worker
from storm._serialization import KIND_TUPLES, check_control, check_group, pack, unpack

pytestmark = pytest.mark.timeout(30)


class Src(Spout):
    outputs = ["n"]


class Sink(Bolt):
    def execute(self, tup: Tuple) -> None:
        pass


class Pair(Topology):
    src = Src.spec()
    sink = Sink.spec(inputs=[src], par=2)


def make_worker(max_frame: int | None = None) -> tuple[Worker, int, int, int]:
    """Worker 0 of 2 (in process, no transport); returns it, one of its sink
    tasks, a sink task of the other worker, and the src default stream id."""
    overrides: dict[str, Any] = {"topology.workers": 2, "topology.acker.executors": 0}
    if max_frame is not None:
        overrides["topology.transfer.max.frame.bytes"] = max_frame
    spec = Pair.build(overrides)
    assignment = spec.assign(2)
    worker = Worker(spec, assignment, 0, None)
    sinks = spec.components["sink"].tasks
    mine = next(t for t in sinks if assignment[t] == 0)
    other = next(t for t in sinks if assignment[t] == 1)
    return worker, mine, other, spec.stream_ids[("src", "default")]


def batch(*groups: Any) -> bytes:
    return pack([KIND_TUPLES, list(groups)])


def inbox_values(worker: Worker, task: int) -> list[Any]:
    return [t.values for t in worker.inboxes[task]]


def test_a_good_frame_is_delivered() -> None:
    w, mine, _other, sid = make_worker()
    assert w.receive([batch([mine, 1, sid, [[1], [2]], None])]) == 2
    assert inbox_values(w, mine) == [[1], [2]]
    assert w.dropped_frames == 0


@pytest.mark.parametrize("frame", [
    b"",
    b"\xc1",  # a byte msgpack never uses
    b"\xff" * 100,
    batch([0, 1, 0, [[1]], None])[:-3],  # truncated
    pack({"0": 1, "1": []}),
    pack({0: KIND_TUPLES, 1: []}),  # a map that indexes like a list
    pack([KIND_TUPLES]),
    pack([KIND_TUPLES, "groups"]),
    pack([99, []]),
    pack(["tuples", []]),
    pack([KIND_TUPLES, [], "extra"]),
    pack("x" * 1000),
    pack(12345),
    b"\x91" * 5000 + b"\xc0",  # nested 5000 deep
])
def test_garbage_frames_are_dropped_and_counted(frame: bytes, caplog: pytest.LogCaptureFixture) -> None:
    w, mine, _other, sid = make_worker()
    good = batch([mine, 1, sid, [["ok"]], None])
    with caplog.at_level(logging.ERROR, logger="storm.worker"):
        assert w.receive([frame, good, frame]) == 1
    assert inbox_values(w, mine) == [["ok"]]
    assert w.dropped_frames == 2
    assert "dropped a frame" in caplog.text


@pytest.mark.parametrize("group, problem", [
    ("x", "5-element list"),
    ([1, 2, 3], "5-element list"),
    (["1", 1, 0, [[1]], None], "not an int"),
    ([1, 1.5, 0, [[1]], None], "not an int"),
    ([1, 1, True, [[1]], None], "not an int"),
    ([1, 1, -1, [[1]], None], "stream id -1"),
    ([1, 1, 10**6, [[1]], None], "stream id"),
    ([1, 1, 0, "values", None], "tuples are not a list"),
    ([1, 1, 0, [[1], [2]], [{1: 2}]], "one entry or two ids per tuple"),
    ([1, 1, 0, [[1]], {"r": 1}], "one entry or two ids per tuple"),
    ([1, 1, 0, [[1], [2]], bytes(16)], "16 bytes (two ids) per tuple"),
    ([1, 1, 0, [[1]], bytes(17)], "16 bytes (two ids) per tuple"),
])
def test_malformed_groups_are_dropped_beside_good_ones(group: Any, problem: str) -> None:
    w, mine, _other, sid = make_worker()
    assert problem in (check_group(group, len(w.streams)) or "")
    n = w.receive([batch([mine, 1, sid, [["a"]], None], group, [mine, 1, sid, [["b"]], None])])
    assert n == 2
    assert inbox_values(w, mine) == [["a"], ["b"]]
    assert w.dropped_frames == 1


def test_unknown_task_ids_are_dropped_and_counted() -> None:
    w, mine, other, sid = make_worker()
    n = w.receive([batch([other, 1, sid, [[1], [2]], None], [10**9, 1, sid, [[3]], None],
                         [-5, 1, sid, [[4]], None], [mine, 1, sid, [[5]], None])])
    assert n == 1
    assert inbox_values(w, mine) == [[5]]
    assert w.dropped_unknown == 4
    assert w.dropped_frames == 3


def test_oversized_frames_are_dropped() -> None:
    w, mine, _other, sid = make_worker(max_frame=1024)
    big = batch([mine, 1, sid, [["x" * 2000]], None])
    assert len(big) > 1024
    assert w.receive([big, batch([mine, 1, sid, [["small"]], None])]) == 1
    assert inbox_values(w, mine) == [["small"]]
    assert w.dropped_frames == 1


def test_a_flood_is_logged_sparingly(caplog: pytest.LogCaptureFixture) -> None:
    w, mine, _other, sid = make_worker()
    with caplog.at_level(logging.ERROR, logger="storm.worker"):
        for _ in range(100):
            w.receive([b"\xc1"] * 100)
    assert w.dropped_frames == 10_000
    assert len(caplog.records) <= 10 + 10


def test_rooted_tuples_keep_their_roots() -> None:
    w, mine, _other, sid = make_worker()
    w.receive([batch([mine, 1, sid, [[1], [2]], [7, 9, 8, 10]])])
    one, two = w.inboxes[mine]
    assert (one.root, one.edge, one.more, one.ack_val) == (7, 9, None, 0)
    assert (two.root, two.edge, two.more) == (8, 10, None)


def test_tuples_in_several_trees_keep_them_all() -> None:
    w, mine, _other, sid = make_worker()
    w.receive([batch([mine, 1, sid, [[1]], [[7, 9, 8, 10]]])])
    (tup,) = w.inboxes[mine]
    assert (tup.root, tup.edge, tup.more) == (7, 9, {8: 10})
    assert tup.roots == {7: 9, 8: 10}


@pytest.mark.parametrize("trees", [[[7, 9, 8]], [[7]], [["x"]], [7]], ids=["odd", "short", "str", "flat-short"])
def test_malformed_trees_are_dropped(trees: Any) -> None:
    w, mine, _other, sid = make_worker()
    assert w.receive([batch([mine, 1, sid, [[1]], trees])]) == 0
    assert not w.inboxes[mine]
    assert w.dropped_frames == 1


@pytest.mark.parametrize("msg, ok", [
    (["activate"], True), (["deactivate"], True), (["stop"], True),
    (["parent", 123], True), (["throttle", 1, True], True), (["checkpoint", 3], True),
    (["checkpoint", "3"], False), (["checkpoint"], False),
    (["parent", "123"], False), (["parent"], False), (["throttle", 1, 1], False),
    (["throttle", "a", True], False), (["explode"], False), ([], False), ("stop", False),
    ({"kind": "stop"}, False), (None, False), ([1, 2], False), (["stop", 1], False),
])
def test_control_message_schema(msg: Any, ok: bool) -> None:
    assert (check_control(msg) is None) is ok


@pytest.mark.parametrize("header", [b"\xdb", b"\xc6", b"\xdd", b"\xdf"], ids=["str32", "bin32", "array32", "map32"])
def test_a_header_claiming_4_gib_is_refused_without_allocating_it(header: bytes) -> None:
    # msgpack bounds every length by the bytes actually there, so the decoder
    # refuses at the header instead of reserving 4 GiB.
    claim = header + b"\xff\xff\xff\xff"
    with pytest.raises(ValueError, match="incomplete input|exceeds max_"):
        unpack(claim)
    w, mine, _other, sid = make_worker()
    frame = pack([KIND_TUPLES, []])[:-1] + b"\x91" + claim  # a groups list of one such value
    assert w.receive([frame, batch([mine, 1, sid, [["ok"]], None])]) == 1
    assert inbox_values(w, mine) == [["ok"]]
    assert w.dropped_frames == 1


# -- acks packed in a frame (storm._runtime.batching: [KIND_TUPLES, groups, acks]) -------

def acker_worker() -> tuple[Worker, int]:
    """Worker 0 of 2 with acking on (one acker per worker); returns it and its acker task."""
    spec = Pair.build({"topology.workers": 2, "topology.acker.executors": 2})
    assignment = spec.assign(2)
    worker = Worker(spec, assignment, 0, None)
    acker = next(t for t in spec.components["__acker"].tasks if assignment[t] == 0)
    return worker, acker


def test_packed_acks_fold_into_the_acker_and_bad_entries_are_dropped() -> None:
    from storm._runtime.batching import pack_ids

    w, acker = acker_worker()
    trees = w.takers[acker].trees
    root = (1 << 61) + 5
    good = [acker, pack_ids([root, 7, root, 9])]
    frame = pack([KIND_TUPLES, [], [good, [acker, b"short"], ["x", bytes(16)], [10**6, bytes(16)]]])
    assert w.receive([frame, pack([KIND_TUPLES, [], "acks"])]) == 2
    assert trees.pending.get(root).xor == 7 ^ 9
    assert w.dropped_frames == 4  # two bad entries and an unknown task in the first frame; the second
    assert w.executors[acker].stats.executed == 2


def test_acks_cross_between_two_workers_packed_and_complete_the_tree() -> None:
    from storm._runtime import MemoryTransport
    from storm._tuple import StreamMeta

    spec = Pair.build({"topology.workers": 2, "topology.acker.executors": 2})
    assignment = spec.assign(2)
    transport = MemoryTransport(2)
    workers = [Worker(spec, assignment, i, transport) for i in range(2)]
    a0 = next(t for t in spec.components["__acker"].tasks if assignment[t] == 0)
    trees = workers[0].takers[a0].trees
    results: list[Any] = []
    trees.executor = None  # results to on_result below, not to the acker task's executor
    trees.on_result = lambda task, root, ok: results.append((task, root, ok))
    tracker = workers[1].tracker
    root = tracker.place_root((1 << 61) + 12345, tracker.ackers.index(a0))  # a tree of worker 0's acker
    trees.fold(root, 3 ^ 5, 99)  # the spout's init, in worker 0
    meta = StreamMeta("src", "default", ("n",), 0)
    for edge in (3, 5):  # two tuples of the tree acked in worker 1
        tracker.ack(Tuple([1], meta, 1, root, edge))
    tracker.flush()
    workers[1].flush_all()
    frames = transport.take(0)
    assert len(frames) == 1 and len(unpack(frames[0])) == 3  # one frame, the acks packed in it
    workers[0].receive(frames)
    assert results == [(99, root, True)]


def test_tree_ids_that_are_not_ints_are_dropped() -> None:
    w, mine, _other, sid = make_worker()
    frames = [batch([mine, 1, sid, [["a"]], ["root", 1]]),  # one tree, ids as a list
              batch([mine, 1, sid, [["b"]], [[1, 2, "3", 4]]])]  # several trees
    assert w.receive(frames) == 0
    assert inbox_values(w, mine) == []
    assert w.dropped_frames == 2
