"""`storm upgrade` and stateful bolts, on a live cluster (real nimbus,
supervisor and worker processes). The topologies checkpoint every 10 minutes,
so within a test only the checkpoint the upgrade asks for can save their state
and release the inputs' acks:

- a rolling upgrade checkpoints before it stops each worker: the committed
  counts are exact afterwards and every number is acked;
- a checkpoint that never commits (a bolt that cannot save its state) stops
  the upgrade before any worker is stopped, and says why;
- `--rebalance` applies a layout change (a component added that renumbers
  every task, one renamed) with a stop of every worker, and the component that
  kept its name keeps its state: it goes on counting from it."""

from __future__ import annotations

from pathlib import Path

import pytest
from daemon_topos_harness import Daemons, wait_until
from daemon_topos_parts import read_numbers
from test_upgrade_cluster import TOPOS, committed_counts, tags, worker_targets

N = 600
FAST_UPGRADE = {"nimbus.upgrade.healthy.secs": 1.0}


def start_counting(d: Daemons, state_dir: Path, target: str = "SlowV1") -> None:
    """The counting topology on `target`, every number counted (and none acked: no checkpoint yet)."""
    d.start_nimbus()
    d.start_supervisor("sup", slots=3)
    d.submit(f"{TOPOS}:{target}", **{"topology.name": "Counting", "itest.count": N, "itest.rate": 400,
                                     "topology.state.dir": str(state_dir)})
    d.wait_running("Counting", 2)
    wait_until(lambda: tags(d.record_dir).get("v1", set()) >= set(range(N)), "every number counted", 60,
               d.diagnostics)
    assert not read_numbers(d.record_dir, "acks"), "a checkpoint committed before the upgrade asked for one"
    assert committed_counts(state_dir) == {}


def worker_pids(d: Daemons) -> list[int]:
    return sorted(p.pid for p in d.worker_processes())


@pytest.mark.timeout(150)
def test_a_rolling_upgrade_checkpoints_before_it_stops_each_worker(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    with Daemons(tmp_path, FAST_UPGRADE) as d:
        start_counting(d, state_dir)
        r = d.storm("upgrade", "Counting", f"{TOPOS}:SlowV2", "--dry-run")
        assert r.returncode == 0 and "checkpoint (stateful bolts save their state), stop, start on the new code" \
            in r.stdout, r.stdout + r.stderr

        r = d.storm("upgrade", "Counting", f"{TOPOS}:SlowV2", "--wait", timeout=120)
        assert r.returncode == 0 and "runs code v2 on every worker" in r.stdout, r.stdout + r.stderr + d.diagnostics()
        assert worker_targets(d) == ["SlowV2", "SlowV2"]
        assert committed_counts(state_dir) == {f"k{i}": N // 10 for i in range(10)}, "each number counted once"
        wait_until(lambda: set(read_numbers(d.record_dir, "acks")) == set(range(N)), "every number acked", 30,
                   d.diagnostics)
        nimbus_log = d.logs["nimbus"].read_text()
        assert nimbus_log.count("committed; replacing worker") == 2, nimbus_log[-3000:]


@pytest.mark.timeout(120)
def test_an_upgrade_whose_checkpoint_never_commits_stops_no_worker(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    with Daemons(tmp_path, {**FAST_UPGRADE, "nimbus.upgrade.checkpoint.timeout.secs": 6.0}) as d:
        start_counting(d, state_dir, "SlowStuck")
        pids = worker_pids(d)
        r = d.storm("upgrade", "Counting", f"{TOPOS}:SlowV2", "--wait", timeout=90)
        assert r.returncode == 2, r.stdout + r.stderr
        for needle in ("failed and was rolled back", "the checkpoint asked for before stopping worker",
                       "did not commit within 6s", "nimbus.upgrade.checkpoint.timeout.secs", "nothing was stopped"):
            assert needle in r.stderr, r.stderr
        assert worker_pids(d) == pids, "a worker was stopped although its state was not saved"
        assert worker_targets(d) == ["SlowStuck", "SlowStuck"]
        r = d.storm("list")
        assert " v1 " in r.stdout and "rolled back" in r.stdout, r.stdout


@pytest.mark.timeout(150)
def test_rebalance_applies_a_layout_change_with_a_stop_and_keeps_the_state(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    with Daemons(tmp_path, FAST_UPGRADE) as d:
        start_counting(d, state_dir)
        pids = worker_pids(d)
        r = d.storm("upgrade", "Counting", f"{TOPOS}:Relaid")
        assert r.returncode == 2, r.stdout + r.stderr
        for needle in ("cannot upgrade 'Counting' live", "component 'audit' is new", "component 'sink' is new",
                       "component 'record' is gone", "give --rebalance"):
            assert needle in r.stderr, r.stderr

        r = d.storm("upgrade", "Counting", f"{TOPOS}:Relaid", "--rebalance", "--dry-run")
        assert r.returncode == 0, r.stdout + r.stderr
        for needle in ("plan (dry run, nothing changed)", "code v1 -> v2", "component 'audit' is new",
                       "1. checkpoint", "stop all 2 worker(s)", "state restored for count"):
            assert needle in r.stdout, r.stdout
        assert worker_pids(d) == pids and worker_targets(d) == ["SlowV1", "SlowV1"]

        r = d.storm("upgrade", "Counting", f"{TOPOS}:Relaid", "--rebalance", "--wait", "-c", f"itest.count={2 * N}",
                    timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr + d.diagnostics()
        assert "every worker of the topology stops (--rebalance)" in r.stdout, r.stdout
        assert "runs code v2 on every worker" in r.stdout, r.stdout
        assert worker_targets(d) == ["Relaid", "Relaid"]
        assert not set(pids) & set(worker_pids(d))

        # Numbers N..2N-1 come on the new code; count goes on from the state it saved before the stop.
        wait_until(lambda: set(read_numbers(d.record_dir, "acks")) == set(range(2 * N)), "every number acked", 60,
                   d.diagnostics)
        assert committed_counts(state_dir) == {f"k{i}": 2 * N // 10 for i in range(10)}
        assert sorted(p.name for p in (state_dir / "Counting").glob("count-*.sqlite")) == [
            "count-2.sqlite", "count-3.sqlite"], "count's tasks (now 3 and 4) kept their stores"
        assert tags(d.record_dir).get("v2", set()) >= set(range(N, 2 * N))
        r = d.storm("list")
        assert " v2 " in r.stdout, r.stdout
