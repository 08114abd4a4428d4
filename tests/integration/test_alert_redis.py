"""The Redis Streams spout and the Redis sink against a real redis-server: the
one CI gives in STORM_TEST_REDIS (redis://host:port/db), else a private
redis-server started here on 127.0.0.1 (skipped, with the reason, when there is
neither). The spout reads as a consumer group member, XACKs an entry only when
its tuple tree completed, re-emits a failed one, and after a restart re-emits
what it had read but not acked; the sink XADDs or publishes each record."""

from __future__ import annotations

import json
import socket
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from preconditions import require_module

from storm import Bolt, Topology, Tuple
from storm.sinks import RedisSink
from storm.sources import RedisStreamSpout
from storm.testing import TestTopology, make_tuple, run_bolt

redis = require_module("redis", "pip install redis (a test extra: pip install -e .[test])")

pytestmark = pytest.mark.timeout(60)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Sink(Bolt):
    """Fails each event with "fail": true once; holds (never acks) "hold" events."""

    def prepare(self, conf: dict[str, Any], context: Any) -> None:
        self.failed_once: set[str] = set()

    def execute(self, tup: Tuple) -> None:
        ev = tup.values[0]
        if ev.get("hold"):
            return
        if ev.get("fail") and ev["n"] not in self.failed_once:
            self.failed_once.add(ev["n"])
            self.fail(tup)
            return
        self.ack(tup)


class FromRedis(Topology):
    events = RedisStreamSpout.spec()
    sink = Sink.spec(inputs=[events])


def run_until(t: TestTopology, cond: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        t.run()


def test_stream_spout_acks_on_tree_completion_and_replays_failures(redis_url: str) -> None:
    stream = f"events-{uuid.uuid4().hex[:8]}"
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        for n in range(5):
            client.xadd(stream, {"event": json.dumps({"n": str(n), "fail": n == 2})})
        conf = {"sources.redis.url": redis_url, "sources.redis.stream": stream}
        with TestTopology(FromRedis, config=conf) as t:
            run_until(t, lambda: len(t.result.acked("events")) == 5)
            got = [row[0]["n"] for row in t.result.received("sink")]
            assert got == ["0", "1", "2", "3", "4", "2"], "entry 2 failed once and was re-emitted"
            assert client.xpending(stream, "storm")["pending"] == 0
    finally:
        client.delete(stream)
        client.close()


def test_stream_spout_re_emits_what_a_dead_consumer_read(redis_url: str) -> None:
    stream = f"events-{uuid.uuid4().hex[:8]}"
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        client.xadd(stream, {"event": json.dumps({"n": "0", "hold": True})})
        client.xadd(stream, {"event": json.dumps({"n": "1"})})
        conf = {"sources.redis.url": redis_url, "sources.redis.stream": stream,
                "sources.redis.consumer": "c1"}
        with TestTopology(FromRedis, config=conf) as t:
            run_until(t, lambda: len(t.result.acked("events")) == 1)
        assert client.xpending(stream, "storm")["pending"] == 1, "the held entry stays pending"
        client.xadd(stream, {"event": json.dumps({"n": "2"})})
        with TestTopology(FromRedis, config=conf) as t:
            run_until(t, lambda: len(t.result.received("sink")) == 2)
            assert [row[0]["n"] for row in t.result.received("sink")] == ["0", "2"]
    finally:
        client.delete(stream)
        client.close()


def alert(i: int) -> Tuple:
    return make_tuple([{"id": f"a{i}", "state": "firing"}], fields=["alert"])


def test_redis_sink_xadds_and_publishes(redis_url: str) -> None:
    stream, channel = f"alerts-{uuid.uuid4().hex[:8]}", f"ch-{uuid.uuid4().hex[:8]}"
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    pubsub = client.pubsub()
    pubsub.subscribe(channel)
    try:
        deadline = time.monotonic() + 5
        while pubsub.get_message(timeout=0.1) is None:  # the subscribe confirmation
            assert time.monotonic() < deadline
        run = run_bolt(RedisSink, [alert(0), alert(1)],
                       conf={"sinks.redis.url": redis_url, "sinks.redis.stream": stream,
                             "sinks.redis.channel": channel})
        run.raise_for_errors()
        assert len(run.acked) == 2
        assert [json.loads(f["record"])["id"] for _, f in client.xrange(stream)] == ["a0", "a1"]
        got = []
        while len(got) < 2 and time.monotonic() < deadline:
            msg = pubsub.get_message(timeout=0.1)
            if msg and msg["type"] == "message":
                got.append(json.loads(msg["data"])["id"])
        assert got == ["a0", "a1"]
    finally:
        pubsub.close()
        client.delete(stream)
        client.close()


def test_redis_sink_fails_tuples_when_redis_is_down(tmp_path: Path) -> None:
    run = run_bolt(RedisSink, [alert(0)], conf={"sinks.redis.url": f"redis://127.0.0.1:{_free_port()}/0",
                                                "sinks.redis.stream": "x"})
    assert len(run.failed) == 1 and run.errors
