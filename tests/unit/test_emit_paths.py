"""The specialised emit closures (storm/_runtime.py _FAST_EMIT_TEMPLATE): a
fields-grouped default stream (per-key cache), a round-robin one (cycled
entries), an all-grouped one (general default path) and a named stream (generic
path) must all check values, route and count exactly like the general path."""

from __future__ import annotations

from typing import Any

import pytest

from storm import Bolt, EmitError, Grouping, SerializationError, Spout, Stream, Topology
from storm._runtime import BoltExecutor, Worker
from storm._tuple import StreamMeta, Tuple


class Src(Spout):
    outputs = ["k"]


class Emitter(Bolt):
    outputs = [Stream(["k", "v"]), Stream(["k"], name="side")]


class Sink(Bolt):
    pass


def make(grouping: Grouping) -> tuple[Worker, BoltExecutor]:
    class T(Topology):
        config = {"topology.acker.executors": 0}
        src = Src.spec()
        emitter = Emitter.spec(inputs=[src])
        sink = Sink.spec(inputs={emitter: grouping}, par=3)
        side = Sink.spec(inputs=[emitter["side"]], par=2)

    spec = T.build()
    worker = Worker(spec, {t: 0 for t in spec.task_component}, 0, None)
    ex = next(e for e in worker.bolts if e.component == "emitter")
    return worker, ex


GROUPINGS = [Grouping.fields("k"), Grouping.shuffle(), Grouping.all(), Grouping.global_()]


@pytest.mark.timeout(10)
@pytest.mark.parametrize("grouping", GROUPINGS, ids=lambda g: g.kind)
def test_fast_paths_check_values_like_the_general_path(grouping: Grouping) -> None:
    _, ex = make(grouping)
    emit = ex.instance.emit
    with pytest.raises(SerializationError, match="'emitter'.*'default'.*field 'v' holds a set"):
        emit(["a", {1}])
    with pytest.raises(SerializationError, match="field 'v' holds an int out of the 64-bit range"):
        emit(["a", 2**64])
    with pytest.raises(EmitError, match="emitted 1 values on stream 'default', which declares 2"):
        emit(["a"])
    with pytest.raises(EmitError, match="emit takes a list of values"):
        emit("ab")
    with pytest.raises(EmitError, match="undeclared stream 'nope'"):
        emit(["a", 1], stream="nope")
    assert ex.routes["default"].count == 0  # nothing bad was counted or delivered
    assert all(not e.inbox for e in ex.worker.bolts if e.component == "sink")


@pytest.mark.timeout(10)
@pytest.mark.parametrize("grouping", GROUPINGS, ids=lambda g: g.kind)
def test_fast_paths_route_count_and_deliver(grouping: Grouping) -> None:
    worker, ex = make(grouping)
    sinks = [e for e in worker.bolts if e.component == "sink"]
    sent: list[Any] = []
    for i in range(60):
        sent.append(ex.instance.emit([f"key{i % 7}", i]))
    ex.instance.emit([["unhashable", "key"], 0])  # a list as the key still routes
    delivered = sum(len(e.inbox) for e in sinks)
    assert ex.routes["default"].count == 61
    per_emit = 3 if grouping.kind == "all" else 1
    assert delivered == 61 * per_emit
    assert all(len(tasks) == per_emit for tasks in sent)
    if grouping.kind == "fields":
        by_key: dict[str, set[int]] = {}
        for e in sinks:
            for tup in e.inbox:
                by_key.setdefault(str(tup[0]), set()).add(e.task_id)
        assert all(len(tasks) == 1 for tasks in by_key.values())
    if grouping.kind == "shuffle":
        assert sorted(len(e.inbox) for e in sinks) == [20, 20, 21]
    if grouping.kind == "global":
        assert [len(e.inbox) for e in sinks] == [61, 0, 0]
    tup = sinks[0].inbox[0] if sinks[0].inbox else sinks[1].inbox[0]
    assert isinstance(tup, Tuple) and tup.source_component == "emitter" and tup.stream == "default"
    assert tup.source_task == ex.task_id and tup.roots is None


@pytest.mark.timeout(10)
def test_named_stream_takes_the_generic_path() -> None:
    worker, ex = make(Grouping.fields("k"))
    side = [e for e in worker.bolts if e.component == "side"]
    for i in range(10):
        ex.instance.emit([i], stream="side")
    assert ex.routes["side"].count == 10
    assert sorted(len(e.inbox) for e in side) == [5, 5]
    with pytest.raises(SerializationError, match="'side'"):
        ex.instance.emit([object()], stream="side")


def test_stream_meta_is_shared_not_copied() -> None:
    worker, ex = make(Grouping.shuffle())
    ex.instance.emit(["a", 1])
    ex.instance.emit(["b", 2])
    tuples = [t for e in worker.bolts if e.component == "sink" for t in e.inbox]
    assert len({id(t.meta) for t in tuples}) == 1
    assert isinstance(tuples[0].meta, StreamMeta)


# -- anchored emits (acking on): trees complete across local and remote targets --

class Numbers(Spout):
    outputs = ["n"]

    def open(self, conf: dict[str, Any], context: Any) -> None:
        self.next_n = context.task_id * 1_000_000
        self.left = int(conf["test.per_spout"])
        self.acked: list[Any] = []
        self.failed: list[Any] = []

    def next_tuple(self) -> None:
        if self.left:
            self.left -= 1
            self.next_n += 1
            self.emit([self.next_n], msg_id=self.next_n)

    def ack(self, msg_id: Any) -> None:
        self.acked.append(msg_id)

    def fail(self, msg_id: Any) -> None:
        self.failed.append(msg_id)


