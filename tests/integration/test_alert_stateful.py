"""Checkpointed alert state on real worker processes: an alert fires, its rule
state is checkpointed, the evaluator's worker is killed (SIGKILL) and restarted,
and as the condition keeps holding the alert does not fire again; it resolves
once, when the condition clears. Without the restored state a restarted
evaluator would fire a second alert (another id)."""

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


def append(path: Path, events: list[dict[str, Any]]) -> None:
    with path.open("a") as f:
        for ev in events:
            f.write(json.dumps(ev) + "\n")


def alerts(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def saved_firing(db: Path) -> list[tuple[str, str]]:
    """(rule, key) firing in the evaluator's last saved checkpoint."""
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
            return [(r, key) for r, data in snap["rules"].items()
                    for key, st in data["keys"].items() if st[2]]
    return []


@pytest.mark.timeout(90)
def test_alert_state_survives_a_worker_kill(cluster: LocalCluster, record_dir: Path) -> None:
    rules = record_dir / "rules.yaml"
    rules.write_text(topos.RULES)
    events = record_dir / "events.jsonl"
    events.write_text("")
    out = record_dir / "alerts.jsonl"
    state_dir = record_dir / "state"
    conf = {"alerting.rules": str(rules), "sources.tail.path": str(events),
            "sources.tail.checkpoint.dir": str(record_dir / "tail"), "sinks.file.path": str(out),
            "topology.state.dir": str(state_dir)}
    topo = cluster.submit(topos.StatefulAlerts, config=conf)
    assignment = topo.spec.assign(2)
    ev_task = topo.spec.components["evaluate"].tasks[0]
    assert assignment[ev_task] == 1
    assert assignment[topo.spec.components["events"].tasks[0]] == 0
    db = state_dir / topo.spec.name / f"evaluate-{ev_task}.sqlite"

    append(events, topos.cpu_events(0, 23, hot_until=60))
    wait_for(topo, lambda: any(a["state"] == "firing" for a in alerts(out)), "cpu_high fired")
    wait_for(topo, lambda: saved_firing(db) == [("cpu_high", "h1")], "the firing state was checkpointed")

    worker = topo.workers[1]
    old_pid = worker.pid
    topo.kill_worker(1)
    wait_for(topo, lambda: worker.restarts == 1 and worker.pid != old_pid and worker.ready,
             "the evaluator's worker restarted")

    # Still hot until 45, then cool: the window [40, 50) averages 52.5 and resolves it.
    append(events, topos.cpu_events(23, 70, hot_until=45))
    wait_for(topo, lambda: any(a["state"] == "resolved" for a in alerts(out)), "cpu_high resolved", timeout=45)
    got = alerts(out)
    firing_ids = {a["id"] for a in got if a["state"] == "firing"}
    assert firing_ids == {"cpu_high|h1|20.0"}, f"the alert fired again after the restart: {got}"
    assert {a["id"] for a in got if a["state"] == "resolved"} == {"cpu_high|h1|20.0"}
    assert [a["ts"] for a in got if a["state"] == "resolved"][0] == 50.0
