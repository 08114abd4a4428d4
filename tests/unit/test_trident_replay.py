"""Exactly-once of a Trident word count in the in-process harness, under the
replays that test the txid rules: a batch committed on some tasks of the state
and replayed (Faults.replay_committed), and a batch failed before any commit
(Faults.replay_failed). The counts must come out exact with a transactional
and an opaque spout; a state that applies a replayed txid again, or builds an
opaque replay on the current value instead of the previous one, fails here."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from storm.testing import Faults, HarnessError, TestTopology
from storm.trident import (
    Count,
    MemoryState,
    OpaqueListSpout,
    TransactionalListSpout,
    TridentTopology,
)

pytestmark = pytest.mark.timeout(60)

LINES = [["a b a"], ["c b"], ["a"], ["d a b"]] * 5


@pytest.fixture(autouse=True)
def _fresh_memory() -> Iterator[None]:
    MemoryState.clear()
    yield
    MemoryState.clear()


def word_count(tmp_path: Path, spout_cls: Any, kind: str = "transactional", par: int = 2) -> Any:
    t = TridentTopology("T", {
        "topology.trident.meta.path": str(tmp_path / "meta.sqlite"),
        "topology.trident.batch.emit.interval.millis": 0.0,
        "topology.max.spout.pending": 3,
    })
    (t.new_stream("lines", spout_cls(LINES, ["line"], batch_size=3, partitions=2), par=2)
     .each("line", str.split, "word")
     .group_by("word")
     .persistent_aggregate(MemoryState("wc", kind), Count(), "count", par=par))
    return t.build()


def true_counts() -> dict[str, int]:
    c: Counter[str] = Counter()
    for (line,) in LINES:
        c.update(line.split())
    return {f'["{w}"]': n for w, n in c.items()}


def run(spec: Any, faults: Faults) -> Any:
    with TestTopology(spec, max_tuples=80, timeout=30, faults=faults) as tt:
        tt.run()
        return tt.result


@pytest.mark.parametrize(("spout_cls", "kind"), [(TransactionalListSpout, "transactional"),
                                                 (OpaqueListSpout, "opaque"),
                                                 (TransactionalListSpout, "opaque")])
def test_a_committed_and_a_failed_batch_replayed_count_exactly_once(tmp_path: Path, spout_cls: Any,
                                                                     kind: str) -> None:
    faults = Faults().replay_committed("b2-persist", txid=2).replay_failed("b2-persist", txid=4)
    result = run(word_count(tmp_path, spout_cls, kind), faults)
    assert [(f.kind, f.stream, f.values[0]) for f in result.faults] == [("fail", "commit", 2), ("fail", "coord", 4)]
    failed = result.failed("trident-coord")
    assert {(kind, txid) for kind, txid, _attempt in failed} >= {("c", 2), ("b", 4)}
    # Batch 2 reached the first task's state twice (committed, then replayed),
    # the last task's once (its first commit was the one failed).
    commits = MemoryState("wc", kind).commits()
    first, last = result.spec.components["b2-persist"].tasks
    assert commits.count((first, 2)) == 2 and commits.count((last, 2)) == 1
    assert MemoryState("wc", kind).read_all() == true_counts()


def test_replay_committed_needs_a_second_task(tmp_path: Path) -> None:
    with pytest.raises(HarnessError, match="has one task.*par=2"):
        run(word_count(tmp_path, TransactionalListSpout, par=1), Faults().replay_committed("b2-persist", 2))
