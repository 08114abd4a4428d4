"""Topology of the checkpoint integration test: a finite reliable spout of keys
-> `count` (stateful, par 2) -> `relay` (a plain bolt, wrapped at build time to
forward barriers) -> `total` (stateful, par 2, sums what `count` emitted). With 3
workers the tasks land as: worker 0: checkpoint, numbers, total[1]; worker 1:
count[0], relay; worker 2: count[1], total[0]. Killing worker 2 kills one task of
each stateful stage and leaves both spouts running."""

from __future__ import annotations

import os
from typing import Any

from storm import Bolt, Grouping, Topology, Tuple
from storm.spouts import ListSpout
from storm.stateful import CheckpointSpout, StatefulBolt

N = 2000
KEYS = [f"k{i % 10}" for i in range(N)]


class Numbers(ListSpout):
    outputs = ["key"]
    items = [[k] for k in KEYS]


class Count(StatefulBolt):
    outputs = ["key", "one"]

    def execute(self, tup: Tuple) -> None:
        self.state[tup[0]] = self.state.get(tup[0], 0) + 1
        self.emit([tup[0], 1], anchors=[tup])
        self.ack(tup)


class Relay(Bolt):
    outputs = ["key", "one"]

    def execute(self, tup: Tuple) -> None:
        self.emit(list(tup.values), anchors=[tup])
        self.ack(tup)


class Total(StatefulBolt):
    """Sums what `count` emitted. If the file named by ``itest.fail.prepare`` exists
    when a prepare comes, the first task to see it deletes it and refuses the
    prepare (the checkpoint is rolled back)."""

    outputs: Any = []

    def prepare(self, conf: dict[str, Any], context: Any) -> None:
        super().prepare(conf, context)
        self.fail_flag = conf.get("itest.fail.prepare")

    def execute(self, tup: Tuple) -> None:
        self.state[tup[0]] = self.state.get(tup[0], 0) + tup[1]
        self.ack(tup)

    def pre_commit(self, txid: int) -> None:
        if self.fail_flag and self.state:
            try:
                os.unlink(self.fail_flag)
            except FileNotFoundError:
                return
            raise RuntimeError(f"prepare of txid {txid} refused (test)")


class TwoStage(Topology):
    config = {
        "topology.workers": 3,
        "topology.message.timeout.secs": 8.0,
        "topology.max.spout.pending": 100,
        "topology.state.checkpoint.interval.ms": 150.0,
        "topology.state.checkpoint.timeout.secs": 2.0,
    }
    checkpoint = CheckpointSpout.spec()
    numbers = Numbers.spec()
    count = Count.spec(inputs={numbers: Grouping.fields("key")}, par=2, checkpoints=checkpoint)
    relay = Relay.spec(inputs=[count])
    total = Total.spec(inputs={relay: Grouping.fields("key")}, par=2, checkpoints=checkpoint)
