"""Backpressure, throttling and the real message timeout, at unit level: two
Workers of one process joined by the in-memory transport (its `limit` is the
high-water mark a ZeroMQ socket has), driven pass by pass as bench/inproc.py
does. What is checked are counts and the configured timeout, never the
runtime's own timer periods, so a runtime that stops holding spouts back or
waits 10x too long fails here."""

from __future__ import annotations

import time
from typing import Any

import pytest

from storm import Bolt, Spout, Topology
from storm._runtime import MemoryTransport, SpoutExecutor, Worker
from storm._target import build_target

pytestmark = pytest.mark.timeout(30)

BATCH = 10
LIMIT = 2


class Counter(Spout):
    """Emits 0, 1, 2, ... as fast as it is asked; with `reliable`, each with its
    number as msg id, recording which ids failed."""

    outputs = ["n"]

    def open(self, conf: Any, context: Any) -> None:
        self.n = 0
        self.reliable = bool(conf.get("test.reliable"))
        self.failed: list[int] = []
        self.acked: list[int] = []

    def next_tuple(self) -> None:
        if self.reliable:
            if self.n >= 3:
                return
            self.emit([self.n], msg_id=self.n)
        else:
            self.emit([self.n])
        self.n += 1

    def ack(self, msg_id: Any) -> None:
        self.acked.append(msg_id)

    def fail(self, msg_id: Any) -> None:
        self.failed.append(msg_id)


class Hold(Bolt):
    """Never acks: its trees can only end by the message timeout."""

    def execute(self, tup: Any) -> None:
        pass


class Pipe(Topology):
    source = Counter.spec()
    sink = Hold.spec(inputs=[source])


def workers(conf: dict[str, Any], limit: int | None) -> tuple[list[Worker], MemoryTransport, Any]:
    """The spout (and ackers) on worker 0, the sink on worker 1."""
    spec = build_target(Pipe, {"topology.workers": 2, "topology.transfer.batch.size": BATCH, **conf})
    sink = set(spec.components["sink"].tasks)
    assignment = {t: 1 if t in sink else 0 for t in spec.task_component}
    transport = MemoryTransport(2, limit=limit)
    ws = [Worker(spec, assignment, i, transport) for i in range(2)]
    for w in ws:
        w.setup()
        w.set_active(True)
    [spout] = [ex for ex in ws[0].spouts if ex.component == "source"]
    return ws, transport, spout


def emitted(spout: SpoutExecutor) -> int:
    return int(spout.instance.n)


def passes(w: Worker, n: int) -> None:
    for _ in range(n):
        w.retry_blocked()
        w.step(0)
        w.flush_all()


def test_a_full_outgoing_queue_holds_the_spouts_back_until_it_drains() -> None:
    (w0, w1), transport, spout = workers({"topology.acker.executors": 0}, limit=LIMIT)
    passes(w0, 200)  # worker 1 takes nothing: its queue reaches the high-water mark
    assert len(transport.frames[1]) == LIMIT
    held = emitted(spout)
    # What was sent, what waits in the blocked queue, one spout batch: no more.
    bound = (LIMIT + 2) * BATCH + int(w0.spout_calls)
    assert held <= bound, f"the spout emitted {held} tuples into a full queue (at most {bound} expected)"
    passes(w0, 50)
    assert emitted(spout) == held, "the spout went on emitting while the queue stayed full"
    # Worker 1 takes its frames: the queue drains and the spout goes on.
    for _ in range(20):
        w1.receive(transport.take(1))
        w1.step(0)
        passes(w0, 1)
        if emitted(spout) > held:
            break
    assert emitted(spout) > held, "the spout did not resume once the queue drained"
    assert sum(ex.stats.executed for ex in w1.bolts) >= held - LIMIT * BATCH  # all but what is in flight


def test_a_peers_throttle_request_stops_every_spout_until_it_is_lifted() -> None:
    (w0, w1), transport, spout = workers({"topology.acker.executors": 0,
                                          "topology.executor.receive.buffer.size": 64}, limit=None)
    passes(w0, 3)
    w1.receive(transport.take(1))  # worker 1 does not run its bolt: its inbox is over capacity
    assert w1.overloaded()
    # What the worker process loop does with its peers' backpressure signal.
    w0.set_throttle(1, w1.overloaded())
    before = emitted(spout)
    passes(w0, 20)
    assert emitted(spout) == before, "a throttled worker's spout went on emitting"
    while w1.overloaded():
        w1.step(0)
    w0.set_throttle(1, w1.overloaded())
    passes(w0, 2)
    assert emitted(spout) > before


@pytest.mark.parametrize("timeout", [2.0, 30.0])
def test_a_tree_fails_between_one_and_one_and_a_half_timeouts_after_its_emit(timeout: float) -> None:
    """topology.message.timeout.secs as configured: not failed just before it,
    failed by 1.5x (Storm's rotating buckets), on a clock the test moves."""
    (w0, w1), transport, spout = workers({"test.reliable": True, "topology.acker.executors": 1,
                                          "topology.message.timeout.secs": timeout}, limit=None)
    start = time.monotonic()  # the executors' timers run on this clock; the test moves it
    passes(w0, 3)
    w1.receive(transport.take(1))
    w1.step(0)
    assert spout.instance.n == 3 and len(spout.pending) == 3
    inst = spout.instance
    t = 0.0
    step = timeout / 50
    while t < timeout * 0.98:
        t += step
        for w in (w0, w1):
            w.timers(start + t)
        passes(w0, 1)
    assert inst.failed == [], f"trees failed {t:.2f} s after their emit, before the {timeout} s timeout"
    while t < timeout * 1.5 + step and not inst.failed:
        t += step
        for w in (w0, w1):
            w.timers(start + t)
        passes(w0, 1)
    assert sorted(inst.failed) == [0, 1, 2], (
        f"trees not failed {t:.2f} s after their emit with a {timeout} s timeout")
    assert inst.acked == []
