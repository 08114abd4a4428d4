"""Backpressure across workers: a spout that emits as fast as it can, in one
worker, feeding a bolt that needs ~1 ms per tuple, in the other. The framework
must slow the spout down instead of queueing without bound (the memory of both
workers stays flat once the bounded queues are full) and must not drop anything
(the bolt sees every sequence number, in order)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import psutil
import pytest
import topos_flow
from itest_support import stats, wait_for
from topos_common import RECORD_DIR, read_records

from storm import LocalCluster, LocalTopology

RUN_SECS = 15.0
RELAY_RUN_SECS = 10.0
WARMUP_SECS = 5.0
SAMPLE_SECS = 0.25
MB = 1024 * 1024
# Memory: what may legitimately be queued is bounded by configuration (see
# queued_bound below: ~59,000 tuples with the defaults). At a few hundred bytes
# per queued tuple (a 100-byte payload, its list, str and int objects, a Tuple)
# that is at most ~30 MB per worker, most of it reached during warm-up. Without
# backpressure the spout (well over 50,000 tuples/s here) outruns the bolt
# (< 1,000/s) by hundreds of MB in 15 s. 100 MB separates the two cases with
# room for allocator noise.
GROWTH_LIMIT_MB = 100
FRAMES_PER_POLL = 64  # batches a worker reads in one poll (storm/_transport.py)


def queued_bound(conf: dict[str, Any]) -> int:
    """Most tuples that may sit between the spout and the bolt's execute."""
    batch = int(conf["topology.transfer.batch.size"])
    return (2 * int(conf["topology.transfer.hwm"]) * batch  # sender's and receiver's ZeroMQ queues
            + int(conf["topology.executor.receive.buffer.size"])  # the bolt's input queue ...
            + FRAMES_PER_POLL * batch  # ... overfilled by at most one poll
            + 20 * batch)  # kernel socket buffers, the sender's blocked batch, partial batches


def run_flood(topo: LocalTopology, record_dir: Path, slow_task: int, hops: int, secs: float,
              warmup: float) -> dict[str, Any]:
    """Let the flood run for `secs` seconds, sampling each worker's RSS, then check
    and return the slow bolt's record: memory flat after `warmup`, nothing lost,
    no more tuples in flight than `hops` links' queues can hold."""
    pids = topo.pids()
    assert len(pids) == topo.num_workers
    procs = [psutil.Process(p) for p in pids]

    def received() -> int:
        recs = read_records(record_dir, "b_slow" if hops == 1 else "c_slow")
        return recs[slow_task]["received"] if slow_task in recs else 0

    wait_for(topo, lambda: received() > 0, "the slow bolt received tuples")
    start = time.monotonic()
    samples: list[tuple[float, list[int]]] = []
    while (t := time.monotonic() - start) < secs:
        samples.append((t, [p.memory_info().rss for p in procs]))
        time.sleep(SAMPLE_SECS)  # the sampling cadence, not a wait for a condition

    component = topo.spec.task_component[slow_task]
    rec = read_records(record_dir, component)[slow_task]
    emitted = stats(topo)["a_flood"].emitted
    assert topo.pids() == pids and all(w.restarts == 0 for w in topo.workers)
    in_flight, bound = emitted - rec["received"], hops * queued_bound(topo.spec.config)
    print(f"\n{component} received {rec['received']} tuples in ~{secs + 1:.0f}s; the spout emitted "
          f"{emitted} (last report); in flight ~{in_flight} (the queues hold at most {bound})")
    after = [rss for t, rss in samples if t >= warmup]
    growths = []
    for i, pid in enumerate(pids):
        series = [rss[i] for _, rss in samples]
        base = after[0][i]
        growth = max(rss[i] for rss in after) - base
        growths.append(growth)
        print(f"worker {i} (pid {pid}): RSS start {series[0] / MB:.1f} MB, at warm-up end "
              f"{base / MB:.1f} MB, peak {max(series) / MB:.1f} MB, end {series[-1] / MB:.1f} MB, "
              f"growth after warm-up {growth / MB:.1f} MB")
    for i, growth in enumerate(growths):
        assert growth < GROWTH_LIMIT_MB * MB, f"worker {i} grew {growth / MB:.1f} MB after warm-up"
    assert in_flight < bound, f"{in_flight} tuples in flight, more than the queues hold ({bound})"
    assert rec["received"] > 1000
    assert rec["missing"] == 0 and rec["out_of_order"] == 0, rec["first_problem"]
    assert rec["corrupt"] == 0
    return rec


@pytest.mark.timeout(120)
def test_slow_bolt_bounds_memory_and_loses_nothing(cluster: LocalCluster, record_dir: Path) -> None:
    topo = cluster.submit(topos_flow.Flood, config={RECORD_DIR: str(record_dir)})
    # the spout alone in worker 0, the bolt alone in worker 1
    assert topo.spec.assign(2) == {1: 0, 2: 1}
    assert topo.spec.task_component == {1: "a_flood", 2: "b_slow"}
    rec = run_flood(topo, record_dir, slow_task=2, hops=1, secs=RUN_SECS, warmup=WARMUP_SECS)
    assert rec["last"] == {"1": rec["received"] - 1}  # from spout task 1, gap-free
    # The bolt's backlog (~16,000 tuples at ~1 ms each) cannot drain within a
    # clean-stop grace period; do not wait the default 10 s for the kill.
    topo.stop(timeout=2)


@pytest.mark.timeout(120)
def test_backpressure_propagates_through_a_relay_worker(cluster: LocalCluster, record_dir: Path) -> None:
    topo = cluster.submit(topos_flow.RelayedFlood, config={RECORD_DIR: str(record_dir)})
    # spout, relay and slow bolt each alone in one of 3 workers
    assert topo.spec.assign(3) == {1: 0, 2: 1, 3: 2}
    assert topo.spec.task_component == {1: "a_flood", 2: "b_relay", 3: "c_slow"}
    try:
        rec = run_flood(topo, record_dir, slow_task=3, hops=2, secs=RELAY_RUN_SECS, warmup=WARMUP_SECS)
        assert rec["last"] == {"2": rec["received"] - 1}  # via relay task 2, gap-free
    finally:
        topo.stop(timeout=2)
