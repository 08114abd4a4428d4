"""Topologies the benchmarks run (module level, so worker processes can import them)."""

from __future__ import annotations

import json
import random
import time
from typing import Any

from storm import BasicBolt, Bolt, Spout, TopologyBuilder

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
    split: type[Bolt] = ReliableSplitBolt if acking else SplitBolt
    count: type[Bolt] = ReliableCountBolt if acking else CountBolt
    if acking and conf.get("bench.basic"):
        split, count = BasicSplitBolt, BasicCountBolt
    b.set_bolt("split", split, par=par).local_or_shuffle_grouping("sentences")
    b.set_bolt("count", count, par=par).fields_grouping("split", "word")
    return b


# -- a finite word count, counted exactly (bench/vs_bytewax.py) ---------------

class FiniteSentenceSpout(Spout):
    """Emits its share of the lines of `bench.sentences` once, then nothing; at
    close, writes when it emitted its first sentence to `bench.out`."""

    outputs = ["sentence"]

    def open(self, conf: dict[str, Any], context: Any) -> None:
        tasks = context.get_component_tasks(context.component_id)
        with open(conf["bench.sentences"], encoding="utf-8") as f:
            self.sentences = f.read().splitlines()[tasks.index(context.task_id)::len(tasks)]
        self.i = 0
        self.first = 0.0
        self.acked = self.failed = 0
        self.out = f"{conf['bench.out']}/spout-{context.task_id}.json"

    def next_tuple(self) -> None:
        i = self.i
        if i < len(self.sentences):
            if not i:
                self.first = time.monotonic()
            self.i = i + 1
            self.emit([self.sentences[i]])

    def close(self) -> None:
        record = {"first": self.first, "emitted": self.i, "acked": self.acked, "failed": self.failed,
                  **getattr(self, "extra", {})}
        with open(self.out, "w", encoding="utf-8") as f:
            json.dump(record, f)


class ReliableFiniteSentenceSpout(FiniteSentenceSpout):
    """The same with message ids (acking on), paced at `bench.rate` sentences/s
    per task when set (the latency run); failed sentences are not replayed.

    Paced, it also measures every sentence's complete latency itself (emit to
    ack, time.monotonic) and writes them to its record at close: the whole
    run's, where the runtime's percentiles cover the last few thousand trees."""

    def open(self, conf: dict[str, Any], context: Any) -> None:
        super().open(conf, context)
        self.rate = float(conf.get("bench.rate") or 0)
        self.sent_at: list[float] = []
        self.latencies: list[float] = []

    def next_tuple(self) -> None:
        i = self.i
        if i < len(self.sentences):
            if not i:
                self.first = time.monotonic()
            elif self.rate and i >= (time.monotonic() - self.first) * self.rate:
                return
            self.i = i + 1
            if self.rate:
                self.sent_at.append(time.monotonic())
            self.emit([self.sentences[i]], msg_id=i)

    def ack(self, msg_id: Any) -> None:
        self.acked += 1
        if self.rate:
            self.latencies.append(time.monotonic() - self.sent_at[msg_id])

    def close(self) -> None:
        self.extra = {"latencies_ms": [round(x * 1000, 3) for x in self.latencies]} if self.rate else {}
        super().close()

    def fail(self, msg_id: Any) -> None:
        self.failed += 1


class _CountsAtClose:
    """Writes a count bolt's counts to `bench.out` at cleanup, with the time of
    the first tick at which its total was final: an upper bound of when it
    counted its last word that costs the per-word path nothing (a tick is
    queued behind the tuples waiting, and ticks come every 10 ms)."""

    counts: dict[str, int]

    def prepare(self, conf: dict[str, Any], context: Any) -> None:
        super().prepare(conf, context)  # type: ignore[misc]
        self.out = f"{conf['bench.out']}/count-{context.task_id}.json"
        self.seen = 0
        self.last = 0.0

    def process_tick(self, tup: Any) -> None:
        total = sum(self.counts.values())
        if total != self.seen:
            self.seen = total
            self.last = time.monotonic()

    def cleanup(self) -> None:
        # ticked: False if words came after the last tick (the time is then unknown).
        record = {"last": self.last, "ticked": sum(self.counts.values()) == self.seen,
                  "counts": self.counts}
        with open(self.out, "w", encoding="utf-8") as f:
            json.dump(record, f)


class ExactCountBolt(_CountsAtClose, CountBolt):
    pass


class ExactReliableCountBolt(_CountsAtClose, ReliableCountBolt):
    pass


# -- the same with BasicBolt (Storm's BaseBasicBolt, as storm-starter's word
# count is written): the input is the implicit anchor and is acked on return.

class BasicSplitBolt(SplitBolt, BasicBolt):
    pass


class BasicCountBolt(CountBolt, BasicBolt):
    pass


class ExactBasicCountBolt(_CountsAtClose, BasicCountBolt):
    pass


def ExactWordCount(conf: dict[str, Any]) -> TopologyBuilder:  # noqa: N802 - named like a topology
    """BenchWordCount over a finite input (`bench.sentences`), counts written to
    `bench.out`: spout -> split (local or shuffle) -> count (fields grouping)."""
    par = int(conf.get("bench.par") or 1)
    acking = bool(conf.get("bench.acking"))
    b = TopologyBuilder("bench-exact-wordcount", {"topology.acker.executors": par if acking else 0})
    b.set_spout("sentences", ReliableFiniteSentenceSpout if acking else FiniteSentenceSpout, par=par)
    split: type[Bolt] = ReliableSplitBolt if acking else SplitBolt
    count: type[Bolt] = ExactReliableCountBolt if acking else ExactCountBolt
    if acking and conf.get("bench.basic"):
        split, count = BasicSplitBolt, ExactBasicCountBolt
    b.set_bolt("split", split, par=par).local_or_shuffle_grouping("sentences")
    b.set_bolt("count", count, par=par, config={"topology.tick.tuple.freq.secs": 0.01}) \
        .fields_grouping("split", "word")
    return b
