"""Word count: sentences -> split -> count (fields grouping on word) -> sink.

Run it:  storm local topologies/wordcount.py --duration 10
The sink writes the running counts as JSON to the file named by the config key
`wordcount.output` (default: wordcount-counts.json in the current directory).
"""

from __future__ import annotations

import json
import os
import random
from typing import Any

from storm import Bolt, Grouping, Spout, Topology

SENTENCES = [
    "the cow jumped over the moon",
    "an apple a day keeps the doctor away",
    "four score and seven years ago",
    "snow white and the seven dwarfs",
    "i am at two with nature",
]


class SentenceSpout(Spout):
    """Emits random sentences forever, or each sentence of `wordcount.sentences`
    `wordcount.repeat` times and then stops (a finite run with known counts)."""

    outputs = ["sentence"]

    def open(self, conf: dict[str, Any], context: Any) -> None:
        self.rng = random.Random(context.task_id)
        finite = conf.get("wordcount.repeat")
        self.remaining: list[str] | None = None
        if finite:
            mine = context.this_task_index
            ntasks = len(context.get_component_tasks(context.component_id))
            sentences = conf.get("wordcount.sentences") or SENTENCES
            self.remaining = [s for i, s in enumerate(sentences * int(finite)) if i % ntasks == mine]
            self.remaining.reverse()
        self.seq = 0

    def next_tuple(self) -> None:
        # Every sentence carries a message id: with ackers (the default) each one
        # is tracked until split and count have acked all of its words.
        if self.remaining is None:
            self.seq += 1
            self.emit([self.rng.choice(SENTENCES)], msg_id=self.seq)
        elif self.remaining:
            self.seq += 1
            self.emit([self.remaining.pop()], msg_id=self.seq)


class SplitBolt(Bolt):
    outputs = ["word"]

    def execute(self, tup: Any) -> None:
        for word in tup.values[0].split():
            self.emit([word], anchors=[tup])
        self.ack(tup)


class CountBolt(Bolt):
    """Keeps a count per word; emits (word, count) downstream every second."""

    outputs = ["word", "count"]

    def prepare(self, conf: dict[str, Any], context: Any) -> None:
        self.counts: dict[str, int] = {}
        self.dirty: set[str] = set()

    def execute(self, tup: Any) -> None:
        if tup.is_tick:
            for word in self.dirty:
                self.emit([word, self.counts[word]])
            self.dirty.clear()
            return
        word = tup.values[0]
        self.counts[word] = self.counts.get(word, 0) + 1
        self.dirty.add(word)
        self.ack(tup)

    def cleanup(self) -> None:
        for word in self.dirty:
            self.emit([word, self.counts[word]])


class SinkBolt(Bolt):
    """Collects the latest count of every word and writes them to a JSON file."""

    def prepare(self, conf: dict[str, Any], context: Any) -> None:
        self.path = conf.get("wordcount.output") or "wordcount-counts.json"
        self.counts: dict[str, int] = {}
        self.changed = False

    def execute(self, tup: Any) -> None:
        if tup.is_tick:
            self.write()
            return
        self.counts[tup.values[0]] = tup.values[1]
        self.changed = True
        self.ack(tup)

    def write(self) -> None:
        if not self.changed:
            return
        tmp = f"{self.path}.tmp"
        with open(tmp, "w") as f:
            json.dump(dict(sorted(self.counts.items())), f, indent=1)
        os.replace(tmp, self.path)
        self.changed = False

    def cleanup(self) -> None:
        self.write()


class WordCount(Topology):
    # At most 1,000 sentences in flight per spout task keeps complete latency low.
    config = {"topology.workers": 2, "topology.max.spout.pending": 1000}
    sentences = SentenceSpout.spec(par=2)
    split = SplitBolt.spec(inputs=[sentences], par=2)
    count = CountBolt.spec(
        inputs={split: Grouping.fields("word")}, par=2, config={"topology.tick.tuple.freq.secs": 1}
    )
    sink = SinkBolt.spec(inputs={count: Grouping.global_()}, config={"topology.tick.tuple.freq.secs": 1})
