"""Topologies of the rolling-upgrade test, one layout in three code versions
(each submitted or upgraded under the name given with topology.name):
numbers (reliable NumberSpout) -> count (stateful, par 2, counts n % 10 per key,
emits [n, key, tag]) -> record (writes "tag n" lines to record-<task>-<pid>.log
in itest.dir). CountingV2 tags its output "v2" instead of "v1"; CountingBroken's
count raises in prepare."""

from __future__ import annotations

import os
from typing import Any

from daemon_topos_parts import RECORD_DIR, NumberSpout

from storm import Bolt, Grouping, Topology, TopologyContext, Tuple
from storm.stateful import CheckpointSpout, StatefulBolt


class Count(StatefulBolt):
    outputs = ["n", "key", "tag"]
    tag = "v1"

    def execute(self, tup: Tuple) -> None:
        n = tup.values[0]
        key = f"k{n % 10}"
        self.state[key] = self.state.get(key, 0) + 1
        self.emit([n, key, self.tag], anchors=[tup])
        self.ack(tup)


class CountV2(Count):
    tag = "v2"

    def execute(self, tup: Tuple) -> None:
        n = tup.values[0]
        key = f"k{n % 10}"
        self.state[key] = self.state.get(key, 0) + 1
        self.emit([n, key, self.tag], anchors=[tup])
        self.ack(tup)


class CountBroken(Count):
    def prepare(self, conf: dict[str, Any], context: TopologyContext) -> None:
        raise RuntimeError("this count refuses to prepare (upgrade test)")


class Record(Bolt):
    def prepare(self, conf: dict[str, Any], context: TopologyContext) -> None:
        path = os.path.join(conf[RECORD_DIR], f"record-{context.task_id}-{os.getpid()}.log")
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def execute(self, tup: Tuple) -> None:
        os.write(self.fd, f"{tup.values[2]} {tup.values[0]}\n".encode())
        self.ack(tup)

    def cleanup(self) -> None:
        os.close(self.fd)


CONFIG = {
    "topology.workers": 2,
    "topology.message.timeout.secs": 5.0,
    "topology.max.spout.pending": 100,
    "topology.state.checkpoint.interval.ms": 200.0,
    "topology.state.checkpoint.timeout.secs": 2.0,
}


class CountingV1(Topology):
    config = CONFIG
    checkpoint = CheckpointSpout.spec()
    numbers = NumberSpout.spec()
    count = Count.spec(inputs={numbers: Grouping.fields("n")}, par=2, checkpoints=checkpoint)
    record = Record.spec(inputs=[count])


class CountingV2(Topology):
    config = CONFIG
    checkpoint = CheckpointSpout.spec()
    numbers = NumberSpout.spec()
    count = CountV2.spec(inputs={numbers: Grouping.fields("n")}, par=2, checkpoints=checkpoint)
    record = Record.spec(inputs=[count])


class CountingBroken(Topology):
    config = CONFIG
    checkpoint = CheckpointSpout.spec()
    numbers = NumberSpout.spec()
    count = CountBroken.spec(inputs={numbers: Grouping.fields("n")}, par=2, checkpoints=checkpoint)
    record = Record.spec(inputs=[count])


class CountingRenamed(Topology):
    """A layout change a live upgrade refuses: `record` renamed, a field added."""

    config = CONFIG
    checkpoint = CheckpointSpout.spec()
    numbers = NumberSpout.spec()
    count = Count.spec(inputs={numbers: Grouping.SHUFFLE}, par=2, checkpoints=checkpoint)
    sink = Record.spec(inputs=[count])


# -- the forced checkpoint: a checkpoint interval so long that only the checkpoint
# `storm upgrade` asks for before it stops a worker saves the state (no periodic
# checkpoint comes in the test's lifetime, so no input is acked without it).
SLOW = {
    "topology.workers": 2,
    "topology.state.checkpoint.interval.ms": 600_000.0,
    "topology.message.timeout.secs": 1300.0,
    "topology.state.checkpoint.timeout.secs": 3.0,
    "topology.max.spout.pending": 5000,
}


class CountNeverCommits(Count):
    """Every prepare fails: the topology can never commit a checkpoint."""

    def pre_commit(self, txid: int) -> None:
        raise RuntimeError("this count cannot save its state (upgrade test)")


class SlowV1(Topology):
    config = SLOW
    checkpoint = CheckpointSpout.spec()
    numbers = NumberSpout.spec()
    count = Count.spec(inputs={numbers: Grouping.fields("n")}, par=2, checkpoints=checkpoint)
    record = Record.spec(inputs=[count])


class SlowV2(Topology):
    config = SLOW
    checkpoint = CheckpointSpout.spec()
    numbers = NumberSpout.spec()
    count = CountV2.spec(inputs={numbers: Grouping.fields("n")}, par=2, checkpoints=checkpoint)
    record = Record.spec(inputs=[count])


class SlowStuck(Topology):
    config = SLOW
    checkpoint = CheckpointSpout.spec()
    numbers = NumberSpout.spec()
    count = CountNeverCommits.spec(inputs={numbers: Grouping.fields("n")}, par=2, checkpoints=checkpoint)
    record = Record.spec(inputs=[count])


class Relaid(Topology):
    """SlowV1's layout changed (`storm upgrade --rebalance`): `audit` is new and
    sorts first, so every other component's task ids move up by one; `record`
    is renamed `sink`. `count` keeps its name, so its state; checkpoints come
    every 200 ms again."""

    config = {**SLOW, "topology.state.checkpoint.interval.ms": 200.0}
    checkpoint = CheckpointSpout.spec()
    numbers = NumberSpout.spec()
    count = CountV2.spec(inputs={numbers: Grouping.fields("n")}, par=2, checkpoints=checkpoint)
    sink = Record.spec(inputs=[count])
    audit = Record.spec(inputs=[count])
