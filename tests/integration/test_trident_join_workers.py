"""A Trident join on real workers (trident_topos_join): two spouts joined
within each batch, through a step that fails random batches and a kill -9 of
a worker mid-run; the per-ad pair counts end EXACTLY equal to the true join
counts (a replayed batch joins the same tuples again, and its txid is applied
once). Prints its figures (run with -s)."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import pytest
import trident_topos_join as tj
from itest_support import stats, wait_for
from trident_topos_harness import check_commit_order

from storm import LocalCluster
from storm.trident import MetaStore, SQLiteState

TARGET = str(Path(tj.__file__).resolve()) + ":joined"


def _committed(meta: Path) -> int:
    if not meta.exists():
        return 0
    m = MetaStore(str(meta))
    try:
        return m.committed("TridentJoin")
    finally:
        m.close()


def _pairs(factory: SQLiteState) -> Counter[int]:
    try:
        raw = factory.read_all()
    except Exception:  # the table may not exist yet
        return Counter()
    return Counter({json.loads(k)[0]: v for k, v in raw.items()})


@pytest.mark.timeout(120)
def test_joined_counts_are_exact_through_failed_batches_and_a_kill(cluster: LocalCluster, tmp_path: Path) -> None:
    n, size = 12_000, 50
    meta = tmp_path / "meta.sqlite"
    conf = {tj.ROWS: n, tj.BATCH: size, tj.STATE: str(tmp_path / "pairs.sqlite"), tj.FAIL: 0.0002,
            "topology.trident.meta.path": str(meta)}
    factory = SQLiteState(conf[tj.STATE], "pairs")
    expected = tj.expected_pairs(n, size)
    total = sum(expected.values())
    started = time.monotonic()
    topo = cluster.submit(TARGET, config=conf)
    wait_for(topo, lambda: _committed(meta) >= 10, "ten batches committed")
    w = topo.workers[1]
    restarts = w.restarts
    killed_at = _committed(meta)
    topo.kill_worker(1)
    wait_for(topo, lambda: w.restarts == restarts + 1 and w.ready, "worker 1 restarted")
    wait_for(topo, lambda: sum(_pairs(factory).values()) >= total, "the state reached the true total",
             timeout=90)
    at = _committed(meta)
    wait_for(topo, lambda: _committed(meta) >= at + 3, "three more batches committed", timeout=30)
    elapsed = time.monotonic() - started
    failed = stats(topo)["trident-coord"].failed
    topo.stop()
    got = _pairs(factory)
    assert got == expected, f"differ (ad: got, true): {[(a, got[a], expected[a]) for a in expected if got[a] != expected[a]][:10]}"
    ncommits, again = check_commit_order(factory)
    print(f"\njoin: {n} clicks x {n} views, {total} joined pairs exactly counted in {elapsed:.1f}s; "
          f"killed worker 1 at txid {killed_at}; coordinator trees failed {failed}; commits {ncommits}, "
          f"re-applied {again}")
    assert failed > 0, "no batch failed: the test proved little"
