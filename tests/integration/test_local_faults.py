"""Fault injection on real worker processes: a storm.testing.Faults given to
LocalCluster.submit reaches every worker, is applied through the task hooks
there, and what it did comes back (topology.faults(), topology.replayed()).
The count bolt of topos_faults crashes on some inputs and loses others (a
short message timeout), and still every message is acked exactly once at the
spout and every word is counted exactly once (the bolt counts a number once,
so a replay cannot count twice)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import topos_faults
from itest_support import wait_for
from test_reliability import check_acked_exactly_once
from topos_common import RECORD_DIR, read_records
from topos_faults import (
    crash_on,
    delay_on,
    drop_on,
    duplicate_on,
    expected_counts,
    fail_on,
    raise_on,
    word_of,
)

from storm import LocalCluster, LocalTopology, StormError
from storm.spouts import SUMMARY_DIR_KEY
from storm.testing import Faults

COUNT = 300


def summary(record_dir: Path) -> dict[str, Any]:
    """The spout's summary file (storm.spouts; the spout is task 3)."""
    path = record_dir / "numbers-3.json"
    return json.loads(path.read_text()) if path.exists() else {}


def run(cluster: LocalCluster, record_dir: Path, faults: Faults, **config: Any) -> tuple[LocalTopology,
                                                                                       dict[str, Any]]:
    conf = {RECORD_DIR: str(record_dir), SUMMARY_DIR_KEY: str(record_dir), topos_faults.COUNT: COUNT,
            **config}
    topo = cluster.submit(topos_faults.Counting, config=conf, faults=faults)
    assert topo.spec.components["numbers"].tasks == [3]
    wait_for(topo, lambda: summary(record_dir).get("finished") is True, "every message settled",
             timeout=60)
    topo.stop()
    return topo, summary(record_dir)


def counted(record_dir: Path) -> tuple[Counter[str], int]:
    records = read_records(record_dir, "count")
    assert len(records) == 2 and all(r["final"] for r in records.values()), records
    counts: Counter[str] = Counter()
    for r in records.values():
        counts.update(r["counts"])
    return counts, sum(r["executed"] for r in records.values())


@pytest.mark.timeout(60)
def test_crashes_and_drops_in_worker_processes_lose_nothing(cluster: LocalCluster, record_dir: Path) -> None:
    faults = Faults().crash("count", where=crash_on, times=2).drop("count", where=drop_on, times=2)
    topo, s = run(cluster, record_dir, faults)

    events = topo.faults()
    assert Counter(e.kind for e in events) == {"crash": 2, "drop": 2}, events
    count_tasks = topo.spec.components["count"].tasks
    for e in events:
        assert e.component == "count" and e.task in count_tasks and e.source == "numbers"
        assert e.worker in (0, 1) and e.at > 0
        n = e.values[0]
        assert n % 50 == (3 if e.kind == "crash" else 10), e
    check_acked_exactly_once(record_dir, COUNT)
    counts, _ = counted(record_dir)
    assert counts == expected_counts(COUNT)
    # times=2 held over both workers: each count task (one per worker) got
    # numbers the crash rule matches.
    assignment = topo.spec.assign(2)
    assert {assignment[t] for t in count_tasks} == {0, 1}
    crash_words = {word_of(n) for n in range(COUNT) if n % 50 == 3}
    for rec in read_records(record_dir, "count").values():
        assert crash_words & set(rec["counts"]), rec

    replayed = topo.replayed("numbers")
    assert {e.values[0] for e in events} <= set(replayed), (events, replayed)
    assert len(replayed) == s["replays"] and s["failed"] >= 4 and s["acked"] == COUNT
    injected = [e for e in topo.recent_errors() if "InjectedFault" in e["error"]]
    assert len(injected) == 2 and {e["component"] for e in injected} == {"count"}


