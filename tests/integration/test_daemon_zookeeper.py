"""Cluster mode with the ZooKeeper state store against a real ZooKeeper server
(Debian's `zookeeper` package), and across two hosts made of network
namespaces.

ZooKeeper: STORM_TEST_ZOOKEEPER=host:port names a running server (.ci/run
starts one with scripts/zookeeper); without it the tests start a private server
when the package is installed, and skip when it is not, except under CI=true,
where a missing ZooKeeper fails them.

Two hosts: namespaces A (ZooKeeper, nimbus, a supervisor) and B (a second
nimbus, a supervisor) joined by a veth pair; a second pair joins this test's
own namespace to A, so the test can talk to A's nimbus. A's nimbus is killed at
the end: B's leads, and the CLI (run in A) finds it through nimbus.seeds.
Skipped, with the reason, where namespaces cannot be made (not root, no `ip`, a
sandbox without CAP_NET_ADMIN), except under CI=true, where that fails it
(tests/preconditions.py)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from daemon_topos_harness import (
    Daemons,
    free_ports,
    start_zookeeper,
    stop_process,
    wait_until,
    zk_ok,
)
from daemon_topos_parts import read_numbers
from preconditions import missing

from storm.daemon import ZkState
from storm.daemon._state import paths


@pytest.fixture(scope="module")
def zookeeper(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """host:port of a running ZooKeeper server."""
    given = os.environ.get("STORM_TEST_ZOOKEEPER")
    if given:
        host, _, port = given.rpartition(":")
        if not zk_ok(host, int(port)):
            missing(f"STORM_TEST_ZOOKEEPER={given} does not answer")
        yield given
        return
    if shutil.which("java") is None or not Path("/usr/share/java/zookeeper.jar").exists():
        missing("no ZooKeeper: set STORM_TEST_ZOOKEEPER=host:port or apt-get install zookeeper")
    port = free_ports(1)[0]
    proc = start_zookeeper(tmp_path_factory.mktemp("zookeeper"), "127.0.0.1", port)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        stop_process(proc)


def unique_root() -> str:
    return f"/storm-test-{uuid.uuid4().hex[:10]}"


@pytest.mark.timeout(60)
def test_zk_state_store(zookeeper: str) -> None:
    root = unique_root()
    state = ZkState([zookeeper], root=root, connect_timeout=10)
    other = ZkState([zookeeper], root=root, connect_timeout=10)  # another process's view
    try:
        assert state.get("/a/b") is None and state.children("/a") == []
        state.put("/a/b", b"1")
        state.put("/a/c", b"2")
        state.put("/a/b", b"3")
        assert other.get("/a/b") == b"3"
        assert other.children("/a") == ["b", "c"]
        state.put_obj("/o", {"x": [1, 2], "y": None})
        assert other.get_obj("/o") == {"x": [1, 2], "y": None}
        blob = os.urandom(700_000)  # above ZooKeeper's 1 MiB node limit only in chunks
        state.put_blob("/code/x", blob)
        assert other.get_blob("/code/x") == blob
        state.delete("/a")
        assert other.get("/a/b") is None and other.children("/a") == []
        state.delete("/nothing/there")
    finally:
        state.delete("/a")
        state.delete("/o")
        state.delete("/code")
        state.close()
        other.close()


@pytest.mark.timeout(120)
def test_submit_and_kill_with_the_zookeeper_store(zookeeper: str, tmp_path: Path) -> None:
    root = unique_root()
    conf = {"storm.zookeeper.servers": [zookeeper], "storm.zookeeper.root": root}
    with Daemons(tmp_path, conf) as d:
        d.start_nimbus()
        d.start_supervisor("sup-a")
        d.start_supervisor("sup-b")
        count = 1500
        d.submit(**{"topology.workers": 2, "itest.count": count, "itest.rate": 1000})
        workers = d.wait_running("Numbers", 2)
        assert len({w["supervisor"] for w in workers}) == 2
        r = d.storm("list")
        assert r.returncode == 0 and "Numbers" in r.stdout and "ACTIVE" in r.stdout, r.stdout + r.stderr
        wait_until(lambda: set(read_numbers(d.record_dir, "acks")) >= set(range(count)),
                   "every message acked", 60, d.diagnostics)
        state = ZkState([zookeeper], root=root)
        try:
            assert state.children(paths.TOPOLOGIES) == ["Numbers"]
            assert len(state.children(paths.SUPERVISORS)) == 2
            assert state.get_obj(paths.assignment("Numbers"))["workers"]
            r = d.storm("kill", "Numbers", "-w", "0")
            assert r.returncode == 0, r.stderr
            wait_until(lambda: not d.worker_processes(), "every worker stops", 30, d.diagnostics)
            wait_until(lambda: not state.children(paths.TOPOLOGIES) and not state.children(paths.ASSIGNMENTS),
                       "the topology is gone from ZooKeeper", 20, d.diagnostics)
        finally:
            for child in state.children("/"):
                state.delete(f"/{child}")
            state.close()


# -- two hosts --------------------------------------------------------------------------------
NET_A, NET_B, NET_T = "10.231.77.1", "10.231.77.2", "10.231.78.1"  # A, B, and the test's side


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=20)


class TwoHosts:
    """Namespaces A and B joined by veth (10.231.77.0/24), and a veth from this
    namespace to A (10.231.78.0/24) with a route to A's address."""

    def __init__(self) -> None:
        tag = uuid.uuid4().hex[:6]
        self.a, self.b = f"storm-a-{tag}", f"storm-b-{tag}"
        self.links = (f"sa{tag}", f"sb{tag}", f"st{tag}", f"sx{tag}")
        self.made: list[str] = []

    def up(self) -> str | None:
        """None when made, else why it cannot be."""
        if shutil.which("ip") is None:
            return "no `ip` command (iproute2)"
        if os.geteuid() != 0:
            return "network namespaces need root"
        for ns in (self.a, self.b):
            r = _ip("netns", "add", ns)
            if r.returncode:
                return f"cannot create a network namespace: {r.stderr.strip()}"
            self.made.append(ns)
        la, lb, lt, lx = self.links
        steps = [
            ["link", "add", la, "type", "veth", "peer", "name", lb],
            ["link", "set", la, "netns", self.a],
            ["link", "set", lb, "netns", self.b],
            ["link", "add", lt, "type", "veth", "peer", "name", lx],
            ["link", "set", lx, "netns", self.a],
            ["netns", "exec", self.a, "ip", "addr", "add", f"{NET_A}/24", "dev", la],
            ["netns", "exec", self.b, "ip", "addr", "add", f"{NET_B}/24", "dev", lb],
            ["netns", "exec", self.a, "ip", "addr", "add", "10.231.78.2/24", "dev", lx],
            ["addr", "add", f"{NET_T}/24", "dev", lt],
            ["netns", "exec", self.a, "ip", "link", "set", la, "up"],
            ["netns", "exec", self.a, "ip", "link", "set", lx, "up"],
            ["netns", "exec", self.a, "ip", "link", "set", "lo", "up"],
            ["netns", "exec", self.b, "ip", "link", "set", lb, "up"],
            ["netns", "exec", self.b, "ip", "link", "set", "lo", "up"],
            ["link", "set", lt, "up"],
            # replace, not add: a run killed before its clean-up leaves this route behind
            ["route", "replace", f"{NET_A}/32", "via", "10.231.78.2", "dev", lt],
        ]
        for step in steps:
            r = _ip(*step)
            if r.returncode:
                return f"`ip {' '.join(step)}` failed: {r.stderr.strip()}"
        return None

    def prefix(self, ns: str) -> list[str]:
        return ["ip", "netns", "exec", ns]

    def down(self) -> None:
        _ip("link", "del", self.links[2])  # also removes its peer in A
        for ns in self.made:
            _ip("netns", "del", ns)


