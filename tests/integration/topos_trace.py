"""Topologies for the tracing and process-latency tests: sentences with
message ids → split (anchored) → count, where count fails the word "boom"
(a failing branch), and a bolt that sleeps 20 ms before it acks."""

from __future__ import annotations

import time
from typing import Any

from storm import Bolt, Grouping, Spout, Topology, Tuple

SENTENCES = ["the cow jumped", "over the moon", "a boom here"]


class Sentences(Spout):
    outputs = ["sentence"]

    def open(self, conf: dict[str, Any], context: Any) -> None:
        self.total = int(conf.get("itest.count", 300))
        self.n = 0

    def next_tuple(self) -> None:
        if self.n < self.total:
            self.emit([SENTENCES[self.n % len(SENTENCES)]], msg_id=self.n)
            self.n += 1


class Split(Bolt):
    outputs = ["word"]

    def execute(self, tup: Tuple) -> None:
        for w in tup.values[0].split():
            self.emit([w], anchors=[tup])
        self.ack(tup)


class Count(Bolt):
    def prepare(self, conf: dict[str, Any], context: Any) -> None:
        self.counts: dict[str, int] = {}

    def execute(self, tup: Tuple) -> None:
        word = tup.values[0]
        if word == "boom":
            self.fail(tup)
            return
        self.counts[word] = self.counts.get(word, 0) + 1
        self.ack(tup)


class SleepThenAck(Bolt):
    def execute(self, tup: Tuple) -> None:
        time.sleep(0.02)
        self.ack(tup)


class Traced(Topology):
    config = {"topology.workers": 2, "topology.debug.sample": 1.0, "topology.debug.sample.max.per.sec": 0}
    sentences = Sentences.spec()
    split = Split.spec(inputs=[sentences], par=2)
    count = Count.spec(inputs={split: Grouping.fields("word")}, par=2)


class Untraced(Topology):
    config = {"topology.workers": 2}
    sentences = Sentences.spec()
    split = Split.spec(inputs=[sentences], par=2)
    count = Count.spec(inputs={split: Grouping.fields("word")}, par=2)


class TracedNoAcking(Topology):
    config = {"topology.workers": 1, "topology.debug.sample": 0.5, "topology.acker.executors": 0}
    sentences = Sentences.spec()
    split = Split.spec(inputs=[sentences])


class SlowAck(Topology):
    config = {"topology.workers": 1, "topology.stats.sample.rate": 1.0}
    sentences = Sentences.spec()
    slow = SleepThenAck.spec(inputs=[sentences])
