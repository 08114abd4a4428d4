"""Tick tuples on real workers: a bolt configured for ticks every 0.2 s receives
them in execute (tup.is_tick) at about that rate, in each worker, mixed with its
ordinary input; a bolt without the setting receives none."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import topos_ticks
from itest_support import wait_for
from topos_common import RECORD_DIR, read_records

from storm import LocalCluster

TICKS = 12  # ~2.4 s of ticks per task


@pytest.mark.timeout(90)
def test_tick_tuples_arrive_at_the_configured_rate(cluster: LocalCluster, record_dir: Path) -> None:
    topo = cluster.submit(topos_ticks.Ticks, config={RECORD_DIR: str(record_dir), "itest.rate": 50})
    tasks = topo.spec.components["ticked"].tasks
    wait_for(topo, lambda: (len(recs := read_records(record_dir, "ticked")) == len(tasks)
                            and all(len(r["ticks"]) >= TICKS for r in recs.values())),
             f"every ticked task received {TICKS} ticks")
    topo.stop()
    ticked = read_records(record_dir, "ticked")
    assert {r["worker"] for r in ticked.values()} == {0, 1}
    for task, rec in ticked.items():
        ticks = rec["ticks"]
        assert rec["odd_ticks"] == [], f"task {task}: ticks must be on stream __tick from __system with [0.2]"
        assert rec["tuples"] > 0, f"task {task} also received ordinary tuples"
        mean = (ticks[-1] - ticks[0]) / (len(ticks) - 1)
        gaps = [b - a for a, b in zip(ticks, ticks[1:], strict=False)]
        print(f"\ntask {task}: {len(ticks)} ticks, mean interval {mean:.3f}s, "
              f"min {min(gaps):.3f}s, max {max(gaps):.3f}s")
        # Never faster than configured (semantic); a loaded machine may delay ticks,
        # so the upper bound only catches a rate that is off by a factor.
        assert topos_ticks.TICK_SECS * 0.95 <= mean <= topos_ticks.TICK_SECS * 3, mean
    unticked = read_records(record_dir, "unticked")
    assert sorted(unticked) == topo.spec.components["unticked"].tasks
    for task, rec in unticked.items():
        assert rec["ticks"] == [], f"task {task} has no tick setting but received ticks"
        assert rec["tuples"] > 0


@pytest.mark.timeout(60)
def test_clean_stop_is_prompt_with_frequent_ticks(cluster: LocalCluster, record_dir: Path) -> None:
    topo = cluster.submit(topos_ticks.Ticks, config={RECORD_DIR: str(record_dir), "itest.rate": 50})
    wait_for(topo, lambda: len(read_records(record_dir, "ticked")) == 2, "the ticked tasks started")
    start = time.monotonic()
    topo.stop()
    elapsed = time.monotonic() - start
    assert topo.stopped.is_set()
    # Below the workers' 5 s drain deadline: frequent ticks did not make the stop
    # wait it out (a tick counts as work, and the drain waits for 0.3 s of quiet).
    assert elapsed < 4.5, f"a clean stop of an idle topology took {elapsed:.1f}s"