@pytest.mark.timeout(60)
def test_duplicate_delay_and_fail_in_worker_processes(cluster: LocalCluster, record_dir: Path) -> None:
    faults = (Faults().duplicate("count", where=duplicate_on).delay("count", 0.5, where=delay_on)
              .fail("count", where=fail_on).crash("count", where=raise_on))
    # Nothing here needs a timeout: a long one keeps a slow machine from replaying.
    topo, s = run(cluster, record_dir, faults, **{"topology.message.timeout.secs": 30})

    events = topo.faults()
    assert sorted((e.kind, e.values[0]) for e in events) == [("delay", 30), ("duplicate", 20), ("fail", 40)]
    check_acked_exactly_once(record_dir, COUNT)
    counts, executed = counted(record_dir)
    assert counts == expected_counts(COUNT)
    # The duplicate is executed twice; the failed one is not executed, its replay is.
    assert executed == COUNT + 1
    assert topo.replayed("numbers") == [40] and s["replays"] == 1
    # A where= that raised was recorded as the bolt's error; the worker went on.
    bad = [e for e in topo.recent_errors() if e["where"] == "fault where="]
    assert bad and "ValueError: a where= that raises" in bad[0]["error"]
    assert all(w.restarts == 0 for w in topo.workers)


def test_rules_workers_cannot_import_are_refused_before_any_worker_starts(cluster: LocalCluster,
                                                                          record_dir: Path) -> None:
    def local_predicate(tup: Any) -> bool:
        return True

    conf = {RECORD_DIR: str(record_dir), topos_faults.COUNT: 10}
    with pytest.raises(StormError, match=r"crash\('count'\): where= is a lambda .*module level"):
        cluster.submit(topos_faults.Counting, config=conf, faults=Faults().crash("count", where=lambda t: True))
    with pytest.raises(StormError, match=r"drop\('count'\): where= is .*local_predicate, a function defined "
                                         r"inside a function \(a closure\)"):
        cluster.submit(topos_faults.Counting, config=conf, faults=Faults().drop("count", where=local_predicate))
    with pytest.raises(StormError, match="'nope', which is not a bolt"):
        cluster.submit(topos_faults.Counting, config=conf, faults=Faults().drop("nope"))
    with pytest.raises(StormError, match="faults= takes a storm.testing.Faults"):
        cluster.submit(topos_faults.Counting, config=conf, faults=[("drop", "count")])  # type: ignore[arg-type]
    assert cluster.topologies == {}
    assert not list((Path(cluster.local_dir)).glob("*/faults.json"))


@pytest.mark.timeout(60)
def test_rules_hold_across_a_worker_killed_and_restarted(cluster: LocalCluster, record_dir: Path) -> None:
    # Worker 1 holds count task 2 and an acker; the spout (task 3) is in worker 0.
    count = 600
    conf = {RECORD_DIR: str(record_dir), SUMMARY_DIR_KEY: str(record_dir), topos_faults.COUNT: count,
            topos_faults.RATE: 300}
    topo = cluster.submit(topos_faults.Counting, config=conf, faults=Faults().crash("count", where=crash_on,
                                                                                     times=3))
    assert topo.spec.assign(2)[2] == 1 and topo.spec.assign(2)[3] == 0
    kill = topo.kill_worker_when(1, acked=200, component="numbers")
    assert kill.wait(30), "the planned kill did not happen"
    wait_for(topo, lambda: summary(record_dir).get("finished") is True, "every message settled", timeout=60)
    topo.stop()
    assert topo.workers[1].restarts == 1
    check_acked_exactly_once(record_dir, count)
    # times=3 counted over both workers and both incarnations of worker 1:
    # the restarted worker found the rule's fires used up in the shared file.
    events = topo.faults()
    assert [e.kind for e in events] == ["crash"] * 3 and all(e.values[0] % 50 == 3 for e in events)
    replayed = topo.replayed("numbers")
    assert {e.values[0] for e in events} <= set(replayed)
    assert len(replayed) == summary(record_dir)["replays"]
