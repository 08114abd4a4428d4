"""Topology for the at-least-once tests: a ListSpout of numbers (storm.spouts)
-> a flaky middle bolt that fails or raises on a share of its tuples -> a sink.

What a test needs to check the guarantee is written to files in `itest.dir`,
append-only with one os.write per event, so a worker killed with SIGKILL loses
nothing it already acknowledged:
  acks-<task>-<pid>.log         every msg id the spout got ack() for, one a line
  dead-<task>-<pid>.log         every msg id the spout gave up on (dead letter)
  sink-<task>-<pid>.log         every number the sink received, one a line
  a_source-<task>.json          the spout's summary (storm.spouts, spouts.summary.dir)
  b_flaky-<task>.json           the flaky bolt's counts (executed, failed, raised)

Layout with 2 workers (task ids follow component names, ackers last, tasks
round-robin over workers): a_source: 1 (w0); b_flaky: 2 (w1), 3 (w0);
c_sink: 4 (w1), 5 (w0); __acker: 6 (w1), 7 (w0). The spout is in worker 0, so
killing worker 1 takes a flaky task, a sink task and an acker, never the
spout's memory of what is pending."""

from __future__ import annotations

import os
import random
import time
from collections import Counter
from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import Any

from topos_common import FLUSH_TICKS, RECORD_DIR, Recording

from storm import Bolt, Topology, TopologyContext, Tuple
from storm.spouts import ListSpout

COUNT = "itest.count"  # numbers the spout emits: 0 .. count-1 (msg id = the number)
FAIL_RATE = "itest.fail.rate"  # share of tuples the flaky bolt fails (half by fail(), half by raising)
DELAY = "itest.delay"  # seconds the flaky bolt sleeps per tuple
RATE = "itest.rate"  # new messages per second at most (0: as fast as allowed)
HOLD = "itest.sink.hold"  # true: the sink acks what it received on its next tick (every 0.5 s)


def _append_log(conf: dict[str, Any], name: str, task: int) -> int:
    path = os.path.join(conf[RECORD_DIR], f"{name}-{task}-{os.getpid()}.log")
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)


def read_numbers(directory: str | os.PathLike[str], name: str) -> Counter[int]:
    """How often each number appears in the `name`-*.log files (every task and
    incarnation); a last line still being written is ignored."""
    counts: Counter[int] = Counter()
    for p in Path(directory).glob(f"{name}-*.log"):
        lines = p.read_bytes().split(b"\n")
        counts.update(int(x) for x in lines[:-1])
    return counts


class NumberSource(ListSpout):
    """Numbers 0 .. itest.count-1 as [n], msg id n; logs every ack and dead letter."""

    outputs = ["n"]

    def load_items(self, conf: dict[str, Any], context: TopologyContext) -> Sequence[Sequence[Any]]:
        return [[n] for n in range(int(conf[COUNT]))]

    def open(self, conf: dict[str, Any], context: TopologyContext) -> None:
        super().open(conf, context)
        self.rate = float(conf.get(RATE) or 0)
        self.started: float | None = None
        self.ack_fd = _append_log(conf, "acks", context.task_id)
        self.dead_fd = _append_log(conf, "dead", context.task_id)

    def next_message(self) -> tuple[Hashable, Sequence[Any]] | None:
        if self.rate:
            now = time.monotonic()
            if self.started is None:
                self.started = now
            if self.emitted >= (now - self.started) * self.rate:
                return None
        return super().next_message()

    def ack(self, msg_id: Any) -> None:
        # Every ack the runtime delivers, before the base class looks at it.
        os.write(self.ack_fd, b"%d\n" % msg_id)
        super().ack(msg_id)

    def on_dead_letter(self, msg_id: Hashable, values: list[Any], attempts: int) -> None:
        os.write(self.dead_fd, b"%d\n" % values[0])
        super().on_dead_letter(msg_id, values, attempts)

    def close(self) -> None:
        super().close()
        os.close(self.ack_fd)
        os.close(self.dead_fd)


class FlakyBolt(Recording, Bolt):
    """Passes [n] on, anchored, and acks; but on a random itest.fail.rate share
    of tuples it fails the input (after emitting, half of those) or raises.
    The draw is per attempt from a per-task seeded generator, so a replay of a
    failed message usually succeeds."""

    outputs = ["n"]

    def prepare(self, conf: dict[str, Any], context: TopologyContext) -> None:
        self.rng = random.Random(context.task_id * 7919 + 1)
        self.fail_rate = float(conf.get(FAIL_RATE) or 0)
        self.delay = float(conf.get(DELAY) or 0)
        self.start_recording(conf, context, executed=0, failed=0, failed_after_emit=0, raised=0)

    def execute(self, tup: Tuple) -> None:
        if self.delay:
            time.sleep(self.delay)  # simulated work
        rec = self.record
        rec["executed"] += 1
        r = self.rng.random()
        if r < self.fail_rate / 2:
            rec["failed"] += 1
            if r < self.fail_rate / 4:
                # The sink may see this one: a tree fails even after part of it succeeded.
                rec["failed_after_emit"] += 1
                self.emit([tup.values[0]], anchors=[tup])
            self.fail(tup)
            self.changed()
        elif r < self.fail_rate:
            rec["raised"] += 1
            self.changed()
            raise RuntimeError(f"injected failure at {tup.values[0]}")
        else:
            self.emit([tup.values[0]], anchors=[tup])
            self.ack(tup)
            self.changed()

    def process_tick(self, tup: Tuple) -> None:
        self.flush_record()

    def cleanup(self) -> None:
        self.write_record(final=True)


class SinkBolt(Bolt):
    """Logs every number it receives, then acks it; with itest.sink.hold, acks
    on its next tick instead, as a sink that commits in batches does (so a
    killed sink task always takes pending tuple trees with it)."""

    def prepare(self, conf: dict[str, Any], context: TopologyContext) -> None:
        self.fd = _append_log(conf, "sink", context.task_id)
        self.hold = bool(conf.get(HOLD))
        self.held: list[Tuple] = []

    def execute(self, tup: Tuple) -> None:
        os.write(self.fd, b"%d\n" % tup.values[0])
        if self.hold:
            self.held.append(tup)
        else:
            self.ack(tup)

    def process_tick(self, tup: Tuple) -> None:
        for held in self.held:
            self.ack(held)
        self.held.clear()

    def cleanup(self) -> None:
        os.close(self.fd)


class Reliability(Topology):
    config = {
        "topology.workers": 2,
        "topology.acker.executors": 2,
        "topology.message.timeout.secs": 5.0,
        "topology.max.spout.pending": 500,
    }
    a_source = NumberSource.spec()
    b_flaky = FlakyBolt.spec(inputs=[a_source], par=2, config=FLUSH_TICKS)
    c_sink = SinkBolt.spec(inputs=[b_flaky], par=2, config=FLUSH_TICKS)


class ThreeWorkers(Topology):
    """The same chain on 3 workers, one task each: a_source 1 (w0), b_flaky 2
    (w1), c_sink 3 (w2), __acker 4, 5, 6 (w0, w1, w2). In worker 2 the acker task
    comes before c_sink in the run loop's (topological) order."""

    config = {
        "topology.workers": 3,
        "topology.message.timeout.secs": 3.0,
        "topology.max.spout.pending": 500,
    }
    a_source = NumberSource.spec()
    b_flaky = FlakyBolt.spec(inputs=[a_source], config=FLUSH_TICKS)
    c_sink = SinkBolt.spec(inputs=[b_flaky], config=FLUSH_TICKS)
