"""Topologies the benchmarks run (module level, so worker processes can import them)."""

from __future__ import annotations

import random
import time
from typing import Any

from storm import Bolt, Spout, TopologyBuilder

WORDS = ["the", "cow", "jumped", "over", "the", "moon", "an", "apple", "a", "day", "keeps", "the", "doctor", "away", "four", "score", "and", "seven", "years", "ago", "snow", "white", "and", "the", "seven", "dwarfs", "i", "am", "at", "two", "with", "nature"]
# A vocabulary of 1,000 distinct words, so fields grouping spreads evenly over tasks.
VOCABULARY = [f"{w}{i}" for i in range(40) for w in dict.fromkeys(WORDS)][:1000]


class SentenceSpout(Spout):
    outputs = ["sentence"]

    def open(self, conf: dict[str, Any], context: Any) -> None:
        rng = random.Random(context.task_id)
        # A fixed pool of 1,000 ten-word sentences, cycled: no RNG on the hot path.
        self.pool = [" ".join(rng.choice(VOCABULARY) for _ in range(10)) for _ in range(1000)]
        self.i = 0
        self.seq = 0
        # Optional pacing: sentences per second for this task (the latency bench).
        self.rate = float(conf.get("bench.rate") or 0)
        self.started = time.monotonic()
        if conf.get("bench.acking"):
            self.next_tuple = self.next_reliable  # type: ignore[method-assign]

    def next_tuple(self) -> None:
        i = self.i
        self.i = i + 1 if i < 999 else 0
        self.emit([self.pool[i]])

    def next_reliable(self) -> None:
        if self.rate and self.seq >= (time.monotonic() - self.started) * self.rate:
            return
        i = self.i
        self.i = i + 1 if i < 999 else 0
        self.seq += 1
        self.emit([self.pool[i]], msg_id=self.seq)


class SplitBolt(Bolt):
    outputs = ["word"]

    def execute(self, tup: Any) -> None:
        emit = self.emit
        for word in tup.values[0].split():
            emit([word])


class ReliableSplitBolt(Bolt):
    """Split that anchors each word to its sentence and acks the sentence."""

    outputs = ["word"]

    def execute(self, tup: Any) -> None:
        emit = self.emit
        anchors = (tup,)
        for word in tup.values[0].split():
            emit([word], anchors=anchors)
        self.ack(tup)


class CountBolt(Bolt):
    def prepare(self, conf: dict[str, Any], context: Any) -> None:
        self.counts: dict[str, int] = {}

    def execute(self, tup: Any) -> None:
        w = tup.values[0]
        counts = self.counts
        counts[w] = counts.get(w, 0) + 1


class ReliableCountBolt(CountBolt):
    def execute(self, tup: Any) -> None:
        w = tup.values[0]
        counts = self.counts
        counts[w] = counts.get(w, 0) + 1
        self.ack(tup)


def BenchWordCount(conf: dict[str, Any]) -> TopologyBuilder:  # noqa: N802 - named like a topology
    """spout -> split -> count, each with one task per worker (`bench.par`)."""
    par = int(conf.get("bench.par") or 1)
    acking = bool(conf.get("bench.acking"))
    b = TopologyBuilder("bench-wordcount", {"topology.acker.executors": par if acking else 0})
    b.set_spout("sentences", SentenceSpout, par=par)
    split = ReliableSplitBolt if acking else SplitBolt
    count = ReliableCountBolt if acking else CountBolt
    b.set_bolt("split", split, par=par).local_or_shuffle_grouping("sentences")
    b.set_bolt("count", count, par=par).fields_grouping("split", "word")
    return b
