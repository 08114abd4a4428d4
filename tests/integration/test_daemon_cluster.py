"""Cluster mode on one host: real `storm nimbus` and `storm supervisor` processes
(SQLite state), topologies submitted to them, worker processes checked with
psutil. Each test starts its own daemons on free ports under its tmp_path and
kills everything it started, whatever happens (daemon_topos_harness.Daemons)."""

from __future__ import annotations

import json
import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import psutil
import pytest
from daemon_topos_harness import Daemons, wait_until
from daemon_topos_parts import read_numbers

REPO = Path(__file__).resolve().parents[2]
WORDCOUNT = REPO / "topologies" / "wordcount.py"


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[Daemons]:
    with Daemons(tmp_path) as d:
        yield d


def all_acked(d: Daemons, count: int) -> bool:
    return set(read_numbers(d.record_dir, "acks")) >= set(range(count))


def check_nothing_lost(d: Daemons, count: int) -> None:
    acks = read_numbers(d.record_dir, "acks")
    missing = sorted(set(range(count)) - set(acks))
    assert not missing, f"{len(missing)} numbers never acked, e.g. {missing[:10]}"
    seen = read_numbers(d.record_dir, "sink")
    missing = sorted(set(range(count)) - set(seen))
    assert not missing, f"the sink never saw {len(missing)} numbers, e.g. {missing[:10]}"


