"""A Trident join on real workers, for test_trident_join: two transactional
spouts (clicks and views, 2 partitions over 2 emitter tasks each) joined on
"ad" within each batch over 2 join tasks, a step that fails random batches,
then the joined pairs counted per ad into a SQLite state. Both spouts read full
batches (their lists are all there), so batch t of each holds offsets
[(t-1)*batch, t*batch) of every partition: `expected_pairs` computes the exact
join counts from that. Config keys (passed through to the tasks):
  trident.join.rows    rows of each spout
  trident.join.batch   rows per partition per batch
  trident.join.state   the SQLite state file
  trident.join.fail    probability that the flaky step raises on one joined row"""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

from storm import TopologySpec
from storm.trident import Count, SQLiteState, TransactionalListSpout, TridentTopology

ROWS = "trident.join.rows"
BATCH = "trident.join.batch"
STATE = "trident.join.state"
FAIL = "trident.join.fail"
ADS = 37
PARTITIONS = 2


def clicks(n: int) -> list[list[Any]]:
    rng = random.Random(3)
    return [[rng.randrange(ADS), f"c{i}"] for i in range(n)]


def views(n: int) -> list[list[Any]]:
    rng = random.Random(4)
    return [[rng.randrange(ADS), f"v{i}"] for i in range(n)]


def _batch(rows: list[list[Any]], txid: int, size: int) -> list[list[Any]]:
    return [r for p in range(PARTITIONS) for r in rows[p::PARTITIONS][(txid - 1) * size:txid * size]]


def expected_pairs(n: int, size: int) -> Counter[int]:
    """Per ad, how many (click, view) pairs share a batch: the join's true counts."""
    out: Counter[int] = Counter()
    a, b = clicks(n), views(n)
    for txid in range(1, n // (PARTITIONS * size) + 2):
        left = Counter(r[0] for r in _batch(a, txid, size))
        right = Counter(r[0] for r in _batch(b, txid, size))
        for ad, m in left.items():
            if right[ad]:
                out[ad] += m * right[ad]
    return out


class Flaky:
    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.rng = random.Random()

    def __call__(self, ad: int) -> bool:
        if self.rate and self.rng.random() < self.rate:
            raise RuntimeError(f"injected failure at ad {ad}")
        return True


def joined(conf: dict[str, Any]) -> TopologySpec:
    n = int(conf.get(ROWS) or 1000)
    size = int(conf.get(BATCH) or 50)
    flaky = Flaky(float(conf.get(FAIL) or 0))
    t = TridentTopology("TridentJoin", {
        "topology.workers": 2,
        "topology.max.spout.pending": 3,
        "topology.message.timeout.secs": 3.0,
        "topology.trident.batch.emit.interval.millis": 5.0,
    })
    a = t.new_stream("clicks", TransactionalListSpout(lambda: clicks(n), ["ad", "click"], batch_size=size,
                                                      partitions=PARTITIONS), par=2)
    b = t.new_stream("views", TransactionalListSpout(lambda: views(n), ["ad", "view"], batch_size=size,
                                                     partitions=PARTITIONS), par=2)
    (a.join(b, on="ad", par=2)
     .filter("ad", flaky)
     .group_by("ad")
     .persistent_aggregate(SQLiteState(str(conf[STATE]), "pairs"), Count(), "pairs", par=2, name="pairs"))
    return t.build()
