"""A worker killed with SIGKILL is restarted by the LocalCluster (a new process,
restarts == 1) and the topology goes on: the new incarnation's tasks process
tuples again, from both workers, and the surviving worker keeps its process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psutil
import pytest
import topos_restart
from itest_support import wait_for
from topos_common import RECORD_DIR, read_records

from storm import LocalCluster


@pytest.mark.timeout(90)
def test_killed_worker_is_restarted_and_processing_resumes(cluster: LocalCluster, record_dir: Path) -> None:
    topo = cluster.submit(topos_restart.Restartable, config={RECORD_DIR: str(record_dir), "itest.rate": 500})
    spouts = topo.spec.components["numbers"].tasks  # [3 (w0), 4 (w1)]

    def record_of(worker: int) -> dict[str, Any]:
        recs = [r for r in read_records(record_dir, "count").values() if r["worker"] == worker]
        return recs[0] if recs else {"count": 0, "pid": None, "sources": {}}

    def from_spout(rec: dict[str, Any], task: int) -> int:
        return int(rec["sources"].get(str(task), 0))

    wait_for(topo, lambda: all(from_spout(record_of(w), s) > 0 for w in (0, 1) for s in spouts),
             "both counting tasks received tuples from both spout tasks")
    old = topo.pids()
    assert len(old) == 2
    victim = psutil.Process(old[0])

    topo.kill_worker(0)
    w0 = topo.workers[0]
    wait_for(topo, lambda: w0.restarts == 1 and w0.pid != old[0] and w0.ready,
             "worker 0 restarted and ready")
    new_pid = w0.pid
    assert not victim.is_running() or victim.status() == psutil.STATUS_ZOMBIE
    assert topo.pids() == [new_pid, old[1]]
    before = record_of(1)
    assert before["pid"] == old[1]

    # The new worker 0 counts again, including tuples from the spout in worker 1
    # (whose sender reconnected to the restarted worker's socket) ...
    wait_for(topo, lambda: record_of(0)["pid"] == new_pid
             and all(from_spout(record_of(0), s) > 0 for s in spouts),
             "the restarted worker's counting task receives from both spout tasks")
    # ... and worker 1 gets tuples from the new worker 0's spout task.
    wait_for(topo, lambda: from_spout(record_of(1), spouts[0]) > from_spout(before, spouts[0]) + 100,
             "the surviving worker receives from the restarted worker's spout")
    after = record_of(1)
    assert after["pid"] == old[1] and after["count"] > before["count"]
    assert topo.workers[1].restarts == 0 and topo.pids() == [new_pid, old[1]]