@pytest.mark.timeout(120)
def test_wordcount_on_two_supervisors_list_and_kill(daemons: Daemons, tmp_path: Path) -> None:
    d = daemons
    d.start_nimbus()
    d.start_supervisor("sup-a")
    d.start_supervisor("sup-b")
    out = tmp_path / "counts.json"
    r = d.storm("submit", str(WORDCOUNT), "--name", "wc", "-c", "topology.workers=2",
                "-c", "wordcount.repeat=200", "-c", f"wordcount.output={out}")
    assert r.returncode == 0, r.stderr
    assert "submitted topology 'wc'" in r.stdout
    workers = d.wait_running("wc", 2)
    # spread evenly: one worker on each supervisor
    assert len({w["supervisor"] for w in workers}) == 2
    r = d.storm("list")
    assert r.returncode == 0, r.stderr
    row = next(line for line in r.stdout.splitlines() if line.strip().startswith("wc "))
    assert "ACTIVE" in row and "2/2" in row, r.stdout

    import importlib.util

    spec = importlib.util.spec_from_file_location("wc_sentences", WORDCOUNT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    expected = dict(Counter(w for s in module.SENTENCES * 200 for w in s.split()))
    wait_until(lambda: out.exists() and json.loads(out.read_text()) == expected,
               "the word counts are exact", 60, d.diagnostics)
    wait_until(lambda: d.info("wc")["components"]["sentences"]["acked"] == len(module.SENTENCES) * 200,
               "every sentence acked", 30, d.diagnostics)
    pids = {w["pid"] for w in workers}
    assert {p.pid for p in d.worker_processes()} == pids

    r = d.storm("kill", "wc", "-w", "0")
    assert r.returncode == 0, r.stderr
    wait_until(lambda: not d.worker_processes(), "every worker process of wc is gone", 30, d.diagnostics)
    gone = [pid for pid in pids if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
    assert not gone
    wait_until(lambda: "no topologies running" in d.storm("list").stdout, "list is empty", 20)


@pytest.mark.timeout(120)
def test_killed_worker_is_restarted_and_every_message_acked(daemons: Daemons) -> None:
    d = daemons
    d.start_nimbus()
    d.start_supervisor("sup-a")
    d.start_supervisor("sup-b")
    count = 3000
    d.submit(**{"topology.workers": 2, "itest.count": count, "itest.rate": 1000})
    workers = d.wait_running("Numbers", 2)
    wait_until(lambda: len(read_numbers(d.record_dir, "acks")) > 300, "acks arrive", 30, d.diagnostics)
    victim = next(w for w in workers if w["index"] == 1)
    os.kill(victim["pid"], signal.SIGKILL)
    wait_until(lambda: any(w["index"] == 1 and w["pid"] != victim["pid"] and w["restarts"] >= 1
                           for w in d.running_workers("Numbers")),
               "the supervisor restarts the killed worker", 30, d.diagnostics)
    wait_until(lambda: all_acked(d, count), "every message acked", 60, d.diagnostics)
    check_nothing_lost(d, count)
    # the other worker was not disturbed
    assert any(w["pid"] == workers[0]["pid"] for w in d.running_workers("Numbers"))


@pytest.mark.timeout(120)
def test_supervisor_killed_with_its_workers_resumes_when_started_again(daemons: Daemons) -> None:
    d = daemons
    d.start_nimbus()
    d.start_supervisor("sup-a", slots=2)
    count = 2500
    d.submit(**{"topology.workers": 2, "itest.count": count, "itest.rate": 800})
    workers = d.wait_running("Numbers", 2)
    wait_until(lambda: len(read_numbers(d.record_dir, "acks")) > 200, "acks arrive", 30, d.diagnostics)
    sup = psutil.Process(d.procs["sup-a"].pid)
    victims = [psutil.Process(w["pid"]) for w in workers]
    for p in [sup, *victims]:
        p.kill()
    psutil.wait_procs([sup, *victims], timeout=10)
    d.procs["sup-a"].wait(5)
    assert not d.worker_processes()
    d.start_supervisor("sup-a", extra={"supervisor.slots.ports": sorted({w["port"] for w in workers})})
    again = d.wait_running("Numbers", 2)
    assert not {w["pid"] for w in again} & {w["pid"] for w in workers}
    wait_until(lambda: all_acked(d, count), "every message acked after the restart", 60, d.diagnostics)
    check_nothing_lost(d, count)


@pytest.mark.timeout(120)
def test_supervisor_killed_alone_adopts_its_running_workers(daemons: Daemons) -> None:
    d = daemons
    d.start_nimbus()
    d.start_supervisor("sup-a")
    d.submit(**{"topology.workers": 1, "itest.rate": 200})
    (worker,) = d.wait_running("Numbers", 1)
    sup = psutil.Process(d.procs["sup-a"].pid)
    sup.kill()
    d.procs["sup-a"].wait(5)
    assert psutil.pid_exists(worker["pid"])
    d.start_supervisor("sup-a", extra={"supervisor.slots.ports": [worker["port"]]})
    (again,) = d.wait_running("Numbers", 1)
    assert again["pid"] == worker["pid"], "the restarted supervisor adopted the worker instead of restarting it"
    before = d.info("Numbers")["components"]["source"]["emitted"]
    wait_until(lambda: d.info("Numbers")["components"]["source"]["emitted"] > before + 50,
               "the adopted worker reports figures", 20, d.diagnostics)


@pytest.mark.timeout(120)
def test_nimbus_restart_leaves_the_workers_running(daemons: Daemons) -> None:
    d = daemons
    d.start_nimbus()
    d.start_supervisor("sup-a")
    d.submit(**{"topology.workers": 2, "itest.rate": 200})
    workers = d.wait_running("Numbers", 2)
    d.stop("nimbus", signal.SIGKILL)
    r = d.storm("list")
    assert r.returncode != 0 and "nimbus is unreachable" in r.stderr
    d.start_nimbus()
    r = d.storm("list")
    assert r.returncode == 0, r.stderr
    assert "Numbers" in r.stdout and "ACTIVE" in r.stdout
    again = d.wait_running("Numbers", 2)
    assert {w["pid"] for w in again} == {w["pid"] for w in workers}
    emitted = d.info("Numbers")["components"]["source"]["emitted"]
    wait_until(lambda: d.info("Numbers")["components"]["source"]["emitted"] > emitted + 50,
               "the topology keeps running", 20, d.diagnostics)
    # the restarted nimbus still acts on the topology
    assert d.storm("kill", "Numbers", "-w", "0").returncode == 0
    wait_until(lambda: not d.worker_processes(), "the workers stop", 30, d.diagnostics)


@pytest.mark.timeout(120)
def test_deactivate_stops_the_spout_and_activate_resumes_it(daemons: Daemons) -> None:
    d = daemons
    d.start_nimbus()
    d.start_supervisor("sup-a")
    d.submit(**{"topology.workers": 1, "itest.rate": 300})
    d.wait_running("Numbers", 1)

    def emitted() -> int:
        return int(d.info("Numbers")["components"]["source"]["emitted"])

    wait_until(lambda: emitted() > 100, "the spout emits", 20, d.diagnostics)
    r = d.storm("deactivate", "Numbers")
    assert r.returncode == 0, r.stderr
    assert "INACTIVE" in d.storm("list").stdout
    # settled: two reports in a row with the same count
    last = [-1]

    def settled() -> bool:
        now = emitted()
        same = now == last[0]
        last[0] = now
        return same

    wait_until(lambda: (time.sleep(1.2), settled())[1], "the spout stops emitting", 20, d.diagnostics)
    stopped_at = emitted()
    time.sleep(1.5)  # a report interval and more: the count must not move
    assert emitted() == stopped_at
    r = d.storm("activate", "Numbers")
    assert r.returncode == 0, r.stderr
    wait_until(lambda: emitted() > stopped_at + 100, "the spout emits again", 20, d.diagnostics)


@pytest.mark.timeout(150)
def test_rebalance_to_two_workers_and_three_relays_loses_nothing(daemons: Daemons) -> None:
    d = daemons
    d.start_nimbus()
    d.start_supervisor("sup-a", slots=2)
    d.start_supervisor("sup-b", slots=2)
    count = 4000
    d.submit(**{"topology.workers": 1, "itest.count": count, "itest.rate": 700})
    (before,) = d.wait_running("Numbers", 1)
    assert d.info("Numbers")["topology"]["components"]["relay"]["par"] == 1
    wait_until(lambda: len(read_numbers(d.record_dir, "acks")) > 500, "acks arrive", 30, d.diagnostics)
    r = d.storm("rebalance", "Numbers", "-w", "1", "-n", "2", "-e", "relay=3")
    assert r.returncode == 0, r.stderr
    assert "2 worker(s)" in r.stdout and "relay=3" in r.stdout
    after = d.wait_running("Numbers", 2, timeout=60)
    assert before["pid"] not in {w["pid"] for w in after}
    info = d.info("Numbers")
    assert info["topology"]["components"]["relay"]["par"] == 3
    assert len({w["supervisor"] for w in after}) == 2
    wait_until(lambda: all_acked(d, count), "every message acked after the rebalance", 60, d.diagnostics)
    check_nothing_lost(d, count)
    # the new relays did the work after the rebalance
    # (their reports reach nimbus a metrics interval and a heartbeat after the work)
    def relays() -> tuple[int, int]:
        relay = d.info("Numbers")["components"]["relay"]
        return relay["tasks"], relay["reporting"]

    wait_until(lambda: relays() == (3, 3), "the three new relays report", 20, lambda: f"relay: {relays()}")


@pytest.mark.timeout(120)
def test_worker_that_cannot_import_is_reported_and_backed_off(daemons: Daemons) -> None:
    d = daemons
    d.start_nimbus()
    d.start_supervisor("sup-a", env={"DAEMON_TOPOS_BREAK_IMPORT": "1"})
    d.submit(**{"topology.workers": 1})

    def listed_error() -> str | None:
        r = d.storm("list")
        return r.stdout if "broken on purpose" in r.stdout else None

    out = wait_until(listed_error, "storm list shows the import error", 30, d.diagnostics)
    assert "Numbers" in out
    def start_times() -> list[datetime]:
        return [datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
                for line in d.logs["sup-a"].read_text().splitlines()
                if "topology Numbers: started worker 0" in line]

    starts = wait_until(lambda: (s := start_times()) and len(s) >= 3 and s,
                        "the supervisor started the broken worker three times", 40, d.diagnostics)
    # The backoff starts at 1 s and doubles: a tight loop (or no doubling) would
    # start it again sooner. Only lower bounds: a slow machine may be later.
    gaps = [(b - a).total_seconds() for a, b in zip(starts, starts[1:], strict=False)]
    assert gaps[0] >= 0.95 and gaps[1] >= 1.95, f"gaps between starts {gaps}\n{d.logs['sup-a'].read_text()}"
    info = d.info("Numbers")
    assert any("broken on purpose" in (e.get("error") or "") for e in info["errors"])