@pytest.mark.timeout(150)
def test_two_hosts_in_network_namespaces(tmp_path: Path) -> None:
    if shutil.which("java") is None or not Path("/usr/share/java/zookeeper.jar").exists():
        missing("no ZooKeeper package: apt-get install zookeeper")
    hosts = TwoHosts()
    zk = None
    try:
        why = hosts.up()
        if why:
            missing(f"cannot make two hosts from network namespaces: {why}")
        zk = start_zookeeper(tmp_path / "zookeeper", NET_A, 2181, prefix=hosts.prefix(hosts.a))
        # Daemons beyond loopback need CURVE (or --insecure): every connection between
        # the two hosts is authenticated and encrypted here.
        from storm._security import generate

        generate(tmp_path / "keys")
        conf = {
            "storm.zookeeper.servers": [f"{NET_A}:2181"], "storm.zookeeper.root": unique_root(),
            "nimbus.host": NET_A, "nimbus.seeds": [NET_A, NET_B], "nimbus.port": 6627,
            "storm.zookeeper.session.timeout": 4000,
            "storm.security.curve": True, "storm.security.keys.dir": str(tmp_path / "keys"),
        }
        with Daemons(tmp_path / "cluster", conf) as d:
            d.start_nimbus(prefix=hosts.prefix(hosts.a))
            d._start("nimbus-b", ["nimbus", *d.args({"nimbus.host": NET_B, "storm.local.dir": str(d.base / "nimbus-b")})],
                     prefix=hosts.prefix(hosts.b))
            d.start_supervisor("sup-a", prefix=hosts.prefix(hosts.a),
                               extra={"storm.local.hostname": NET_A, "supervisor.slots.ports": [6700]})
            d.start_supervisor("sup-b", prefix=hosts.prefix(hosts.b),
                               extra={"storm.local.hostname": NET_B, "supervisor.slots.ports": [6700]})
            count = 1500
            d.submit(**{"topology.workers": 2, "itest.count": count, "itest.rate": 1000})
            workers = d.wait_running("Numbers", 2)
            by_index = {w["index"]: w["host"] for w in workers}
            # the spout (task 3) runs in worker 0, the sink (task 2) in worker 1: on two hosts,
            # so every number crossed from one namespace to the other over tcp
            assert by_index[0] != by_index[1] and set(by_index.values()) == {NET_A, NET_B}, workers
            wait_until(lambda: set(read_numbers(d.record_dir, "sink")) >= set(range(count)),
                       "the sink on the other host sees every number", 60, d.diagnostics)
            wait_until(lambda: set(read_numbers(d.record_dir, "acks")) >= set(range(count)),
                       "every message acked back across the hosts", 30, d.diagnostics)
            r = d.storm("list", prefix=hosts.prefix(hosts.a))
            assert r.returncode == 0 and "Numbers" in r.stdout, r.stdout + r.stderr
            # the log of the sink's worker, read from its supervisor (maybe on the other host)
            r = d.storm("logs", "Numbers", "--component", "sink", prefix=hosts.prefix(hosts.a))
            assert r.returncode == 0, r.stderr
            assert f"==> worker 1 on {by_index[1]}:6700" in r.stdout, r.stdout

            def roles() -> dict[str, str]:  # nimbus id -> its row of `storm nimbuses`, alive ones only
                r = d.storm("nimbuses", prefix=hosts.prefix(hosts.a))
                return {line.split()[0]: line for line in r.stdout.splitlines()
                        if line.strip().startswith("10.231.") and " yes " in line}

            a_id, b_id = f"{NET_A}:6627", f"{NET_B}:6627"
            wait_until(lambda: (lambda r: "leader" in r.get(a_id, "") and b_id in r)(roles()),
                       "two nimbuses, A's leads", 30, d.diagnostics)
            d.stop("nimbus", signal.SIGKILL)
            wait_until(lambda: "leader" in roles().get(b_id, ""), "the nimbus on B leads", 40, d.diagnostics)
            r = d.storm("kill", "Numbers", "-w", "0", prefix=hosts.prefix(hosts.a))
            assert r.returncode == 0, r.stderr
            wait_until(lambda: not d.worker_processes(), "every worker on both hosts stops", 30, d.diagnostics)
    finally:
        if zk is not None:
            stop_process(zk)
        hosts.down()
