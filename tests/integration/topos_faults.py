"""Topology of the LocalCluster fault-injection tests (test_local_faults): the
numbers 0..N-1 of topos_reliability's NumberSource (msg id = n, every ack
logged), each with a word, -> a count bolt, fields-grouped by word, that counts
each number's word once (it remembers the numbers it counted, so a replay or
a duplicate does not count twice) and records its counts to
<itest.dir>/count-<task>.json.

The `where=` predicates of the rules are module-level functions: worker
processes import them by name."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from topos_common import FLUSH_TICKS, Recording
from topos_reliability import COUNT, RATE, NumberSource

from storm import Bolt, Grouping, Topology, TopologyContext, Tuple

__all__ = ["COUNT", "RATE", "Counting"]

WORDS = ["the", "cow", "jumped", "over", "moon", "and", "end"]


def word_of(n: int) -> str:
    return WORDS[n % len(WORDS)]


def expected_counts(count: int) -> Counter[str]:
    return Counter(word_of(n) for n in range(count))


# Each matches numbers whose words differ, so they land on both count tasks
# (in both workers): a rule's times= then counts across processes.
def crash_on(tup: Tuple) -> bool:
    return bool(tup["n"] % 50 == 3)


def drop_on(tup: Tuple) -> bool:
    return bool(tup["n"] % 50 == 10)


def duplicate_on(tup: Tuple) -> bool:
    return bool(tup["n"] == 20)


def delay_on(tup: Tuple) -> bool:
    return bool(tup["n"] == 30)


def fail_on(tup: Tuple) -> bool:
    return bool(tup["n"] == 40)


def raise_on(tup: Tuple) -> bool:
    """A user's predicate with a bug: the worker records the error and goes on."""
    if tup["n"] == 50:
        raise ValueError("a where= that raises")
    return False


class WordNumbers(NumberSource):
    outputs = ["n", "word"]

    def load_items(self, conf: dict[str, Any], context: TopologyContext) -> Sequence[Sequence[Any]]:
        return [[n, word_of(n)] for n, in super().load_items(conf, context)]


class CountBolt(Recording, Bolt):
    def prepare(self, conf: dict[str, Any], context: TopologyContext) -> None:
        self.seen: set[int] = set()
        self.start_recording(conf, context, counts={}, executed=0)

    def execute(self, tup: Tuple) -> None:
        n, word = tup.values
        rec = self.record
        rec["executed"] += 1
        if n not in self.seen:
            self.seen.add(n)
            rec["counts"][word] = rec["counts"].get(word, 0) + 1
        self.ack(tup)
        self.changed()

    def process_tick(self, tup: Tuple) -> None:
        self.flush_record()

    def cleanup(self) -> None:
        self.write_record(final=True)


class Counting(Topology):
    config = {
        "topology.workers": 2,
        "topology.acker.executors": 2,
        "topology.message.timeout.secs": 2.0,
        "topology.max.spout.pending": 100,
    }
    numbers = WordNumbers.spec()
    count = CountBolt.spec(inputs={numbers: Grouping.fields("word")}, par=2, config=FLUSH_TICKS)
