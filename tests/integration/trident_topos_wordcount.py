"""Trident word count topologies for the exactly-once tests (real workers).

`wordcount(conf)` builds: sentences (a transactional or opaque list spout, 4
partitions over 2 emitter tasks) -> split -> shuffle -> a flaky step that
raises on a small share of words (failing its batch, which is replayed) ->
group_by("word") -> persistent_aggregate(Count()) into the state the config
names. Config keys (not reserved, passed through to the tasks):
  trident.test.kind       transactional | opaque
  trident.test.sentences  how many sentences (deterministic, seeded)
  trident.test.batch      sentences per partition per batch
  trident.test.fail.rate  probability that the flaky step raises on one word
  trident.test.backend    sqlite | redis | postgres
  trident.test.state      the backend's location (file path, URL or DSN)
  trident.test.rate       opaque only: sentences per second per partition visible
  trident.test.table      the state's table / hash name (default wordcount)
  trident.test.start      opaque only: the time.time() the visible sentences count from"""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

from storm import TopologySpec
from storm.trident import (
    Count,
    OpaqueListSpout,
    PostgresState,
    RedisState,
    SQLiteState,
    StateFactory,
    TransactionalListSpout,
    TridentSpout,
    TridentTopology,
)

WORDS = ["the", "cow", "jumped", "over", "moon", "an", "apple", "a", "day", "keeps", "doctor", "away", "four", "score", "and", "seven", "years", "ago", "snow", "white", "dwarfs", "i", "am", "at", "two", "with", "nature", "storm", "trident", "batch"]

KIND = "trident.test.kind"
SENTENCES = "trident.test.sentences"
BATCH = "trident.test.batch"
FAIL_RATE = "trident.test.fail.rate"
BACKEND = "trident.test.backend"
STATE = "trident.test.state"
RATE = "trident.test.rate"
START = "trident.test.start"  # time.time() from which the opaque spout's rate counts
TABLE = "trident.test.table"  # the state's table (hash) name; default "wordcount"


def sentences(n: int, seed: int = 7) -> list[list[str]]:
    rng = random.Random(seed)
    return [[" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 9)))] for _ in range(n)]


def true_counts(n: int) -> Counter[str]:
    c: Counter[str] = Counter()
    for (s,) in sentences(n):
        c.update(s.split())
    return c


def state_factory(conf: dict[str, Any]) -> StateFactory:
    backend = str(conf.get(BACKEND) or "sqlite")
    kind = str(conf.get(KIND) or "transactional")
    location = str(conf[STATE])
    table = str(conf.get(TABLE) or "wordcount")
    if backend == "sqlite":
        return SQLiteState(location, table, kind=kind)
    if backend == "redis":
        return RedisState(location, table, kind=kind)
    if backend == "postgres":
        return PostgresState(location, table, kind=kind)
    raise ValueError(f"unknown backend {backend!r}")


class Flaky:
    """Raises on a `rate` share of calls (a fresh draw per call, per process)."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.rng = random.Random()

    def __call__(self, word: str) -> list[bool]:
        if self.rate and self.rng.random() < self.rate:
            raise RuntimeError(f"injected failure at word {word!r}")
        return []


class ShiftingOpaqueSpout(OpaqueListSpout):
    """An opaque source whose every read returns a random share (1 to all) of
    what is asked for, as a broker's fetch might: a replayed batch almost never
    holds the same sentences as its first attempt."""

    def read(self, partition: int, offset: int, max_count: int) -> list[Any]:
        return super().read(partition, offset, random.randint(1, max_count))


def wordcount(conf: dict[str, Any]) -> TopologySpec:
    n = int(conf.get(SENTENCES) or 1000)
    batch = int(conf.get(BATCH) or 100)
    kind = str(conf.get(KIND) or "transactional")
    spout: TridentSpout
    if kind == "opaque":
        rate = conf.get(RATE)
        start = conf.get(START)
        spout = ShiftingOpaqueSpout(lambda: sentences(n), ["sentence"], batch_size=batch, partitions=4,
                                rate=float(rate) if rate else None,
                                start=float(start) if start else None)
    else:
        spout = TransactionalListSpout(lambda: sentences(n), ["sentence"], batch_size=batch, partitions=4)
    flaky = Flaky(float(conf.get(FAIL_RATE) or 0))
    t = TridentTopology("TridentWordCount", {
        "topology.workers": 2,
        "topology.max.spout.pending": 3,
        "topology.message.timeout.secs": 3.0,
        "topology.trident.batch.emit.interval.millis": 5.0,
    })
    (t.new_stream("sentences", spout, par=2)
     .each("sentence", str.split, "word")
     .project("word")
     .shuffle(par=2)
     .filter("word", lambda w: not flaky(w))
     .group_by("word")
     .persistent_aggregate(state_factory(conf), Count(), "count", par=2, name="counts"))
    return t.build()
