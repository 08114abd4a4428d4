"""Nimbus's decisions, in process and without sockets: a SQLite state, fake
supervisor records, requests through `handle_raw`. Submitting validates the
code in a real subprocess (about half a second)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgpack
import pytest

from storm import _config
from storm.daemon._code import package_target
from storm.daemon._nimbus import Nimbus
from storm.daemon._state import SqliteState, paths

TOPOLOGY = """
from storm import Bolt, Spout, Topology

class Numbers(Spout):
    outputs = ["n"]
    def next_tuple(self):
        pass

class Sink(Bolt):
    def execute(self, tup):
        self.ack(tup)

class Pipe(Topology):
    source = Numbers.spec()
    sink = Sink.spec(inputs=[source])
"""


@pytest.fixture
def nimbus(tmp_path: Path) -> Nimbus:
    conf = _config.merge({"storm.local.dir": str(tmp_path / "local"), "nimbus.supervisor.timeout.secs": 5.0})
    n = Nimbus(conf, SqliteState(tmp_path / "state.sqlite"))
    yield n  # type: ignore[misc]
    n.state.close()


def call(n: Nimbus, op: str, **args: Any) -> dict[str, Any]:
    return n.handle_raw(msgpack.packb({"op": op, **args}, use_bin_type=True))


def add_supervisor(n: Nimbus, sid: str, ports: list[int], beat: int = 1) -> None:
    n.state.put_obj(paths.supervisor(sid), {"id": sid, "host": f"10.0.0.{len(sid)}", "ports": ports, "beat": beat,
                                            "logs": "", "pid": 1})


def submit(n: Nimbus, tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    topo = tmp_path / "pipe.py"
    topo.write_text(TOPOLOGY)
    pkg, spec = package_target(str(topo), overrides)
    return call(n, "submit", name=spec.name, target=pkg.target, archive=pkg.archive, sha256=pkg.sha256,
                overrides=overrides)


def assignment(n: Nimbus, name: str = "Pipe") -> dict[str, Any]:
    a = n.state.get_obj(paths.assignment(name))
    assert isinstance(a, dict)
    return a


def test_requests_nimbus_does_not_understand(nimbus: Nimbus) -> None:
    assert nimbus.handle_raw(b"\xc1")["ok"] is False
    assert "does not know the request 'nope'" in call(nimbus, "nope")["error"]
    assert "no topology named 'x'" in call(nimbus, "kill", name="x")["error"]
    assert call(nimbus, "ping")["ok"]


def test_submit_waits_for_slots_then_spreads_workers(nimbus: Nimbus, tmp_path: Path) -> None:
    reply = submit(nimbus, tmp_path, **{"topology.workers": 2})
    assert reply["ok"], reply
    assert not reply["scheduled"] and "waiting for free slots" in reply["note"]
    assert nimbus.state.get_obj(paths.assignment("Pipe")) is None
    add_supervisor(nimbus, "s1", [6700, 6701])
    add_supervisor(nimbus, "s2", [6700])
    nimbus.monitor()
    a = assignment(nimbus)
    assert a["version"] == 1 and a["active"]
    assert sorted(w["supervisor"] for w in a["workers"]) == ["s1", "s2"]
    assert a["endpoints"] == [f"tcp://{w['host']}:{w['port']}" for w in a["workers"]]
    listed = call(nimbus, "list")["topologies"]
    assert [(t["name"], t["status"], t["assigned"], t["running"]) for t in listed] == [("Pipe", "ACTIVE", 2, 0)]
    assert "already running" in submit(nimbus, tmp_path, **{"topology.workers": 2})["error"]


def test_invalid_code_is_refused(nimbus: Nimbus, tmp_path: Path) -> None:
    topo = tmp_path / "pipe.py"
    topo.write_text(TOPOLOGY)
    pkg, spec = package_target(str(topo))
    reply = call(nimbus, "submit", name=spec.name, target="pipe.py:Nothing", archive=pkg.archive,
                 sha256=pkg.sha256, overrides={})
    assert not reply["ok"] and "invalid topology" in reply["error"] and "Nothing" in reply["error"]
    reply = call(nimbus, "submit", name=spec.name, target=pkg.target, archive=pkg.archive, sha256="0" * 64,
                 overrides={})
    assert not reply["ok"] and "sha256" in reply["error"]


def test_workers_of_a_lost_supervisor_move(nimbus: Nimbus, tmp_path: Path) -> None:
    add_supervisor(nimbus, "s1", [6700])
    add_supervisor(nimbus, "s2", [6700])
    submit(nimbus, tmp_path)
    first = assignment(nimbus)
    lost = first["workers"][0]["supervisor"]
    other = "s2" if lost == "s1" else "s1"
    # time passes: only `other` keeps beating
    nimbus.started -= 60
    nimbus.sup_seen[lost] = (nimbus.sup_seen[lost][0], nimbus.sup_seen[lost][1] - 60)
    add_supervisor(nimbus, other, [6700], beat=2)
    nimbus.monitor()
    second = assignment(nimbus)
    assert second["version"] == 2
    assert [w["supervisor"] for w in second["workers"]] == [other]


def test_activate_deactivate_and_kill_after_the_wait(nimbus: Nimbus, tmp_path: Path) -> None:
    add_supervisor(nimbus, "s1", [6700])
    submit(nimbus, tmp_path)
    assert call(nimbus, "deactivate", name="Pipe")["status"] == "INACTIVE"
    assert assignment(nimbus)["active"] is False
    assert call(nimbus, "activate", name="Pipe")["status"] == "ACTIVE"
    assert assignment(nimbus)["active"] is True
    assert call(nimbus, "kill", name="Pipe", wait=30)["wait"] == 30
    assert assignment(nimbus)["active"] is False
    assert "KILLED" in call(nimbus, "activate", name="Pipe")["error"]
    nimbus.monitor()
    assert nimbus.state.get_obj(paths.topology("Pipe")) is not None  # still within the wait
    topo = nimbus.state.get_obj(paths.topology("Pipe"))
    topo["kill_at"] = 0
    nimbus.state.put_obj(paths.topology("Pipe"), topo)
    nimbus.monitor()
    assert nimbus.state.children(paths.TOPOLOGIES) == []
    assert nimbus.state.children(paths.ASSIGNMENTS) == []
    assert nimbus.state.children(paths.CODE) == []


def test_rebalance_stops_every_old_worker_before_the_new_layout(nimbus: Nimbus, tmp_path: Path) -> None:
    add_supervisor(nimbus, "s1", [6700, 6701])
    submit(nimbus, tmp_path)
    nimbus.state.put_obj(paths.beat("Pipe", 0), {"version": 1})  # the old worker runs
    assert "no component 'nope'" in call(nimbus, "rebalance", name="Pipe", parallelism={"nope": 2})["error"]
    reply = call(nimbus, "rebalance", name="Pipe", wait=0, workers=2, parallelism={"sink": 3})
    assert reply["ok"] and reply["workers"] == 2 and reply["parallelism"] == {"sink": 3, "source": 1}
    assert assignment(nimbus)["active"] is False
    nimbus.monitor()  # the wait is over: the old workers are told to stop
    a = assignment(nimbus)
    assert a["workers"] == [] and a["version"] == 1
    nimbus.monitor()  # an old worker still beats: wait
    assert assignment(nimbus)["workers"] == []
    nimbus.state.delete(paths.beat("Pipe", 0))
    nimbus.monitor()
    a = assignment(nimbus)
    assert a["version"] == 2 and len(a["workers"]) == 2 and a["active"]
    assert a["parallelism"] == {"sink": 3} and a["overrides"]["topology.workers"] == 2
    topo = nimbus.state.get_obj(paths.topology("Pipe"))
    assert topo["status"] == "ACTIVE" and topo["components"]["sink"]["tasks"] == [1, 2, 3]


def test_a_second_nimbus_on_one_sqlite_state_refuses_to_start(nimbus: Nimbus, tmp_path: Path) -> None:
    from storm._errors import StormError

    conf = _config.merge({"storm.local.dir": str(tmp_path / "other"), "nimbus.port": 7000})
    with pytest.raises(StormError, match="another nimbus .* already runs on the cluster state sqlite:.*"
                                         "need the ZooKeeper state: set storm.zookeeper.servers"):
        Nimbus(conf, SqliteState(tmp_path / "state.sqlite"))
    assert call(nimbus, "ping")["leading"] is True
    listed = call(nimbus, "nimbuses")
    assert listed["leader"] == nimbus.id
