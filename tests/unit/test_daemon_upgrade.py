"""Nimbus's side of `storm upgrade`, in process: the layout comparison, the
dry run, and the rolling steps driven by worker beats written by hand (the
cluster test runs the real thing): one worker at a time, the next only after
the new one ran healthy, a rollback when the new code fails to start."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_daemon_nimbus import TOPOLOGY, add_supervisor, assignment, call, submit

from storm import _config
from storm.daemon._code import package_target
from storm.daemon._nimbus import Nimbus
from storm.daemon._state import SqliteState, paths
from storm.daemon._upgrade import differences, store_tasks


@pytest.fixture
def nimbus(tmp_path: Path) -> Iterator[Nimbus]:
    conf = _config.merge({"storm.local.dir": str(tmp_path / "local"), "nimbus.upgrade.healthy.secs": 2.0})
    n = Nimbus(conf, SqliteState(tmp_path / "state.sqlite"))
    yield n
    n.state.close()


def upgrade(n: Nimbus, tmp_path: Path, text: str, **args: Any) -> dict[str, Any]:
    path = tmp_path / "v2" / "pipe.py"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    pkg, _ = package_target(str(path), {})
    return call(n, "upgrade", name="Pipe", target=pkg.target, archive=pkg.archive, sha256=pkg.sha256,
                overrides={}, **args)


def beat(n: Nimbus, index: int, code_version: int, **fields: Any) -> None:
    a = assignment(n)
    n.state.put_obj(paths.beat("Pipe", index), {"topology_id": a["id"], "version": a["version"], "index": index,
                                                "code_version": code_version, **fields})


def topo(n: Nimbus) -> dict[str, Any]:
    t = n.state.get_obj(paths.topology("Pipe"))
    assert isinstance(t, dict)
    return t


def test_differences_name_each_change() -> None:
    old = {"a": {"outputs": {"default": ["x"]}, "inputs": []},
           "b": {"outputs": {}, "inputs": ["a.default>shuffle"]}}
    new = {"a": {"outputs": {"default": ["x", "y"], "errors": ["e"]}, "inputs": []},
           "c": {"outputs": {}, "inputs": ["a.default>fields(x)"]}}
    assert differences(old, new) == [
        "component 'c' is new", "component 'b' is gone",
        "stream 'a.default' fields change from ['x'] to ['x', 'y']",
        "component 'a' declares a new stream 'errors'",
    ]
    assert differences(old, old) == []


def test_workers_move_one_at_a_time_then_a_failing_version_rolls_back(nimbus: Nimbus, tmp_path: Path) -> None:
    add_supervisor(nimbus, "s1", [6700, 6701])
    assert submit(nimbus, tmp_path, **{"topology.workers": 2})["ok"]
    version = assignment(nimbus)["version"]
    for i in (0, 1):
        beat(nimbus, i, 1, status="running", pid=100 + i, uptime=50.0)
    v2 = TOPOLOGY.replace("self.ack(tup)", "self.ack(tup)  # v2")
    plan = upgrade(nimbus, tmp_path, v2, dry_run=True)
    assert plan["ok"] and plan["to"] == 2 and [s["index"] for s in plan["plan"]] == [0, 1]
    assert "upgrade" not in topo(nimbus)  # a dry run changes nothing
    assert upgrade(nimbus, tmp_path, v2)["ok"]
    assert "being upgraded already" in upgrade(nimbus, tmp_path, v2)["error"]
    assert "being upgraded" in call(nimbus, "rebalance", name="Pipe", workers=1)["error"]
    nimbus.monitor()
    a = assignment(nimbus)
    assert a["version"] == version  # the others keep running
    assert [w.get("code_version") for w in a["workers"]] == [2, None]
    listed = call(nimbus, "list")["topologies"][0]
    assert listed["code_version"] == 1 and "0/2" in listed["upgrade"]
    beat(nimbus, 0, 2, status="running", pid=200, uptime=0.5)  # not healthy for long enough yet
    nimbus.monitor()
    assert [w.get("code_version") for w in assignment(nimbus)["workers"]] == [2, None]
    beat(nimbus, 0, 2, status="running", pid=200, uptime=3.0)
    nimbus.monitor()
    nimbus.monitor()
    assert [w.get("code_version") for w in assignment(nimbus)["workers"]] == [2, 2]
    beat(nimbus, 1, 2, status="running", pid=201, uptime=3.0)
    nimbus.monitor()
    nimbus.monitor()
    t, a = topo(nimbus), assignment(nimbus)
    assert t["code_version"] == 2 and "upgrade" not in t and t["last_upgrade"]["ok"]
    assert a["code_version"] == 2 and all("code_version" not in w for w in a["workers"])
    assert a["version"] == version

    broken = TOPOLOGY.replace("self.ack(tup)", "self.ack(tup)  # v3")
    assert upgrade(nimbus, tmp_path, broken)["ok"]
    nimbus.monitor()
    beat(nimbus, 0, 3, status="backoff", pid=0, fatal="RuntimeError: no prepare")
    nimbus.monitor()
    assert all("code_version" not in w for w in assignment(nimbus)["workers"])  # back on v2
    beat(nimbus, 0, 2, status="running", pid=300, uptime=1.0)
    nimbus.monitor()
    t = topo(nimbus)
    assert "upgrade" not in t and t["code_version"] == 2 and not t["last_upgrade"]["ok"]
    assert "rolled back: worker 0 failed on the new code: RuntimeError: no prepare" in t["note"]


def test_layout_changes_are_refused_by_name(nimbus: Nimbus, tmp_path: Path) -> None:
    add_supervisor(nimbus, "s1", [6700])
    assert submit(nimbus, tmp_path)["ok"]
    renamed = TOPOLOGY.replace("sink = Sink.spec", "drain = Sink.spec").replace('outputs = ["n"]', 'outputs = ["n", "m"]')
    error = upgrade(nimbus, tmp_path, renamed)["error"]
    assert "cannot upgrade 'Pipe' live" in error
    for needle in ("component 'drain' is new", "component 'sink' is gone",
                   "stream 'source.default' fields change from ['n'] to ['n', 'm']"):
        assert needle in error


def test_a_worker_that_never_comes_up_on_the_new_code_rolls_back(nimbus: Nimbus, tmp_path: Path) -> None:
    add_supervisor(nimbus, "s1", [6700])
    assert submit(nimbus, tmp_path)["ok"]
    beat(nimbus, 0, 1, status="running", pid=100, uptime=50.0)
    assert upgrade(nimbus, tmp_path, TOPOLOGY.replace("self.ack(tup)", "self.ack(tup)  # v2"))["ok"]
    nimbus.monitor()
    beat(nimbus, 0, 2, status="starting", pid=200, uptime=0.0)
    nimbus.monitor()
    assert topo(nimbus)["upgrade"]["phase"] == "replacing"  # still within the start timeout
    t = topo(nimbus)
    t["upgrade"]["since"] -= 10_000
    nimbus.state.put_obj(paths.topology("Pipe"), t)
    nimbus.monitor()
    assert topo(nimbus)["upgrade"]["phase"] == "rolling-back"
    assert "did not come up on the new code within" in topo(nimbus)["upgrade"]["reason"]
    beat(nimbus, 0, 1, status="running", pid=300, uptime=1.0)
    nimbus.monitor()
    assert "upgrade" not in topo(nimbus) and topo(nimbus)["code_version"] == 1
    assert nimbus.state.children(paths.CODE) == [topo(nimbus)["sha"]]  # the new code is dropped again


def test_a_new_leader_carries_the_upgrade_on(nimbus: Nimbus, tmp_path: Path) -> None:
    add_supervisor(nimbus, "s1", [6700, 6701])
    assert submit(nimbus, tmp_path, **{"topology.workers": 2})["ok"]
    for i in (0, 1):
        beat(nimbus, i, 1, status="running", pid=100 + i, uptime=50.0)
    assert upgrade(nimbus, tmp_path, TOPOLOGY.replace("self.ack(tup)", "self.ack(tup)  # v2"))["ok"]
    nimbus.monitor()
    beat(nimbus, 0, 2, status="running", pid=200, uptime=5.0)
    nimbus.election.resign()  # the leader goes; another nimbus (its own local dir) takes over
    conf = _config.merge({"storm.local.dir": str(tmp_path / "other"), "nimbus.upgrade.healthy.secs": 2.0})
    other = Nimbus(conf, SqliteState(tmp_path / "state.sqlite"))
    try:
        other.tick()  # fetches the code of both versions, leads, takes the next step
        assert other.missing_code == [] and other.was_leading
        other.monitor()
        assert [w.get("code_version") for w in assignment(other)["workers"]] == [2, 2]
        beat(other, 1, 2, status="running", pid=201, uptime=5.0)
        other.monitor()
        other.monitor()
        assert topo(other)["code_version"] == 2 and "upgrade" not in topo(other)
    finally:
        other.election.resign()
        other.state.close()


STATEFUL = """
from storm import Grouping, Spout, Topology
from storm.stateful import CheckpointSpout, StatefulBolt

