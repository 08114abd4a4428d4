"""The Trident replays of storm.testing.Faults on real worker processes: a
batch committed by one task of the state and failed at the other
(replay_committed), and a batch failed before any commit (replay_failed), in
the Trident word count of trident_topos_wordcount. The rules reach the
workers as data (their predicate is the batch's txid, not a closure), fire
once each over both workers, and the counts come out exact."""

from __future__ import annotations

from pathlib import Path

import pytest
import trident_topos_wordcount as tw
from trident_topos_harness import TARGET, base_conf, check_exact, wait_exact

from storm import LocalCluster
from storm.testing import Faults

PERSIST = "b3-counts"  # tasks 3 (worker 0) and 4 (worker 1)


@pytest.mark.timeout(90)
def test_committed_and_failed_batches_replayed_on_workers_count_exactly_once(cluster: LocalCluster,
                                                                              tmp_path: Path) -> None:
    conf = base_conf(tmp_path, **{tw.SENTENCES: 2000, tw.BATCH: 100})
    factory = tw.state_factory(conf)
    faults = Faults().replay_committed(PERSIST, txid=3).replay_failed(PERSIST, txid=5)
    topo = cluster.submit(TARGET, config=conf, faults=faults)
    assert topo.spec.components[PERSIST].tasks == [3, 4]
    wait_exact(topo, conf, factory, tw.true_counts(2000))
    events = topo.faults()
    topo.stop()
    check_exact(factory, tw.true_counts(2000))
    assert [(e.kind, e.values[0]) for e in events] == [("fail", 3), ("fail", 5)], events
    commit, failed = events
    assert commit.stream == "commit" and commit.task == 4 and commit.worker == 1
    assert failed.stream in ("coord", "batch") and failed.component == PERSIST
    # The batch committed at task 3 and failed at task 4 reached task 3's state
    # again when the coordinator replayed it; the txid rules kept it from counting twice.
    commits = factory.commits()
    assert commits.count((3, 3)) == 2 and commits.count((4, 3)) == 1, commits[:20]