class Fan(Bolt):
    """Emits three children per input, anchored to it: one anchor as a tuple, as
    a one-item list, and as the Tuple itself (the inline single-anchor path)."""

    outputs = ["k"]

    def execute(self, tup: Tuple) -> None:
        n = tup.values[0]
        self.emit([f"a{n % 97}"], anchors=(tup,))
        self.emit([f"b{n % 89}"], anchors=[tup])
        self.emit([f"c{n % 83}"], anchors=tup)
        self.ack(tup)


class Join(Bolt):
    """Multi-anchors every second child to the previous one (roots become a
    dict), then emits one single-anchor grandchild of the multi-rooted tuple."""

    outputs = ["k"]

    def prepare(self, conf: dict[str, Any], context: Any) -> None:
        self.held: Tuple | None = None

    def execute(self, tup: Tuple) -> None:
        if self.held is None:
            self.held = tup
            return
        prev, self.held = self.held, None
        self.emit([tup.values[0]], anchors=[prev, tup])  # roots of two trees
        self.ack(prev)
        self.ack(tup)


class Leaf(Bolt):
    outputs = ["k"]

    def execute(self, tup: Tuple) -> None:
        if isinstance(tup.roots, dict):
            self.emit([tup.values[0]], anchors=tup)  # one anchor, many roots
        self.ack(tup)


class Memory:
    """An in-memory transport: frames wait in a list per worker."""

    def __init__(self) -> None:
        self.frames: dict[int, list[bytes]] = {0: [], 1: []}

    def send(self, w: int, data: bytes) -> bool:
        self.frames[w].append(data)
        return True

    def report(self, msg: Any) -> None:
        pass


@pytest.mark.timeout(30)
@pytest.mark.parametrize("grouping", [Grouping.fields("k"), Grouping.shuffle()], ids=lambda g: g.kind)
def test_anchored_fast_paths_complete_every_tree_across_workers(grouping: Grouping) -> None:
    class T(Topology):
        config = {"topology.acker.executors": 2, "test.per_spout": 300, "topology.workers": 2}
        numbers = Numbers.spec(par=2)
        fan = Fan.spec(inputs=[numbers], par=2)
        # One subscriber per stream, so emits take the keyed / cycled closures.
        join = Join.spec(inputs={fan: grouping}, par=2)
        leaf = Leaf.spec(inputs={join: grouping}, par=2)
        last = Leaf.spec(inputs={leaf: grouping}, par=2)

    spec = T.build()
    transport = Memory()
    workers = [Worker(spec, spec.assign(2), i, transport) for i in range(2)]
    for w in workers:
        w.setup()
        w.set_active(True)
    spouts = [e.instance for w in workers for e in w.spouts if e.component == "numbers"]

    def settled() -> bool:
        return sum(len(s.acked) + len(s.failed) for s in spouts) == 600

    for _ in range(2000):
        if settled():
            break
        for w in workers:
            frames, transport.frames[w.index] = transport.frames[w.index], []
            if frames:
                w.receive(frames)
            w.step(0)
            w.flush_all()
    # A join task that got an odd number of inputs holds its last one: that
    # one tree stays pending; every other tree completes, once.
    held = sum(e.instance.held is not None for w in workers for e in w.bolts if e.component == "join")
    acked = [m for s in spouts for m in s.acked]
    assert not [m for s in spouts for m in s.failed]
    assert len(acked) == len(set(acked))
    assert len(acked) >= 600 - held
    assert len(acked) + sum(len(e.pending) for w in workers for e in w.spouts) == 600


# -- ordered streams: a barrier keeps its place among data to another worker --

class Ticker(Spout):
    outputs = ["n"]

    def open(self, conf: dict[str, Any], context: Any) -> None:
        self.n = 0

    def next_tuple(self) -> None:
        if self.n < 500:
            self.n += 1
            self.emit([self.n])


class Marker(Bolt):
    """Data on the default stream; after every 7th input, a marker on the
    ordered stream (declared first, so unordered it would be packed first)."""

    outputs = [Stream(["mark"], name="marks", ordered=True), Stream(["n"])]

    def execute(self, tup: Tuple) -> None:
        n = tup.values[0]
        self.emit([n])
        if n % 7 == 0:
            self.emit([n], stream="marks")


class Recorder(Bolt):
    def prepare(self, conf: dict[str, Any], context: Any) -> None:
        self.seen: list[tuple[str, int]] = []

    def execute(self, tup: Tuple) -> None:
        self.seen.append((tup.stream, tup.values[0]))


@pytest.mark.timeout(30)
def test_ordered_stream_keeps_its_place_among_data_to_another_worker() -> None:
    class T(Topology):
        config = {"topology.acker.executors": 0, "topology.workers": 2}
        ticks = Ticker.spec()
        marker = Marker.spec(inputs=[ticks])
        rec = Recorder.spec(inputs=[marker, marker["marks"]])

    spec = T.build()
    # marker in worker 0, recorder in worker 1: everything crosses in batches.
    assignment = {t: (1 if spec.task_component[t] == "rec" else 0) for t in spec.task_component}
    transport = Memory()
    workers = [Worker(spec, assignment, i, transport) for i in range(2)]
    for w in workers:
        w.setup()
        w.set_active(True)
    rec = next(e.instance for e in workers[1].bolts if e.component == "rec")
    for _ in range(500):
        if len(rec.seen) >= 500 + 500 // 7:
            break
        for w in workers:
            frames, transport.frames[w.index] = transport.frames[w.index], []
            if frames:
                w.receive(frames)
            w.step(0)
            w.flush_all()
    assert len(rec.seen) == 500 + 500 // 7
    for i, (stream, n) in enumerate(rec.seen):
        if stream == "marks":  # right after the data tuple it follows
            assert rec.seen[i - 1] == ("default", n), rec.seen[max(0, i - 3):i + 2]
