"""Topology for the backpressure test: a spout emitting ~100-byte payloads as fast
as it can, in worker 0, feeding a bolt that sleeps per tuple, in worker 1.

Task ids follow component names (a_flood = 1, b_slow = 2) and tasks are assigned
round-robin, so the spout is alone in worker 0 and the bolt alone in worker 1;
acking is off so there are no acker tasks to shift the layout."""

from __future__ import annotations

import time
from typing import Any

from topos_common import FLUSH_TICKS, Recording

from storm import Bolt, Spout, Topology, TopologyContext, Tuple

PAD = "x" * 80


def payload(seq: int) -> str:
    """100 characters that carry their sequence number (to detect corruption)."""
    return f"{seq:020d}{PAD}"


class FloodSpout(Spout):
    outputs = ["seq", "payload"]

    def open(self, conf: dict[str, Any], context: TopologyContext) -> None:
        self.seq = 0

    def next_tuple(self) -> None:
        seq = self.seq
        self.emit([seq, payload(seq)])
        self.seq = seq + 1


class SlowBolt(Recording, Bolt):
    """Sleeps `itest.delay` seconds (default 0.001) per tuple and checks that the
    sequence of each source task arrives gap-free and in order."""

    def prepare(self, conf: dict[str, Any], context: TopologyContext) -> None:
        self.delay = float(conf.get("itest.delay") or 0.001)
        self.expected: dict[int, int] = {}
        self.start_recording(conf, context, received=0, missing=0, out_of_order=0, corrupt=0,
                             first_problem=None, last={})

    def execute(self, tup: Tuple) -> None:
        time.sleep(self.delay)
        seq, text = tup.values
        src = tup.source_task
        rec = self.record
        want = self.expected.get(src, 0)
        if seq != want:
            if seq > want:
                rec["missing"] += seq - want
            else:
                rec["out_of_order"] += 1
            if rec["first_problem"] is None:
                rec["first_problem"] = {"source": src, "expected": want, "got": seq}
        if seq >= want:
            self.expected[src] = seq + 1
        if text != payload(seq):
            rec["corrupt"] += 1
        rec["received"] += 1
        rec["last"][str(src)] = seq
        self.changed()

    def process_tick(self, tup: Tuple) -> None:
        self.flush_record()

    def cleanup(self) -> None:
        self.write_record(final=True)


class Flood(Topology):
    config = {"topology.workers": 2, "topology.acker.executors": 0}
    a_flood = FloodSpout.spec()
    b_slow = SlowBolt.spec(inputs=[a_flood], config=FLUSH_TICKS)


class RelayBolt(Bolt):
    """Passes every tuple on unchanged."""

    outputs = ["seq", "payload"]

    def execute(self, tup: Tuple) -> None:
        self.emit(tup.values)


class RelayedFlood(Topology):
    # a_flood: task 1 (w0); b_relay: task 2 (w1); c_slow: task 3 (w2)
    config = {"topology.workers": 3, "topology.acker.executors": 0}
    a_flood = FloodSpout.spec()
    b_relay = RelayBolt.spec(inputs=[a_flood])
    c_slow = SlowBolt.spec(inputs=[b_relay], config=FLUSH_TICKS)
