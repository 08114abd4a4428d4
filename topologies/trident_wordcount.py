"""Trident word count: exactly-once counts in a SQLite state.

sentences (a transactional spout over a seeded list of sentences, 4 partitions)
-> split into words -> group_by("word") -> persistent_aggregate(Count()) into
SQLite, one transaction per batch, commits in txid order. Kill a worker, fail a
batch, stop and start it again: every sentence is counted exactly once.

    storm local topologies/trident_wordcount.py --duration 20
    storm query topologies/trident_wordcount.py counts the cow moon

Config (-c key=value): wordcount.state (the SQLite file, default
trident-wordcount.sqlite), wordcount.sentences (how many, default 200000),
wordcount.batch (sentences per partition per batch, default 250),
wordcount.par (tasks per step, default 2)."""

from __future__ import annotations

import random
from typing import Any

from storm import TopologySpec
from storm.trident import Count, SQLiteState, TransactionalListSpout, TridentTopology

WORDS = ["the", "cow", "jumped", "over", "moon", "an", "apple", "a", "day", "keeps", "doctor",
         "away", "four", "score", "and", "seven", "years", "ago", "snow", "white", "and", "the",
         "seven", "dwarfs", "i", "am", "at", "two", "with", "nature"]


def sentences(n: int, seed: int = 1) -> list[list[str]]:
    rng = random.Random(seed)
    return [[" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 10)))] for _ in range(n)]


def wordcount(conf: dict[str, Any] | None = None) -> TopologySpec:
    conf = conf or {}
    n = int(conf.get("wordcount.sentences") or 200_000)
    batch = int(conf.get("wordcount.batch") or 250)
    par = int(conf.get("wordcount.par") or 2)
    state = SQLiteState(str(conf.get("wordcount.state") or "trident-wordcount.sqlite"), "counts")
    t = TridentTopology("TridentWordCount", {
        "topology.workers": 2,
        "topology.max.spout.pending": 3,
        "topology.trident.batch.emit.interval.millis": 5.0,
    })
    (t.new_stream("sentences", TransactionalListSpout(lambda: sentences(n), ["sentence"],
                                                      batch_size=batch, partitions=4), par=par)
     .each("sentence", str.split, "word")
     .group_by("word")
     .persistent_aggregate(state, Count(), "count", par=par, name="counts"))
    return t.build(conf)


# `storm local topologies/trident_wordcount.py` picks this one (the defaults);
# `storm local topologies/trident_wordcount.py:wordcount -c ...` builds from -c.
topology = wordcount()
