"""Topology-wide checkpoints on real worker processes: two stateful stages with a
plain bolt between them, one task of each stage in the worker that is killed
(SIGKILL) mid-run. After the restart every input is eventually acked, and the
committed states of the two stages are consistent with each other at one txid
(the second stage's totals equal the first stage's counts); inputs are counted
at least once (exactly once unless a worker died between two tasks' commits).
A prepare refused by one task rolls every task back: the held inputs are
replayed and nothing is counted twice."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import checkpoint_topos as topos
import msgpack
import pytest
from itest_support import wait_for

from storm import LocalCluster


def read_state(db: Path) -> tuple[int, dict[str, int]] | None:
    if not db.exists():
        return None
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = con.execute("SELECT k, v FROM kv").fetchall()
        txid = con.execute("SELECT value FROM meta WHERE name = 'txid'").fetchone()
    except sqlite3.OperationalError:
        return None
    finally:
        con.close()
    data = {msgpack.unpackb(k, raw=False): msgpack.unpackb(v, raw=False) for k, v in rows}
    return (int(txid[0]) if txid else 0), data


def snapshot(dbs: dict[str, list[Path]]) -> dict[str, Any] | None:
    """Per stage the merged committed state, if every task is at the same txid."""
    txids: set[int] = set()
    merged: dict[str, dict[str, int]] = {}
    for stage, paths in dbs.items():
        merged[stage] = {}
        for p in paths:
            got = read_state(p)
            if got is None:
                return None
            txids.add(got[0])
            for k, v in got[1].items():
                merged[stage][k] = merged[stage].get(k, 0) + v
    if len(txids) != 1:
        return None
    return {"txid": txids.pop(), **merged}


def spout_summary(d: Path) -> dict[str, Any]:
    files = list(d.glob("numbers-*.json"))
    return json.loads(files[0].read_text()) if files else {}


@pytest.mark.timeout(60)
def test_two_stages_stay_consistent_across_a_worker_kill(cluster: LocalCluster, record_dir: Path) -> None:
    state_dir = record_dir / "state"
    summaries = record_dir / "summary"
    summaries.mkdir()
    conf = {"topology.state.dir": str(state_dir), "spouts.summary.dir": str(summaries)}
    topo = cluster.submit(topos.TwoStage, config=conf)
    spec = topo.spec
    assignment = spec.assign(3)
    for name in ("checkpoint", "numbers"):
        assert assignment[spec.components[name].tasks[0]] == 0
    victim = 2
    assert {spec.task_component[t] for t, w in assignment.items() if w == victim} >= {"count", "total"}
    base = state_dir / spec.name
    dbs = {stage: [base / f"{stage}-{t}.sqlite" for t in spec.components[stage].tasks]
           for stage in ("count", "total")}

    def progress() -> int:
        snap = snapshot(dbs)
        return sum(snap["total"].values()) if snap else 0

    wait_for(topo, lambda: progress() >= topos.N // 5, "a fifth of the inputs committed", timeout=30)
    assert progress() < topos.N, "the kill must come mid-run"
    worker = topo.workers[victim]
    old_pid = worker.pid
    topo.kill_worker(victim)
    wait_for(topo, lambda: worker.restarts == 1 and worker.pid != old_pid and worker.ready,
             "the killed worker restarted", timeout=20)

    wait_for(topo, lambda: spout_summary(summaries).get("finished") is True,
             "every input acked after the restart", timeout=40)
    expected = {k: topos.KEYS.count(k) for k in set(topos.KEYS)}

    def settled() -> bool:
        snap = snapshot(dbs)
        return bool(snap) and sum(snap["count"].values()) >= topos.N and snap["count"] == snap["total"]

    wait_for(topo, settled, "both stages committed every input at one txid", timeout=20)
    snap = snapshot(dbs)
    assert snap is not None
    assert snap["count"] == snap["total"], "the two stages are consistent at one txid"
    assert all(snap["count"][k] >= n for k, n in expected.items()), snap
    extra = sum(snap["count"].values()) - topos.N
    # Duplicates only come from a worker dying between two tasks' commits of one txid.
    assert extra <= topos.N // 10, f"{extra} inputs counted twice"


@pytest.mark.timeout(40)
def test_a_refused_prepare_rolls_back_every_task(cluster: LocalCluster, record_dir: Path) -> None:
    state_dir = record_dir / "state"
    summaries = record_dir / "summary"
    summaries.mkdir()
    flag = record_dir / "fail-prepare"
    flag.write_text("once")
    conf = {"topology.state.dir": str(state_dir), "spouts.summary.dir": str(summaries),
            "itest.fail.prepare": str(flag), "topology.workers": 2}
    topo = cluster.submit(topos.TwoStage, config=conf)
    spec = topo.spec
    base = state_dir / spec.name
    dbs = {stage: [base / f"{stage}-{t}.sqlite" for t in spec.components[stage].tasks]
           for stage in ("count", "total")}
    wait_for(topo, lambda: spout_summary(summaries).get("finished") is True, "every input acked", timeout=30)
    assert not flag.exists(), "a prepare was refused"
    summary = spout_summary(summaries)
    assert summary["failed"] > 0, f"the rollback failed the held inputs: {summary}"
    expected = {k: topos.KEYS.count(k) for k in set(topos.KEYS)}

    def exact() -> bool:
        snap = snapshot(dbs)
        return bool(snap) and snap["count"] == snap["total"] == expected

    wait_for(topo, exact, "both stages hold every input exactly once", timeout=15)