class Numbers(Spout):
    outputs = ["n"]
    def next_tuple(self):
        pass

class Count(StatefulBolt):
    def execute(self, tup):
        self.state[tup[0]] = self.state.get(tup[0], 0) + 1
        self.ack(tup)

class Pipe(Topology):
    config = {"topology.workers": 2}
    checkpoint = CheckpointSpout.spec()
    source = Numbers.spec()
    count = Count.spec(inputs={source: Grouping.fields("n")}, par=2, checkpoints=checkpoint)
"""


def submit_stateful(n: Nimbus, tmp_path: Path) -> None:
    path = tmp_path / "v1" / "pipe.py"
    path.parent.mkdir(exist_ok=True)
    path.write_text(STATEFUL)
    pkg, _ = package_target(str(path), {})
    add_supervisor(n, "s1", [6700, 6701])
    assert call(n, "submit", name="Pipe", target=pkg.target, archive=pkg.archive, sha256=pkg.sha256,
                overrides={})["ok"]
    for i in (0, 1):
        beat(n, i, 1, status="running", pid=100 + i, uptime=50.0)


def served_beat(n: Nimbus, index: int, code_version: int, request: int, **fields: Any) -> None:
    """Worker `index` holds the checkpoint spout (task 1) and reports the request it served."""
    beat(n, index, code_version, status="running", uptime=50.0,
         metrics={"1": {"state": {"committed_txid": 7, "served_request": request}}}, **fields)


def test_the_checkpoint_spout_serves_a_request_with_a_checkpoint_prepared_after_it(tmp_path: Path) -> None:
    from storm.stateful import COMMIT, INITSTATE, PREPARE, CheckpointSpout

    class Ctx:
        topology_name, component_id, task_id = "t", "checkpoint", 1

    sent: list[list[Any]] = []
    spout = CheckpointSpout()
    spout.emit = lambda values, stream=None, msg_id=None: sent.append(values)  # type: ignore[method-assign]
    spout.open({"topology.state.dir": str(tmp_path), "topology.state.checkpoint.interval.ms": 600_000.0},
               Ctx())  # type: ignore[arg-type]

    def step(action: str | None) -> None:
        before = len(sent)
        spout.next_tuple()
        if action is None:
            assert len(sent) == before
            return
        assert sent[-1][1] == action
        spout.ack(sent[-1][2])

    step(INITSTATE)
    step(None)  # the interval is 10 minutes
    spout.request(1)
    step(PREPARE)
    spout.request(2)  # asked while the prepare of request 1 is under way: a later checkpoint serves it
    step(COMMIT)
    assert spout.state_size() == {"committed_txid": 1, "served_request": 1}
    step(PREPARE)
    step(COMMIT)
    assert spout.state_size() == {"committed_txid": 2, "served_request": 2}
    spout.request(2)  # served already
    step(None)
    spout.close()


def test_store_names_follow_the_ids_a_layout_change_keeps() -> None:
    from storm.stateful import store_name

    old = {"count": {"tasks": [2, 3], "system": False}, "record": {"tasks": [5], "system": False},
           "__acker": {"tasks": [6], "system": True}}
    new = {"audit": {"tasks": [1], "system": False}, "count": {"tasks": [3, 4], "system": False},
           "sink": {"tasks": [6], "system": False}, "__acker": {"tasks": [7], "system": True}}
    assert store_tasks(old, new, {}) == {"count": [2, 3]}
    assert store_tasks(new, old, {"count": [2, 3]}) == {}  # back on its first ids: no map needed
    assert store_tasks(old, new, {"count": [8, 9]}) == {"count": [8, 9]}  # the ids of the first save stay

    class Ctx:
        component_id, task_id, this_task_index = "count", 4, 1

    conf = {"topology.state.tasks": {"count": [2, 3]}}
    assert store_name(conf, Ctx()) == "count-3"  # type: ignore[arg-type]
    assert store_name({}, Ctx()) == "count-4"  # type: ignore[arg-type]
    Ctx.this_task_index = 3  # a parallelism raised later: ids the map does not hold
    assert store_name(conf, Ctx()) == "count-5"  # type: ignore[arg-type]


def test_each_worker_waits_for_a_committed_checkpoint_before_it_is_replaced(nimbus: Nimbus, tmp_path: Path) -> None:
    submit_stateful(nimbus, tmp_path)
    v2 = STATEFUL.replace("self.ack(tup)", "self.ack(tup)  # v2")
    assert upgrade(nimbus, tmp_path, v2, dry_run=True)["checkpoint"] is True
    assert upgrade(nimbus, tmp_path, v2)["ok"]
    nimbus.monitor()
    t, a = topo(nimbus), assignment(nimbus)
    assert t["upgrade"]["phase"] == "checkpoint" and a["checkpoint"] == 1
    assert all("code_version" not in w for w in a["workers"])  # nothing stopped yet
    served_beat(nimbus, 0, 1, 0, pid=100)
    nimbus.monitor()
    assert all("code_version" not in w for w in assignment(nimbus)["workers"])  # not committed yet
    served_beat(nimbus, 0, 1, 1, pid=100)
    nimbus.monitor()
    assert [w.get("code_version") for w in assignment(nimbus)["workers"]] == [2, None]
    served_beat(nimbus, 0, 2, 1, pid=200)
    nimbus.monitor()
    nimbus.monitor()
    assert topo(nimbus)["upgrade"]["phase"] == "checkpoint" and assignment(nimbus)["checkpoint"] == 2
    t = topo(nimbus)
    t["upgrade"]["since"] -= 10_000  # the second checkpoint never commits
    nimbus.state.put_obj(paths.topology("Pipe"), t)
    nimbus.monitor()
    assert all("code_version" not in w for w in assignment(nimbus)["workers"])  # worker 0 goes back, 1 stays
    served_beat(nimbus, 0, 1, 2, pid=300)
    nimbus.monitor()
    t = topo(nimbus)
    assert "upgrade" not in t and not t["last_upgrade"]["ok"]
    assert "the checkpoint asked for before stopping worker 1 did not commit within 60s" in t["note"]


def test_rebalance_applies_a_layout_change_through_a_stop(nimbus: Nimbus, tmp_path: Path) -> None:
    submit_stateful(nimbus, tmp_path)
    relaid = STATEFUL.replace("class Pipe(Topology):", "class Audit(Numbers):\n    pass\n\nclass Pipe(Topology):")
    relaid = relaid.replace("    source = Numbers.spec()", "    source = Numbers.spec()\n    audit = Audit.spec()")
    assert "give --rebalance" in upgrade(nimbus, tmp_path, relaid)["error"]
    plan = upgrade(nimbus, tmp_path, relaid, rebalance=True, dry_run=True)
    assert plan["stop"] and plan["layout"] == ["component 'audit' is new"] and plan["state_kept"] == ["count"]
    assert topo(nimbus)["status"] == "ACTIVE"  # a dry run changes nothing
    assert upgrade(nimbus, tmp_path, relaid, rebalance=True)["ok"]
    t = topo(nimbus)
    assert t["status"] == "REBALANCING" and t["rebalance"]["phase"] == "checkpoint"
    assert t["rebalance"]["overrides"]["topology.state.tasks"] == {"checkpoint": [1], "count": [2, 3],
                                                                   "source": [4]}
    assert assignment(nimbus)["checkpoint"] == 1 and assignment(nimbus)["active"]
    assert "--rebalance" in call(nimbus, "list")["topologies"][0]["upgrade"]
    served_beat(nimbus, 0, 1, 1, pid=100)
    nimbus.monitor()
    assert topo(nimbus)["rebalance"]["phase"] == "wait" and not assignment(nimbus)["active"]
    nimbus.monitor()
    assert assignment(nimbus)["workers"] == []  # every worker stops
    nimbus.state.delete(paths.beats("Pipe"))  # ... and is gone
    nimbus.monitor()
    t, a = topo(nimbus), assignment(nimbus)
    assert t["status"] == "ACTIVE" and t["code_version"] == 2 and t["last_upgrade"]["ok"]
    assert a["code_version"] == 2 and a["sha"] == t["sha"] and len(a["workers"]) == 2
    assert a["overrides"]["topology.state.tasks"]["count"] == [2, 3]
    assert t["components"]["count"]["tasks"] == [3, 4]
    assert nimbus.state.children(paths.CODE) == [t["sha"]]  # the old code is dropped


def test_workers_on_the_new_code_keep_the_running_parallelism(nimbus: Nimbus, tmp_path: Path) -> None:
    submit_stateful(nimbus, tmp_path)
    v2 = STATEFUL.replace("par=2", "par=3")  # the new code declares another parallelism: the running one stays
    reply = upgrade(nimbus, tmp_path, v2)
    assert reply["ok"], reply
    served_beat(nimbus, 0, 1, 1, pid=100)
    nimbus.monitor()
    nimbus.monitor()
    slot = assignment(nimbus)["workers"][0]
    assert slot["code_version"] == 2 and slot["parallelism"]["count"] == 2  # the worker's --parallelism
    assert slot["fingerprint"] == topo(nimbus)["fingerprint"]


def test_a_new_leader_carries_a_layout_upgrade_on(nimbus: Nimbus, tmp_path: Path) -> None:
    submit_stateful(nimbus, tmp_path)
    relaid = STATEFUL.replace("class Pipe(Topology):", "class Audit(Numbers):\n    pass\n\nclass Pipe(Topology):")
    relaid = relaid.replace("    source = Numbers.spec()", "    source = Numbers.spec()\n    audit = Audit.spec()")
    assert upgrade(nimbus, tmp_path, relaid, rebalance=True)["ok"]
    nimbus.election.resign()
    conf = _config.merge({"storm.local.dir": str(tmp_path / "other"), "nimbus.upgrade.healthy.secs": 2.0})
    other = Nimbus(conf, SqliteState(tmp_path / "state.sqlite"))
    try:
        served_beat(other, 0, 1, 1, pid=100)
        other.tick()  # fetches the new code too (it must hold it to lead), leads, sees the checkpoint committed
        assert other.missing_code == [] and other.was_leading
        assert topo(other)["rebalance"]["phase"] == "wait"
        other.monitor()
        other.state.delete(paths.beats("Pipe"))
        other.monitor()
        t = topo(other)
        assert t["status"] == "ACTIVE" and t["code_version"] == 2 and "audit" in t["components"]
    finally:
        other.election.resign()
        other.state.close()
