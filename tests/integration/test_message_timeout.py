"""A tree that is never acked fails at the spout after the message timeout: with
topology.message.timeout.secs = 2 the spout sees fail() 2 to 4 seconds after it
emitted the tuple (real worker processes)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import topos_timeout
from itest_support import wait_for

from storm import LocalCluster


@pytest.mark.timeout(90)
def test_unacked_tree_fails_within_two_to_four_seconds(cluster: LocalCluster, record_dir: Path) -> None:
    topo = cluster.submit(topos_timeout.Timeouts, config={"itest.dir": str(record_dir), "itest.count": 3})
    [spout_task] = topo.spec.component_tasks("source")
    path = record_dir / f"timeout-spout-{spout_task}.json"

    def all_failed() -> bool:
        try:
            data = json.loads(path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return False
        return len(data["failed"]) == 3

    wait_for(topo, all_failed, "every message failed by timeout", timeout=30)
    data = json.loads(path.read_text())
    assert data["acked"] == []
    delays = {int(k): data["failed"][k] - data["emitted"][k] for k in data["failed"]}
    print(f"fail() after emit, seconds: {sorted(round(d, 2) for d in delays.values())}")
    for msg_id, delay in delays.items():
        assert 2.0 <= delay <= 4.0, f"message {msg_id} failed {delay:.2f}s after it was emitted"
    # The runtime's own counter agrees once the next metrics report is in.
    wait_for(topo, lambda: {c.name: c for c in topo.component_stats()}["source"].failed == 3,
             "the spout's failed count reaches 3", timeout=10)
