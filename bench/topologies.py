"""Topologies the benchmarks run (module level, so worker processes can import them)."""

from __future__ import annotations

import random
from typing import Any

from storm import Bolt, Spout, TopologyBuilder

WORDS = ("the cow jumped over the moon an apple a day keeps the doctor away four score and "
         "seven years ago snow white and the seven dwarfs i am at two with nature").split()
# A vocabulary of 1,000 distinct words, so fields grouping spreads evenly over tasks.
VOCABULARY = [f"{w}{i}" for i in range(40) for w in dict.fromkeys(WORDS)][:1000]


class SentenceSpout(Spout):
    outputs = ["sentence"]

    def open(self, conf: dict[str, Any], context: Any) -> None:
        rng = random.Random(context.task_id)
        # A fixed pool of 1,000 ten-word sentences, cycled: no RNG on the hot path.
        self.pool = [" ".join(rng.choice(VOCABULARY) for _ in range(10)) for _ in range(1000)]
        self.i = 0

    def next_tuple(self) -> None:
        i = self.i
        self.i = i + 1 if i < 999 else 0
        self.emit([self.pool[i]])


class SplitBolt(Bolt):
    outputs = ["word"]

    def execute(self, tup: Any) -> None:
        emit = self.emit
        for word in tup.values[0].split():
            emit([word])


class CountBolt(Bolt):
    def prepare(self, conf: dict[str, Any], context: Any) -> None:
        self.counts: dict[str, int] = {}

    def execute(self, tup: Any) -> None:
        w = tup.values[0]
        counts = self.counts
        counts[w] = counts.get(w, 0) + 1


def BenchWordCount(conf: dict[str, Any]) -> TopologyBuilder:  # noqa: N802 - named like a topology
    """spout -> split -> count, each with one task per worker (`bench.par`)."""
    par = int(conf.get("bench.par") or 1)
    b = TopologyBuilder("bench-wordcount", {"topology.acker.executors": 0})
    b.set_spout("sentences", SentenceSpout, par=par)
    b.set_bolt("split", SplitBolt, par=par).local_or_shuffle_grouping("sentences")
    b.set_bolt("count", CountBolt, par=par).fields_grouping("split", "word")
    return b
