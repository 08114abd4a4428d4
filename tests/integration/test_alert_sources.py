"""Sources on real worker processes: the tail spout follows a file across a
rotation (every line written before and after it arrives, once), and the HTTP
ingest spout accepts JSON lines POSTed to its port on 127.0.0.1."""

from __future__ import annotations

import json
import os
import urllib.request
from pathlib import Path

import alert_topos_stateful as topos
import pytest
from itest_support import stats, wait_for

from storm import LocalCluster


@pytest.mark.timeout(60)
def test_tail_across_rotation_and_http_ingest(cluster: LocalCluster, record_dir: Path) -> None:
    log = record_dir / "app.log"
    log.write_text("".join(f"before {i}\n" for i in range(50)))
    out = record_dir / "out.jsonl"
    port_file = record_dir / "http.port"
    topo = cluster.submit(topos.Sources, config={
        "sources.tail.path": str(log), "sources.tail.checkpoint.dir": str(record_dir / "ck"),
        "sources.http.port.file": str(port_file), "sinks.file.path": str(out)})

    def lines() -> list[str]:
        return [json.loads(x).get("line", "") for x in out.read_text().splitlines()] if out.exists() else []

    wait_for(topo, lambda: len(lines()) >= 50, "the first 50 lines arrived")
    with log.open("a") as f:
        f.write("last of old\n")
    os.replace(log, record_dir / "app.log.1")
    log.write_text("".join(f"after {i}\n" for i in range(50)))
    expected = [f"before {i}" for i in range(50)] + ["last of old"] + [f"after {i}" for i in range(50)]
    wait_for(topo, lambda: len(lines()) >= len(expected), "every line before and after the rotation arrived")
    assert sorted(lines()) == sorted(expected)

    wait_for(topo, port_file.exists, "the HTTP spout listens")
    body = b'{"n": 1}\n{"n": 2}\n'
    req = urllib.request.Request(f"http://127.0.0.1:{int(port_file.read_text())}/", data=body, method="POST")
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 202
    wait_for(topo, lambda: sum(1 for x in out.read_text().splitlines() if '"event"' in x) == 2,
             "the POSTed events arrived")
    wait_for(topo, lambda: stats(topo)["tail"].acked == len(expected), "every line acked")
