"""KafkaSpout and KafkaBolt on real workers against a real Kafka-protocol
broker (kafka_support): the retry limit commits a record and counts it as
failed; AT_MOST_ONCE commits before it emits; NO_GUARANTEE commits what it
polled and never replays; max.uncommitted.offsets pauses a partition without
loss; a regex subscription with a translator to two streams; the bolt acks
only after the broker confirmed a write; bad settings stop the build with one
clear error."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import kafka_support as ks
import kafka_topos as kt
import pytest
from itest_support import wait_for

from storm import LocalCluster, Topology
from storm._errors import StormError
from storm.kafka import KafkaSpout

TOPOS = str(Path(kt.__file__).resolve())


def _summaries(record_dir: Path, component: str) -> list[dict[str, Any]]:
    out = []
    for p in record_dir.glob(f"{component}-*.json"):
        try:
            out.append(json.loads(p.read_text()))
        except ValueError:
            continue  # being replaced
    return out


@pytest.mark.timeout(120)
def test_retry_limit_commits_the_record_and_counts_it_failed(cluster: LocalCluster, record_dir: Path) -> None:
    with ks.broker() as broker:
        topic = ks.topic_name("poison")
        ks.create_topic(broker.address, topic, 2)
        values = [b"poison %d" % i if i % 50 == 7 else b"fine %d" % i for i in range(300)]
        ks.produce(broker.address, topic, ((None, v) for v in values), partition_of=lambda i: i % 2)
        group = ks.topic_name("g")
        conf = {kt.TOPIC: topic, "itest.dir": str(record_dir), "kafka.bootstrap.servers": broker.address,
                "kafka.spout.group.id": group, "kafka.spout.retry.max.retries": 2,
                "kafka.spout.retry.initial.delay.ms": 20, "kafka.spout.offset.commit.period.ms": 200,
                "kafka.spout.consumer": ks.FAST_GROUP}
        poisoned = sum(1 for v in values if v.startswith(b"poison"))
        topo = cluster.submit(f"{TOPOS}:poison", config=conf)

        def settled() -> bool:
            s = _summaries(record_dir, "a_kafka")
            return bool(s) and s[0]["retries_exhausted"] == poisoned and s[0]["acked"] == 300 - poisoned
        wait_for(topo, settled, "every record acked or given up on", timeout=90)
        wait_for(topo, lambda: ks.committed(broker.address, group, topic, 2) == {0: 150, 1: 150},
                 "every offset committed, the given-up ones too", timeout=30)
        topo.stop()
    summary = _summaries(record_dir, "a_kafka")[0]
    attempts = kt.read_lines(record_dir, "attempts")
    # Each poison record: the first emit and two retries, then committed.
    assert len(attempts) == poisoned * 3, attempts
    assert summary["failed"] == poisoned * 3 and summary["retried"] == poisoned * 2, summary
    print(f"\nretry limit: {poisoned} poison records tried 3 times each, committed; summary {summary}")


@pytest.mark.timeout(120)
def test_at_most_once_commits_before_it_emits(cluster: LocalCluster, record_dir: Path) -> None:
    with ks.broker() as broker:
        topic = ks.topic_name("amo")
        ks.create_topic(broker.address, topic, 2)
        ks.produce(broker.address, topic, ((None, b"r%d" % i) for i in range(200)))
        group = ks.topic_name("g")
        conf = {kt.TOPIC: topic, "itest.dir": str(record_dir), "kafka.bootstrap.servers": broker.address,
                "kafka.spout.group.id": group, "kafka.spout.consumer": ks.FAST_GROUP}
        topo = cluster.submit(f"{TOPOS}:at_most_once", config=conf)
        wait_for(topo, lambda: len(kt.read_lines(record_dir, "probe")) >= 200, "every record probed", timeout=90)
        topo.stop()
    probes = kt.read_lines(record_dir, "probe")
    early = [p for p in probes if int(p[2]) <= int(p[1])]
    assert len({(p[0], p[1]) for p in probes}) == 200
    assert not early, f"records seen by the bolt before their offset was committed: {early[:5]}"


def _build(**conf: Any) -> Any:
    class Bad(Topology):
        config = {"kafka.bootstrap.servers": "127.0.0.1:9", **conf}
        a = KafkaSpout.spec()

    return Bad.build()


@pytest.mark.parametrize(("conf", "message"), [
    ({"kafka.spout.topics": ["t"], "kafka.spout.first.poll.offset.strategy": "SOMETIMES"},
     "kafka.spout.first.poll.offset.strategy must be one of EARLIEST, LATEST, UNCOMMITTED_EARLIEST"),
    ({"kafka.spout.topics": ["t"], "kafka.spout.processing.guarantee": "EXACTLY_TWICE"},
     "kafka.spout.processing.guarantee must be one of AT_LEAST_ONCE, AT_MOST_ONCE, NO_GUARANTEE"),
    ({}, "Kafka spout 'a' has no topics: set kafka.spout.topics"),
    ({"kafka.spout.topics": ["t"], "kafka.spout.consumer": {"enable.auto.commit": True}},
     "sets enable.auto.commit; the spout commits offsets itself"),
    ({"kafka.spout.topics": ["t"], "kafka.spout.topic.pattern": "t.*"}, "not both"),
    ({"kafka.spout.topic.pattern": "t[("}, "is not a regular expression"),
    ({"kafka.spout.topics": ["t"], "kafka.spout.retry.max.retries": -1}, "kafka.spout.retry.max.retries"),
])
def test_bad_settings_are_one_clear_error_at_build_time(conf: dict[str, Any], message: str) -> None:
    ks.client()
    with pytest.raises(StormError) as err:
        _build(**conf)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.timeout(150)
def test_kafka_bolt_acks_only_after_delivery(cluster: LocalCluster, record_dir: Path) -> None:
    """The broker is paused (SIGSTOP) mid-run: deliveries time out, their tuples
    fail and are replayed; once it is back every number is written, and every
    number the spout saw acked is in the topic."""
    count = 3000
    with ks.private_broker() as broker:
        topic = ks.topic_name("out")
        ks.create_topic(broker.address, topic, 2)
        conf = {kt.TOPIC: topic, "itest.dir": str(record_dir), "kafka.bootstrap.servers": broker.address,
                "itest.count": count, "itest.rate": 300,
                "kafka.bolt.producer": {"message.timeout.ms": 1500, "socket.timeout.ms": 1000}}
        topo = cluster.submit(f"{TOPOS}:producer", config=conf)

        def acked() -> int:
            return len(kt.read_lines(record_dir, "acks"))
        wait_for(topo, lambda: acked() >= 600, "600 numbers written and acked", timeout=60)
        broker.pause()
        try:
            paused_at = acked()
            wait_for(topo, lambda: sum(s.get("failed", 0) for s in _summaries(record_dir, "a_numbers")) > 0,
                     "tuples fail while the broker is paused", timeout=60)
            acked_while_paused = acked() - paused_at
        finally:
            broker.resume()
        wait_for(topo, lambda: any(s.get("finished") for s in _summaries(record_dir, "a_numbers")),
                 "every number acked after the broker came back", timeout=90)
        topo.stop()
        written = [int(m.value()) for m in ks.read_all(broker.address, topic, 2)]
    acks = {int(line[0]) for line in kt.read_lines(record_dir, "acks")}
    summary = _summaries(record_dir, "a_numbers")[0]
    assert acks == set(range(count))
    assert set(written) >= acks, f"acked but not in the topic: {sorted(acks - set(written))[:10]}"
    assert summary["failed"] > 0 and summary["replays"] > 0, summary
    print(f"\nkafka bolt: {count} numbers, {summary['failed']} tuples failed while the broker was paused "
          f"(acked in that time: {acked_while_paused}, reports already on their way), {summary['replays']} "
          f"replays, {len(written)} records written ({len(written) - len(set(written))} duplicates)")


@pytest.mark.timeout(120)
def test_max_uncommitted_offsets_pauses_a_partition_without_loss(cluster: LocalCluster,
                                                                 record_dir: Path) -> None:
    """With max.uncommitted.offsets 20 and a bolt holding every ack, the spout
    emits 20 records of the partition and pauses it; once the acks come, the
    rest follows and everything is committed."""
    with ks.broker() as broker:
        topic, group = ks.topic_name("window"), ks.topic_name("g")
        ks.create_topic(broker.address, topic, 1)
        ks.produce(broker.address, topic, ((None, b"r%d" % i) for i in range(200)))
        conf = {kt.TOPIC: topic, "itest.dir": str(record_dir), "kafka.bootstrap.servers": broker.address,
                "kafka.spout.group.id": group, "kafka.spout.offset.commit.period.ms": 200,
                "kafka.spout.consumer": ks.FAST_GROUP}
        topo = cluster.submit(f"{TOPOS}:held", config=conf)
        wait_for(topo, lambda: len(kt.read_lines(record_dir, "held")) >= 20, "20 records held", timeout=60)
        wait_for(topo, lambda: any(s.get("paused") == [f"{topic}:0"] and s.get("emitted") == 20
                                   for s in _summaries(record_dir, "a_kafka")),
                 "the spout emitted 20 records and paused the partition", timeout=30)
        # One more summary (the spout's loop writes it each second) while paused.
        marker = record_dir / "a_kafka-1.json"
        stamp = marker.stat().st_mtime_ns
        wait_for(topo, lambda: marker.stat().st_mtime_ns != stamp, "the spout wrote its summary again")
        latest = _summaries(record_dir, "a_kafka")[0]
        held_while_paused = len(kt.read_lines(record_dir, "held"))
        assert held_while_paused == 20 and latest["emitted"] == 20, (held_while_paused, latest)
        (record_dir / "release").write_text("")
        wait_for(topo, lambda: ks.committed(broker.address, group, topic, 1) == {0: 200},
                 "every offset committed after the acks", timeout=60)
        topo.stop()
    offsets = sorted({int(o) for _p, o in kt.read_lines(record_dir, "held")})
    assert offsets == list(range(200))


@pytest.mark.timeout(120)
def test_regex_subscription_and_a_translator_to_two_streams(cluster: LocalCluster, record_dir: Path) -> None:
    with ks.broker() as broker:
        base = ks.topic_name("multi")
        for suffix in ("a", "b"):
            ks.create_topic(broker.address, f"{base}-{suffix}", 1)
            ks.produce(broker.address, f"{base}-{suffix}", ((None, f"{suffix}{i}".encode()) for i in range(30)))
        conf = {kt.TOPIC: f"^{base}-.*", "itest.dir": str(record_dir), "kafka.bootstrap.servers": broker.address,
                "kafka.spout.consumer": ks.FAST_GROUP}
        topo = cluster.submit(f"{TOPOS}:streams", config=conf)
        wait_for(topo, lambda: len(kt.read_lines(record_dir, "stream-b_a")) >= 30
                 and len(kt.read_lines(record_dir, "stream-c_b")) >= 30, "both topics on their streams", timeout=90)
        topo.stop()
    a = {tuple(x) for x in kt.read_lines(record_dir, "stream-b_a")}
    b = {tuple(x) for x in kt.read_lines(record_dir, "stream-c_b")}
    assert a == {("a", f"{base}-a", f"a{i}") for i in range(30)}
    assert b == {("b", f"{base}-b", f"b{i}") for i in range(30)}


@pytest.mark.timeout(120)
def test_no_guarantee_commits_what_was_polled_and_never_replays(cluster: LocalCluster, record_dir: Path) -> None:
    """Every record fails downstream; with NO_GUARANTEE nothing is replayed and
    the polled positions are committed all the same."""
    with ks.broker() as broker:
        topic, group = ks.topic_name("nog"), ks.topic_name("g")
        ks.create_topic(broker.address, topic, 2)
        ks.produce(broker.address, topic, ((None, b"poison %d" % i) for i in range(100)),
                   partition_of=lambda i: i % 2)
        conf = {kt.TOPIC: topic, "itest.dir": str(record_dir), "kafka.bootstrap.servers": broker.address,
                "kafka.spout.group.id": group, "kafka.spout.processing.guarantee": "NO_GUARANTEE",
                "kafka.spout.offset.commit.period.ms": 200, "kafka.spout.consumer": ks.FAST_GROUP}
        topo = cluster.submit(f"{TOPOS}:poison", config=conf)
        wait_for(topo, lambda: ks.committed(broker.address, group, topic, 2) == {0: 50, 1: 50},
                 "the polled positions committed", timeout=60)
        topo.stop()
    attempts = kt.read_lines(record_dir, "attempts")
    assert len(attempts) == 100 and len({tuple(a) for a in attempts}) == 100, "a record was replayed"
