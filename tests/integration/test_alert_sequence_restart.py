"""A sequence rule on real worker processes, through a SIGKILL of the
evaluator's worker: the match state (a failure waiting for its success) is
checkpointed, the worker is killed and restarted, the events since the last
checkpoint are replayed, and the sequence completed across the restart fires
once (without the restored state it would not fire: the replayed first step
would be late); any alert sent twice (replayed) carries the same id and content, so a
receiver's dedup by id leaves exactly one alert per match."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import alert_topos_stateful as topos
import msgpack
import pytest
from itest_support import wait_for

from storm import LocalCluster

RULES = """
time_field: ts
rules:
  - name: login_after_failure
    key: user
    condition:
      kind: sequence
      within: 300
      steps:
        - filter: {outcome: failure}
        - filter: {outcome: success}
"""


def append(path: Path, events: list[dict[str, Any]]) -> None:
    with path.open("a") as f:
        for ev in events:
            f.write(json.dumps(ev) + "\n")


def alerts(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def saved_partials(db: Path) -> list[str]:
    """Keys with a match in progress in the evaluator's last saved checkpoint."""
    if not db.exists():
        return []
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = con.execute("SELECT k, v FROM kv").fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        con.close()
    for k, v in rows:
        if msgpack.unpackb(k, raw=False) == "engine":
            snap = msgpack.unpackb(v, raw=False, strict_map_key=False)
            return sorted(snap["rules"]["login_after_failure"]["sequence"]["keys"])
    return []


@pytest.mark.timeout(90)
def test_sequence_match_survives_a_worker_kill(cluster: LocalCluster, record_dir: Path) -> None:
    rules = record_dir / "rules.yaml"
    rules.write_text(RULES)
    events = record_dir / "events.jsonl"
    events.write_text("")
    out = record_dir / "alerts.jsonl"
    conf = {"alerting.rules": str(rules), "sources.tail.path": str(events),
            "sources.tail.checkpoint.dir": str(record_dir / "tail"), "sinks.file.path": str(out),
            "topology.state.dir": str(record_dir / "state")}
    topo = cluster.submit(topos.StatefulAlerts, config=conf)
    ev_task = topo.spec.components["evaluate"].tasks[0]
    assert topo.spec.assign(2)[ev_task] == 1
    db = record_dir / "state" / topo.spec.name / f"evaluate-{ev_task}.sqlite"

    append(events, [{"id": "f1", "ts": 10.0, "user": "ann", "outcome": "failure"},
                    {"id": "s1", "ts": 20.0, "user": "ann", "outcome": "success"},
                    {"id": "f2", "ts": 30.0, "user": "bob", "outcome": "failure"},  # bob's waits
                    {"id": "t1", "ts": 40.0, "user": "-", "outcome": "noop"}])
    wait_for(topo, lambda: len(alerts(out)) >= 1, "ann's sequence fired")
    # Replayed after the kill, bob's failure would come behind the watermark
    # (late): the checkpoint is what keeps his match in progress.
    wait_for(topo, lambda: saved_partials(db) == ["bob"], "bob's match in progress was checkpointed")

    worker = topo.workers[1]
    old_pid = worker.pid
    topo.kill_worker(1)
    wait_for(topo, lambda: worker.restarts == 1 and worker.pid != old_pid and worker.ready,
             "the evaluator's worker restarted")

    append(events, [{"id": "s2", "ts": 50.0, "user": "bob", "outcome": "success"},
                    {"id": "t2", "ts": 60.0, "user": "-", "outcome": "noop"}])
    wait_for(topo, lambda: any(a["key"] == "bob" for a in alerts(out)), "bob's sequence fired", timeout=45)
    got = alerts(out)
    by_id: dict[str, dict[str, Any]] = {}
    for a in got:
        alert = a.get("alert", a)
        assert by_id.setdefault(a["id"], alert) == alert, f"one id, two different alerts: {got}"
    assert sorted(by_id) == ["login_after_failure|ann|20.0|f1", "login_after_failure|bob|50.0|f2"]
    assert by_id["login_after_failure|bob|50.0|f2"]["events"] == ["f2", "s2"]
