"""A kill planned with LocalTopology.kill_worker_when happens at the moment it
names (after N spout acks), on real worker processes, and loses nothing: the
worker is restarted, the trees it held time out and are replayed, and every
message is acked exactly once (topos_reliability, as test_reliability)."""

from __future__ import annotations

from pathlib import Path

import pytest
from itest_support import wait_for
from test_reliability import (
    check_acked_exactly_once,
    check_sink_saw_everything,
    submit,
    wait_finished,
)
from topos_reliability import COUNT, HOLD, RATE

from storm import LocalCluster, StormError


@pytest.mark.timeout(120)
def test_a_worker_killed_after_n_acks_loses_nothing(cluster: LocalCluster, record_dir: Path) -> None:
    count = 6000
    topo = submit(cluster, record_dir, **{COUNT: count, RATE: 3000, HOLD: True,
                                          "topology.max.spout.pending": 5000})
    with pytest.raises(StormError, match="worker index 5 is not one of 0..1"):
        topo.kill_worker_when(5, acked=1)
    with pytest.raises(StormError, match="exactly one of acked=N"):
        topo.kill_worker_when(1)
    with pytest.raises(StormError, match="'b_flaky' is not a spout"):
        topo.kill_worker_when(1, acked=1, component="b_flaky")
    old_pid = topo.workers[1].pid
    kill = topo.kill_worker_when(1, acked=1500, component="a_source")
    assert kill.wait(60), "the planned kill did not happen"
    assert kill.pid == old_pid and kill.acked_at_kill >= 1500 and kill.at_secs is not None
    w1 = topo.workers[1]
    wait_for(topo, lambda: w1.restarts == 1 and w1.ready, "worker 1 restarted")
    s = wait_finished(topo, record_dir)
    topo.stop()
    check_acked_exactly_once(record_dir, count)
    check_sink_saw_everything(record_dir, count)
    print(f"\nkilled worker 1 at {kill.at_secs:.1f}s after {kill.acked_at_kill} acks; "
          f"spout failed {s['failed']}, replays {s['replays']}")
    assert s["acked"] == count and s["pending"] == 0
    assert s["failed"] > 0 and s["replays"] == s["failed"], "the kill should have cost trees in flight"
