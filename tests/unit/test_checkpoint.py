"""Topology-wide checkpoints in one process: the checkpoint spout's phase machine
(initstate, prepare, commit, rollback; resuming from its stored phase), barrier
alignment in a bolt between stateful bolts (held inputs, abandoned alignments),
build-time wiring and its errors, a failed prepare rolling every task back, two
stateful stages staying consistent, and the Redis store (with STORM_TEST_REDIS)."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from preconditions import require_env

from storm import BasicBolt, Bolt, ConfigError, Grouping, Topology, TopologyError, Tuple, _config
from storm._context import TopologyContext
from storm.spouts import ListSpout
from storm.stateful import (
    CHECKPOINT_STREAM,
    COMMIT,
    FORWARD_STREAM,
    INITSTATE,
    PREPARE,
    ROLLBACK,
    CheckpointSpout,
    KeyValueState,
    RedisStateStore,
    SqliteStateStore,
    StatefulBolt,
    open_store,
)
from storm.testing import TestTopology

pytestmark = pytest.mark.timeout(30)

KEYS = [f"k{i % 7}" for i in range(60)]


class Keys(ListSpout):
    outputs = ["key"]
    items = [[k] for k in KEYS]


class Count(StatefulBolt):
    """Stage 1: counts keys, emits (key, 1) per input."""

    outputs = ["key", "one"]

    def execute(self, tup: Tuple) -> None:
        self.state[tup[0]] = self.state.get(tup[0], 0) + 1
        self.emit([tup[0], 1], anchors=[tup])
        self.ack(tup)


class Relay(Bolt):
    """A plain bolt between the stateful stages."""

    outputs = ["key", "one"]

    def execute(self, tup: Tuple) -> None:
        self.emit(list(tup.values), anchors=[tup])
        self.ack(tup)


class Total(StatefulBolt):
    """Stage 2: sums what stage 1 emitted; its pre_commit can be made to fail."""

    outputs: Any = []
    fail_prepares = 0

    def init_state(self, state: KeyValueState) -> None:
        self.inits = getattr(self, "inits", 0) + 1

    def execute(self, tup: Tuple) -> None:
        self.state[tup[0]] = self.state.get(tup[0], 0) + tup[1]
        self.ack(tup)

    def pre_commit(self, txid: int) -> None:
        if type(self).fail_prepares > 0:
            type(self).fail_prepares -= 1
            raise RuntimeError("prepare refused (test)")


class Sink(Bolt):
    def execute(self, tup: Tuple) -> None:
        self.ack(tup)


class Pipeline(Topology):
    checkpoint = CheckpointSpout.spec()
    keys = Keys.spec()
    count = Count.spec(inputs={keys: Grouping.fields("key")}, par=2, checkpoints=checkpoint)
    relay = Relay.spec(inputs=[count], par=2)
    total = Total.spec(inputs={relay: Grouping.fields("key")}, par=2, checkpoints=checkpoint)
    sink = Sink.spec(inputs=[count])


def conf(tmp_path: Path, **more: Any) -> dict[str, Any]:
    return {"topology.state.dir": str(tmp_path), "topology.state.checkpoint.interval.ms": 5.0,
            "topology.message.timeout.secs": 30.0, **more}


def run_until(t: TestTopology, cond: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        t.run()


def committed(t: TestTopology, name: str) -> tuple[set[int], dict[str, int]]:
    """(txids, merged committed state) of every task of `name`."""
    txids, merged = set(), {}
    for inst in t.result.instances(name):
        data, txid = inst.state.store.load()
        txids.add(txid)
        for k, v in data.items():
            merged[k] = merged.get(k, 0) + v
    return txids, merged


# -- the phase machine ----------------------------------------------------------------


class FakeContext:
    topology_name = "phases"
    component_id = "checkpoint"
    task_id = 1


def spout(tmp_path: Path, timeout: float = 30.0) -> tuple[CheckpointSpout, list[list[Any]]]:
    sent: list[list[Any]] = []
    sp = CheckpointSpout()
    sp.emit = lambda values, stream=None, msg_id=None, **kw: sent.append(list(values)) or [1]  # type: ignore[method-assign]
    sp.open({"topology.state.dir": str(tmp_path), "topology.state.checkpoint.interval.ms": 0.0,
             "topology.state.checkpoint.timeout.secs": timeout}, FakeContext())  # type: ignore[arg-type]
    return sp, sent


def step(sp: CheckpointSpout, sent: list[list[Any]]) -> tuple[int, str, int] | None:
    n = len(sent)
    sp.next_tuple()
    return tuple(sent[-1]) if len(sent) > n else None  # type: ignore[return-value]


def test_phase_machine_and_resume_from_the_stored_phase(tmp_path: Path) -> None:
    sp, sent = spout(tmp_path)
    txid, action, seq = step(sp, sent)  # type: ignore[misc]
    assert (txid, action) == (0, INITSTATE)
    assert step(sp, sent) is None, "one phase in flight at a time"
    sp.ack(seq)
    txid, action, seq = step(sp, sent)  # type: ignore[misc]
    assert (txid, action) == (1, PREPARE)
    sp.ack(seq - 1)  # a stale ack changes nothing
    assert step(sp, sent) is None
    sp.ack(seq)
    txid, action, seq = step(sp, sent)  # type: ignore[misc]
    assert (txid, action) == (1, COMMIT)
    sp.ack(seq)
    assert sp.commits == 1 and sp.last_committed == 1
    txid, action, seq = step(sp, sent)  # type: ignore[misc]
    assert (txid, action) == (2, PREPARE)
    sp.fail(seq)
    txid, action, seq = step(sp, sent)  # type: ignore[misc]
    assert (txid, action) == (2, ROLLBACK)
    sp.ack(seq)
    txid, action, seq = step(sp, sent)  # type: ignore[misc]
    assert (txid, action) == (2, PREPARE), "after a rollback the txid is prepared again"
    sp.ack(seq)
    sp.close()  # crashed while committing 2: the phase is on disk

    again, sent2 = spout(tmp_path)
    txid, action, seq2 = step(again, sent2)  # type: ignore[misc]
    assert (txid, action) == (2, COMMIT), "a restarted spout finishes the commit it was in"
    assert seq2 > seq, "barrier seqs keep growing across restarts"
    again.ack(seq2)
    txid, action, seq2 = step(again, sent2)  # type: ignore[misc]
    assert (txid, action) == (2, INITSTATE)
    again.ack(seq2)
    txid, action, seq2 = step(again, sent2)  # type: ignore[misc]
    assert (txid, action) == (3, PREPARE)
    again.close()

    third, sent3 = spout(tmp_path)
    assert step(third, sent3)[:2] == (3, ROLLBACK), "a prepare cut short is rolled back"  # type: ignore[index]
    third.close()


def test_a_phase_that_times_out_is_recovered(tmp_path: Path) -> None:
    sp, sent = spout(tmp_path, timeout=0.05)
    _, _, seq = step(sp, sent)  # type: ignore[misc]
    sp.ack(seq)
    txid, action, _ = step(sp, sent)  # type: ignore[misc]
    assert action == PREPARE
    time.sleep(0.06)
    assert step(sp, sent)[1] == ROLLBACK  # type: ignore[index]
    assert sp.timeouts == 1
    sp.close()


# -- build-time wiring ----------------------------------------------------------------


def test_wiring_forwards_barriers_only_between_stateful_bolts(tmp_path: Path) -> None:
    spec = Pipeline.build(conf(tmp_path))
    c = spec.components
    assert list(c["count"].outputs)[-2:] == ["default", FORWARD_STREAM] or \
        list(c["count"].outputs).index(FORWARD_STREAM) > list(c["count"].outputs).index("default")
    assert FORWARD_STREAM in c["relay"].outputs and FORWARD_STREAM not in c["total"].outputs
    assert {(s.source, s.stream) for s in c["relay"].inputs} == {("count", "default"), ("count", FORWARD_STREAM)}
    assert ("relay", FORWARD_STREAM) in {(s.source, s.stream) for s in c["total"].inputs}
    assert c["relay"].cls is not Relay and issubclass(c["relay"].cls, Relay)
    assert c["sink"].cls is Sink, "a bolt below the last stateful bolt is not touched"
    assert not any(s.stream == FORWARD_STREAM for s in c["sink"].inputs)
    again = spec.with_config({"topology.workers": 2})
    assert again.components["relay"].cls is c["relay"].cls
    assert [s.stream for s in again.components["total"].inputs].count(FORWARD_STREAM) == 1


def test_unsupported_shapes_are_rejected(tmp_path: Path) -> None:
    class BasicRelay(BasicBolt):
        outputs = ["key", "one"]

    class Bad(Topology):
        checkpoint = CheckpointSpout.spec()
        keys = Keys.spec()
        count = Count.spec(inputs=[keys], checkpoints=checkpoint)
        relay = BasicRelay.spec(inputs=[count])
        total = Total.spec(inputs=[relay], checkpoints=checkpoint)

    with pytest.raises(TopologyError, match=r"'relay' lies between stateful bolts \['count'\] and \['total'\].*BasicBolt"):
        Bad.build(conf(tmp_path))
    with pytest.raises(TopologyError, match="acking must be on"):
        Pipeline.build(conf(tmp_path, **{"topology.acker.executors": 0}))


def test_state_config_keys_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        Pipeline.build(conf(tmp_path, **{"topology.state.provider": "mysql"}))
    assert str(err.value) == (
        "config: config key 'topology.state.provider' must be one of 'sqlite', 'redis', got 'mysql'")
    with pytest.raises(ConfigError, match="did you mean 'topology.state.checkpoint.timeout.secs'"):
        Pipeline.build(conf(tmp_path, **{"topology.state.checkpoint.timeout.sec": 2.0}))
    with pytest.raises(ConfigError, match="'topology.state.redis.url' must be str"):
        Pipeline.build(conf(tmp_path, **{"topology.state.redis.url": 6379}))
    merged = _config.merge(conf(tmp_path, **{"topology.state.provider": "redis"}))
    with pytest.raises(ConfigError, match="topology.state.provider is redis: set topology.state.redis.url"):
        open_store(merged, "t", "c-1")
    store = open_store(_config.merge(conf(tmp_path)), "t", "c-1")
    assert isinstance(store, SqliteStateStore) and store.path == tmp_path / "t" / "c-1.sqlite"
    store.close()


# -- barrier alignment ----------------------------------------------------------------


def test_a_bolt_between_stateful_bolts_aligns_barriers(tmp_path: Path) -> None:
    spec = Pipeline.build(conf(tmp_path))
    relay_def = spec.components["relay"]
    a, b = spec.components["count"].tasks
    me = relay_def.tasks[0]
    relay = relay_def.cls()
    out: list[tuple[str, list[Any]]] = []
    acked: list[Tuple] = []
    failed: list[Tuple] = []
    relay.emit = lambda values, stream="default", anchors=None, direct_task=None, **kw: \
        out.append((stream, list(values))) or [direct_task]
    relay.ack, relay.fail = acked.append, failed.append
    relay.report_error = lambda exc: None
    relay.prepare(dict(spec.config), TopologyContext(spec, me, set(spec.task_component)))
    data = spec.streams[spec.stream_ids[("count", "default")]]
    barrier = spec.streams[spec.stream_ids[("count", FORWARD_STREAM)]]

    def send(values: list[Any], meta: Any, src: int) -> Tuple:
        t = Tuple(values, meta, src, (1, 2))
        relay.execute(t)
        return t

    send(["x", 1], data, a)
    b1 = send([5, PREPARE, 100], barrier, a)
    send(["held", 1], data, a)  # after a's barrier: held until b's comes
    send(["y", 1], data, b)     # b is still before its barrier: goes through
    assert [v for s, v in out if s == "default"] == [["x", 1], ["y", 1]]
    assert not [v for s, v in out if s == FORWARD_STREAM] and b1 not in acked
    b2 = send([5, PREPARE, 100], barrier, b)
    fwd = [v for s, v in out if s == FORWARD_STREAM]
    assert fwd and all(v == [5, PREPARE, 100] for v in fwd), "forwarded to every total task"
    assert len(fwd) == len(spec.components["total"].tasks)
    assert [v for s, v in out if s == "default"][-1] == ["held", 1], "released after the forward"
    assert b1 in acked and b2 in acked

    # An alignment that cannot finish (b died) is abandoned by the next barrier.
    out.clear()
    b3 = send([6, PREPARE, 101], barrier, a)
    send(["held2", 1], data, a)
    assert not [v for s, v in out if s == "default"]
    send([6, ROLLBACK, 102], barrier, a)
    assert b3 in failed, "the abandoned barrier is failed"
    assert [v for s, v in out if s == "default"] == [["held2", 1]]
    send([6, ROLLBACK, 102], barrier, b)
    assert [v for s, v in out if s == FORWARD_STREAM][-1] == [6, ROLLBACK, 102]


# -- whole topologies in one process -----------------------------------------------------


def test_two_stateful_stages_commit_consistent_states(tmp_path: Path) -> None:
    with TestTopology(Pipeline, config=conf(tmp_path)) as t:
        run_until(t, lambda: len(t.result.acked("keys")) == len(KEYS))
        run_until(t, lambda: committed(t, "count")[1] == committed(t, "total")[1]
                  and sum(committed(t, "total")[1].values()) == len(KEYS))
        txids_c, counts = committed(t, "count")
        txids_t, totals = committed(t, "total")
        assert counts == totals == {k: KEYS.count(k) for k in set(KEYS)}
        assert len(txids_c | txids_t) == 1, "every task committed the same txid"
        assert t.result.failed("keys") == []


def test_a_failed_prepare_rolls_every_task_back(tmp_path: Path) -> None:
    Total.fail_prepares = 1
    try:
        with TestTopology(Pipeline, config=conf(tmp_path)) as t:
            run_until(t, lambda: len(t.result.acked("keys")) == len(KEYS))
            run_until(t, lambda: sum(committed(t, "total")[1].values()) == len(KEYS))
            spouts = t.result.instances("checkpoint")
            assert spouts[0].rollbacks >= 1
            assert all(i.rollbacks >= 1 for i in t.result.instances("count"))
            # The inputs held at the rollback were failed and replayed; the rolled
            # back state did not keep them, so nothing is counted twice.
            assert t.result.failed("keys"), "held inputs were failed at the rollback"
            assert committed(t, "count")[1] == committed(t, "total")[1] == {k: KEYS.count(k) for k in set(KEYS)}
    finally:
        Total.fail_prepares = 0


def test_state_is_restored_by_the_next_start(tmp_path: Path) -> None:
    with TestTopology(Pipeline, config=conf(tmp_path)) as t:
        run_until(t, lambda: sum(committed(t, "total")[1].values()) == len(KEYS))
    with TestTopology(Pipeline, config=conf(tmp_path)) as t:
        run_until(t, lambda: len(t.result.acked("keys")) == len(KEYS))
        run_until(t, lambda: sum(committed(t, "total")[1].values()) == 2 * len(KEYS))
        assert committed(t, "count")[1] == committed(t, "total")[1]


# -- stores -----------------------------------------------------------------------------


def exercise_store(make: Any) -> None:
    st = make()
    kv = KeyValueState(st)
    kv["a"], kv[("t", 1)], kv["gone"] = 1, {"x": [1]}, 0
    kv.prepare(1)
    assert st.staged_txid() == 1 and st.load() == ({}, 0), "staged is not committed"
    kv["later"] = 9  # after the prepare: belongs to the next txid
    assert kv.commit_prepared(1)
    assert st.load() == ({"a": 1, ("t", 1): {"x": [1]}, "gone": 0}, 1)
    del kv["gone"]
    kv.prepare(2)
    st.close()
    again = KeyValueState(make())  # restarted between prepare and commit
    assert again.store.staged_txid() == 2
    assert again.commit_prepared(2)
    assert again.store.load() == ({"a": 1, ("t", 1): {"x": [1]}, "later": 9}, 2)
    assert not again.commit_prepared(5), "nothing staged for 5"
    again["a"] = 100
    again.prepare(3)
    again.rollback()
    assert dict(again) == {"a": 1, ("t", 1): {"x": [1]}, "later": 9} and again.txid == 2
    again.store.close()


def test_sqlite_store(tmp_path: Path) -> None:
    exercise_store(lambda: SqliteStateStore(tmp_path / "s.sqlite"))


REDIS_FIX = "start one (scripts/services start redis PORT) and set STORM_TEST_REDIS=redis://127.0.0.1:PORT/0"


def test_redis_store() -> None:
    redis_url = require_env("STORM_TEST_REDIS", REDIS_FIX)
    prefix = f"test-{uuid.uuid4().hex}"
    try:
        exercise_store(lambda: RedisStateStore(redis_url, prefix))
    finally:
        drop_keys(redis_url, f"{prefix}:*")


def drop_keys(redis_url: str, pattern: str) -> None:
    import redis

    r = redis.Redis.from_url(redis_url)
    keys = list(r.scan_iter(pattern))
    if keys:
        r.delete(*keys)
    r.close()


def test_pipeline_on_redis(tmp_path: Path) -> None:
    redis_url = require_env("STORM_TEST_REDIS", REDIS_FIX)
    name = f"Redis{uuid.uuid4().hex[:8]}"
    c = conf(tmp_path, **{"topology.state.provider": "redis", "topology.state.redis.url": redis_url,
                          "topology.name": name})
    try:
        with TestTopology(Pipeline, config=c) as t:
            run_until(t, lambda: sum(committed(t, "total")[1].values()) == len(KEYS))
            assert committed(t, "count")[1] == committed(t, "total")[1]
            assert isinstance(t.result.instances("total")[0].state.store, RedisStateStore)
    finally:
        drop_keys(redis_url, f"storm-state:{name}:*")


def test_checkpoint_stream_fields() -> None:
    assert CheckpointSpout.outputs[0].name == CHECKPOINT_STREAM
    assert tuple(CheckpointSpout.outputs[0].fields) == ("txid", "action", "seq")
