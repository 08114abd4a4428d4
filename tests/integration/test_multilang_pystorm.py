"""Multi-lang compatibility on real worker processes: unmodified pystorm Spout
and Bolt subclasses (JSON and msgpack serializers) and a plain-JavaScript bolt
run inside our topologies with acking on. Every number is acked exactly once
at the pystorm spout, numbers the pystorm bolt fails are replayed, and a child
that exits or hangs is restarted with its pending tuples failed and replayed. A
fail or a missing ack in a Python bolt after a pystorm bolt reaches the pystorm
spout, which replays the number (the shell bolt's emits keep their anchors)."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import multilang_topos_pystorm as topos
import pytest
from itest_support import diagnostics, stats, wait_for
from preconditions import require_binary, require_module

from storm import LocalCluster, LocalTopology

require_module("pystorm", "pip install pystorm (a test extra: pip install -e .[test])")
FINISH_TIMEOUT = 60.0


def run_until_all_acked(cluster: LocalCluster, topology: type, record_dir: Path, count: int,
                        **config: Any) -> tuple[LocalTopology, float]:
    conf = {topos.RECORD_DIR: str(record_dir), "mltest.count": count, **config}
    t0 = time.monotonic()
    topo = cluster.submit(topology, config=conf)
    wait_for(topo, lambda: len(set(topos.read_acks(record_dir))) >= count,
             f"the pystorm spout got ack() for all {count} numbers", timeout=FINISH_TIMEOUT)
    secs = time.monotonic() - t0
    # The figures arrive with the workers' next metrics report.
    wait_for(topo, lambda: stats(topo)["numbers"].acked >= count,
             "the spout's acked figure reached the count", timeout=10)
    return topo, secs


def check_exact(record_dir: Path, count: int, width: int) -> Counter[int]:
    acks = Counter(topos.read_acks(record_dir))
    assert sorted(acks) == list(range(count)), f"acked ids differ: {sorted(set(range(count)) ^ set(acks))[:10]}"
    twice = {n: c for n, c in acks.items() if c != 1}
    assert not twice, f"ids acked more than once: {twice}"
    rows = topos.read_sink(record_dir)
    seen = Counter(r[0] for r in rows)
    assert set(seen) == set(range(count)), f"the sink missed {sorted(set(range(count)) - set(seen))[:10]}"
    for r in rows:
        assert len(r) == width and r[1] == r[0] * r[0], f"bad row {r}"
        if width == 3:
            assert r[2] == 2 * r[0], f"bad row {r}"
    return seen


@pytest.mark.timeout(90)
def test_pystorm_json_and_javascript_bolt(cluster: LocalCluster, record_dir: Path) -> None:
    require_binary("node", "apt-get install nodejs")
    count = 300
    topo, secs = run_until_all_acked(cluster, topos.PystormJson, record_dir, count)
    seen = check_exact(record_dir, count, width=3)
    # every multiple of 7 was failed once by the pystorm bolt and replayed
    wait_for(topo, lambda: stats(topo)["square"].failed >= len(range(0, count, 7)),
             "the square bolt's failed figure counts every multiple of 7", timeout=10)
    s = stats(topo)
    assert s["numbers"].failed >= len(range(0, count, 7)), diagnostics(topo)
    assert s["numbers"].acked == count
    assert sum(seen.values()) == count, "nothing failed after the sink, so no duplicates"
    log_text = "".join(Path(w.log_path).read_text(errors="replace") for w in topo.workers)
    assert "double.js ready as task" in log_text, "the child's log command reaches the worker log"
    assert "number spout ready" in log_text
    wait_for(topo, lambda: "double.js got a tick of 0.5s" in "".join(
        Path(w.log_path).read_text(errors="replace") for w in topo.workers),
        "the JavaScript bolt got a tick tuple", timeout=10)
    print(f"\npystorm json + node: {count} numbers, all acked in {secs:.2f}s")


@pytest.mark.timeout(60)
def test_pystorm_msgpack(cluster: LocalCluster, record_dir: Path) -> None:
    count = 200
    topo, secs = run_until_all_acked(cluster, topos.PystormMsgpack, record_dir, count)
    check_exact(record_dir, count, width=2)
    s = stats(topo)
    assert s["numbers"].acked == count
    assert s["numbers"].failed >= len(range(0, count, 5))
    print(f"\npystorm msgpack: {count} numbers, all acked in {secs:.2f}s")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("topology", [topos.ShellAnchoringJson, topos.ShellAnchoringMsgpack],
                         ids=["json", "msgpack"])
def test_a_fail_or_missing_ack_after_a_shell_bolt_reaches_the_spout(
        cluster: LocalCluster, record_dir: Path, topology: type) -> None:
    """The pystorm bolt emits anchored to its input and acks it at once; the bolt
    after it fails some numbers and withholds the ack of others the first time.
    The pystorm spout must see those as failed (at once, or at the message
    timeout) and replay them, so each is delivered to the judge twice."""
    count = 120
    topo, _ = run_until_all_acked(cluster, topology, record_dir, count)
    acks = Counter(topos.read_acks(record_dir))
    assert sorted(acks) == list(range(count)) and set(acks.values()) == {1}, acks
    judged = Counter(topos.read_judged(record_dir))
    failed = [n for n in range(count) if n % 7 == 0]
    withheld = [n for n in range(count) if n % 7 and n % 11 == 0]
    not_replayed = [n for n in failed + withheld if judged[n] < 2]
    assert not not_replayed, (
        f"numbers the judge failed or left unacked were not replayed by the spout: {not_replayed}"
        f" (the shell bolt's emits lost their anchors?)\n{diagnostics(topo)}")
    wait_for(topo, lambda: stats(topo)["numbers"].failed >= len(failed) + len(withheld),
             "the spout's failed figure counts every failed and every withheld number", timeout=10)
    assert stats(topo)["numbers"].acked == count


@pytest.mark.timeout(90)
def test_child_that_exits_or_hangs_is_restarted(cluster: LocalCluster, record_dir: Path) -> None:
    count = 150
    topo, secs = run_until_all_acked(cluster, topos.PystormCrashy, record_dir, count)
    check_exact(record_dir, count, width=2)
    assert (record_dir / "crash-40").exists() and (record_dir / "hang-90").exists()
    errors = [e["error"] for e in topo.recent_errors()]
    assert any("closed its stdout" in e for e in errors), errors
    assert any("no heartbeat answer" in e for e in errors), errors
    log_text = "".join(Path(w.log_path).read_text(errors="replace") for w in topo.workers)
    assert "square bolt crashing on 40" in log_text, "the child's stderr goes to the worker log"
    assert stats(topo)["numbers"].acked == count
    print(f"\ncrash + hang: {count} numbers, all acked in {secs:.2f}s")


@pytest.mark.timeout(60)
def test_spout_child_that_exits_is_restarted(cluster: LocalCluster, record_dir: Path) -> None:
    count = 150
    topo, secs = run_until_all_acked(cluster, topos.PystormSpoutRestart, record_dir, count)
    assert (record_dir / "spout-crashed").exists()
    # Acked at least once (the tuples in flight when the child died were
    # re-emitted by its successor; their first trees still complete).
    assert set(topos.read_acks(record_dir)) == set(range(count))
    assert {r[0] for r in topos.read_sink(record_dir)} == set(range(count))
    errors = [e["error"] for e in topo.recent_errors()]
    assert any("closed its stdout" in e and "restarting it" in e for e in errors), errors
    assert len(list(record_dir.glob("acks-*.log"))) == 2, "two spout children wrote acks"
    print(f"\nspout child restart: {count} numbers, all acked in {secs:.2f}s")
