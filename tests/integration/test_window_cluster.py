"""Event-time windows on real worker processes: out-of-order events (within
the lag) from two spout tasks land in the right tumbling windows, each window
fires once, and every event is acked once it has left its window."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import alert_topos_windows as topos
import pytest
from itest_support import stats, wait_for

from storm import LocalCluster, Topology
from storm.windowing import Duration


class Windows(Topology):
    config = {"topology.workers": 2, "topology.message.timeout.secs": 30.0}
    events = topos.Events.spec(par=2)
    windows = topos.WindowRecorder.spec(inputs=[events], length=Duration(10), timestamp_field="ts",
                                        lag=3.0, watermark_interval=0.1)


def windows(record_dir: Path) -> list[dict[str, Any]]:
    path = record_dir / "windows.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.timeout(60)
def test_event_time_windows_on_two_workers(cluster: LocalCluster, record_dir: Path) -> None:
    topo = cluster.submit(Windows, config={topos.RECORD_DIR: str(record_dir)})
    wait_for(topo, lambda: len(windows(record_dir)) >= 7, "windows up to [60, 70) fired", timeout=40)
    got = windows(record_dir)
    assert [(w["start"], w["end"]) for w in got[:6]] == [(float(s), float(s + 10)) for s in range(0, 60, 10)]
    for w in got[:6]:
        assert w["values"] == list(range(int(w["start"]), int(w["end"]))), w
    assert got[6]["values"] == [] and got[6]["expired"] == 10
    # Every event but the last (still in its window at 100) is acked.
    wait_for(topo, lambda: stats(topo)["events"].acked == topos.LAST_TS, "60 events acked")
    assert stats(topo)["events"].failed == 0
