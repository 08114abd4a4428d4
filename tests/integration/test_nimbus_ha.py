"""Nimbus high availability against a real ZooKeeper: three nimbus processes,
one leads (kazoo's lock recipe); SIGKILL the leader while an acking topology
runs and a follower leads within the session timeout, the topology's workers
keep running (same pids), nothing acked is lost, the CLI finds the new leader
through `nimbus.seeds` (the dead one first), followers refuse changes naming
the leader, and the old leader started again follows."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest
from daemon_topos_harness import NUMBERS, Daemons, free_ports, wait_until
from daemon_topos_parts import read_numbers
from test_daemon_zookeeper import unique_root, zookeeper  # noqa: F401 - the fixture

from storm.daemon._client import NimbusError, NotLeader, request


def _start_nimbus(d: Daemons, key: str, port: int) -> None:
    d._start(key, ["nimbus", *d.args({"nimbus.port": port, "storm.local.dir": str(d.base / key)})])

    def answers() -> bool:
        if d.procs[key].poll() is not None:
            raise AssertionError(f"{key} exited with {d.procs[key].returncode}\n{d.diagnostics()}")
        try:
            request(f"tcp://127.0.0.1:{port}", {"op": "ping"}, 2.0, key)
            return True
        except NimbusError:
            return False

    wait_until(answers, f"{key} answers", 30, d.diagnostics)


def _leader(d: Daemons) -> str | None:
    try:
        reply: dict[str, Any] = d.client.call("nimbuses")
    except NimbusError:
        return None
    return reply["leader"] if reply["leader"] and any(
        n["leader"] and n["alive"] for n in reply["nimbuses"]) else None


@pytest.mark.timeout(180)
def test_leader_killed_a_follower_leads_and_nothing_stops(zookeeper: str, tmp_path: Path) -> None:  # noqa: F811
    ports = free_ports(3)
    conf = {"storm.zookeeper.servers": [zookeeper], "storm.zookeeper.root": unique_root(),
            "storm.zookeeper.session.timeout": 4000,
            "nimbus.seeds": [f"127.0.0.1:{p}" for p in ports]}
    with Daemons(tmp_path, conf) as d:
        keys = {f"127.0.0.1:{p}": f"nimbus-{i}" for i, p in enumerate(ports)}
        for nid, key in keys.items():
            _start_nimbus(d, key, int(nid.rpartition(":")[2]))
        first = wait_until(lambda: _leader(d), "one nimbus leads", 30, d.diagnostics)
        d.start_supervisor("sup", slots=3)
        count = 3000
        d.submit(**{"topology.workers": 2, "itest.count": count, "itest.rate": 300})
        before = {w["pid"] for w in d.wait_running("Numbers", 2)}
        wait_until(lambda: len(read_numbers(d.record_dir, "acks")) > 300, "acks flow", 30, d.diagnostics)

        # followers answer reads and refuse changes, naming the leader
        follower = next(nid for nid in keys if nid != first)
        listed = request(f"tcp://{follower}", {"op": "list"}, 10, "follower")
        assert [t["name"] for t in listed["topologies"]] == ["Numbers"]
        with pytest.raises(NotLeader, match=f"follower and does not kill: the leader is nimbus {first}") as exc:
            request(f"tcp://{follower}", {"op": "kill", "name": "Numbers"}, 10, "follower")
        assert exc.value.leader == first

        d.stop(keys[first], signal.SIGKILL)
        second = wait_until(lambda: (lambda n: n if n not in (None, first) else None)(_leader(d)),
                            "a follower leads", 30, d.diagnostics)
        assert {w["pid"] for w in d.running_workers("Numbers")} == before
        wait_until(lambda: set(read_numbers(d.record_dir, "acks")) >= set(range(count)),
                   "every number acked across the failover", 60, d.diagnostics)
        assert set(read_numbers(d.record_dir, "sink")) >= set(range(count))
        assert {w["pid"] for w in d.running_workers("Numbers")} == before

        r = d.storm("nimbuses")
        rows = {line.split()[0]: line for line in r.stdout.splitlines() if line.strip().startswith("127.0.0.1:")}
        assert r.returncode == 0 and "leader" in rows[second] and " no " in rows[first], r.stdout + r.stderr
        # the CLI goes past the dead seed to the new leader for every change
        r = d.storm("rebalance", "Numbers", "-n", "1", "-w", "0")
        assert r.returncode == 0, r.stdout + r.stderr
        wait_until(lambda: len(d.running_workers("Numbers")) == 1 and
                   {w["pid"] for w in d.running_workers("Numbers")}.isdisjoint(before),
                   "the rebalance runs on the new leader", 60, d.diagnostics)
        second_dir = tmp_path / "second"
        second_dir.mkdir()
        r = d.storm("submit", NUMBERS, "--name", "Second", "-c", f"itest.dir={second_dir}")
        assert r.returncode == 0, r.stdout + r.stderr
        d.wait_running("Second", 1)

        # the old leader, started again, follows
        _start_nimbus(d, keys[first], int(first.rpartition(":")[2]))
        wait_until(lambda: any(n["id"] == first and n["alive"] and not n["leader"]
                               for n in d.client.call("nimbuses")["nimbuses"]),
                   "the old leader rejoins as a follower", 30, d.diagnostics)
        assert _leader(d) == second
        for name in ("Numbers", "Second"):
            assert d.storm("kill", name, "-w", "0").returncode == 0
        wait_until(lambda: not d.worker_processes(), "every worker stops", 30, d.diagnostics)
