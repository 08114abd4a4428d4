"""Every grouping across two real worker processes: where each tuple lands is read
back from the record files the bolt tasks write (see topos_common.py). Each test
runs a finite spout to completion, stops the topology cleanly and checks the
final records exactly, so a tuple delivered twice or to a wrong task shows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import topos_groupings as tg
from itest_support import wait_for
from topos_common import COUNT, RECORD_DIR, read_records

from storm import LocalCluster, LocalTopology, Topology

pytestmark = pytest.mark.timeout(90)


def run_to_end(cluster: LocalCluster, topology: type[Topology], record_dir: Path, count: int,
               expect: dict[str, int]) -> tuple[LocalTopology, dict[str, dict[int, dict[str, Any]]]]:
    """Run `topology` with a finite spout of `count` numbers until each component
    in `expect` has received its expected number of tuples in total, stop it
    cleanly and return the final records of those components."""
    topo = cluster.submit(topology, config={RECORD_DIR: str(record_dir), COUNT: count})
    assert len(topo.pids()) == 2

    def received(component: str) -> int:
        return sum(r["count"] for r in read_records(record_dir, component).values())

    for component, total in expect.items():
        wait_for(topo, lambda c=component, t=total: received(c) >= t,
                 f"'{component}' received {total} tuples")
    topo.stop()
    assert topo.stopped.is_set()
    final = {c: read_records(record_dir, c) for c in expect}
    for component, recs in final.items():
        tasks = topo.spec.components[component].tasks
        assert sorted(recs) == tasks, f"every task of '{component}' writes a record"
        # a clean stop calls cleanup() on every bolt, which writes the final record
        assert all(r["final"] for r in recs.values()), f"cleanup() of every '{component}' task ran"
    assert not topo.recent_errors()
    return topo, final


def workers_of(recs: dict[int, dict[str, Any]]) -> set[int]:
    """Workers whose tasks received at least one tuple."""
    return {r["worker"] for r in recs.values() if r["count"]}


def remote_sources(rec: dict[str, Any]) -> set[int]:
    return {int(s) for s in rec["sources"]} - set(rec["worker_tasks"])


def test_fields_grouping_sends_each_key_to_exactly_one_task(cluster: LocalCluster, record_dir: Path) -> None:
    n = 4000
    topo, final = run_to_end(cluster, tg.FieldsTopology, record_dir, n, {"record": n})
    recs = final["record"]
    owners: dict[str, list[int]] = {}
    for task, rec in recs.items():
        for key in rec["keys"]:
            owners.setdefault(key, []).append(task)
    assert sorted(owners) == sorted(f"k{i}" for i in range(tg.KEYS))
    shared = {k: tasks for k, tasks in owners.items() if len(tasks) > 1}
    assert not shared, f"keys seen by more than one task: {shared}"
    totals = {k: sum(r["keys"].get(k, 0) for r in recs.values()) for k in owners}
    assert set(totals.values()) == {n // tg.KEYS}
    assert workers_of(recs) == {0, 1}
    # Both spout tasks (one per worker) emit every key (KeySpout), and no key was
    # seen by two tasks above: the two processes routed each key alike, so the
    # hash is stable across processes; tuples crossed between workers both ways.
    spout_tasks = topo.spec.components["keys"].tasks
    for rec in recs.values():
        if rec["count"]:
            assert sorted(int(s) for s in rec["sources"]) == spout_tasks
    assert {r["worker"] for r in recs.values() if remote_sources(r)} == {0, 1}


def test_all_grouping_gives_every_task_every_tuple(cluster: LocalCluster, record_dir: Path) -> None:
    n = 1000
    _, final = run_to_end(cluster, tg.AllTopology, record_dir, n, {"every": 4 * n})
    everything = {str(i): 1 for i in range(n)}
    for task, rec in final["every"].items():
        assert rec["keys"] == everything, f"task {task} got each tuple exactly once"
    assert workers_of(final["every"]) == {0, 1}


def test_global_grouping_sends_everything_to_the_lowest_task(cluster: LocalCluster, record_dir: Path) -> None:
    n = 1000
    topo, final = run_to_end(cluster, tg.GlobalTopology, record_dir, n, {"lowest": n})
    recs = final["lowest"]
    lowest = min(topo.spec.components["lowest"].tasks)
    assert recs[lowest]["keys"] == {str(i): 1 for i in range(n)}
    assert {t: r["count"] for t, r in recs.items() if t != lowest} == {t: 0 for t in recs if t != lowest}
    # both spout tasks, one in each worker, fed it
    assert sorted(int(s) for s in recs[lowest]["sources"]) == topo.spec.components["nums"].tasks


def test_direct_grouping_reaches_only_the_chosen_tasks(cluster: LocalCluster, record_dir: Path) -> None:
    n = 1000
    topo, final = run_to_end(cluster, tg.DirectTopology, record_dir, n,
                             {"director": n, "by_spout": n, "by_bolt": n})
    spec = topo.spec
    for component, chosen in [("by_spout", [spec.components["by_spout"].tasks[0], spec.components["by_spout"].tasks[-1]]),
                              ("by_bolt", spec.components["by_bolt"].tasks[1:3])]:
        recs = final[component]
        for i, task in enumerate(chosen):
            assert recs[task]["keys"] == {str(m): 1 for m in range(n) if m % 2 == i}, (component, task)
        others = {t: r["count"] for t, r in recs.items() if t not in chosen}
        assert set(others.values()) == {0}, f"{component}: unchosen tasks received tuples: {others}"
        assert workers_of(recs) == {0, 1}
    # emit(..., direct_task=t) returned [t], in the spout and in the bolt
    for component in ("source", "director"):
        recs = read_records(record_dir, component)
        assert recs and all(r["bad_returns"] == [] for r in recs.values()), component


def test_local_or_shuffle_stays_in_the_emitters_worker(cluster: LocalCluster, record_dir: Path) -> None:
    n = 2000
    topo, final = run_to_end(cluster, tg.LocalOrShuffleTopology, record_dir, n, {"near": n})
    recs = final["near"]
    for task, rec in recs.items():
        assert rec["count"] > 0, f"task {task} got no tuples (shuffle over the local tasks)"
        assert not remote_sources(rec), f"task {task} got tuples from another worker: {rec['sources']}"
    per_worker = {w: sum(r["count"] for r in recs.values() if r["worker"] == w) for w in (0, 1)}
    assert per_worker == {0: n // 2, 1: n // 2}


def test_custom_grouping_across_workers(cluster: LocalCluster, record_dir: Path) -> None:
    n = 1000
    topo, final = run_to_end(cluster, tg.CustomTopology, record_dir, n, {"fan": 2 * n})
    tasks = topo.spec.components["fan"].tasks
    recs = final["fan"]
    for i, task in enumerate(tasks):
        # ModFanout(fanout=2) sends n to tasks[n % 4] and tasks[(n + 1) % 4]
        expected = {str(m): 1 for m in range(n) if i in (m % 4, (m + 1) % 4)}
        assert recs[task]["keys"] == expected, f"task {task}"
    assert {r["worker"] for r in recs.values() if remote_sources(r)} == {0, 1}
