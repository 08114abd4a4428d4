"""Test-side helpers of the Kafka tests: the broker (the one CI started,
STORM_TEST_KAFKA, else a private Tansu broker started with scripts/kafka, else
a skip outside CI and a failure under CI=true), and small client calls the
tests make from outside the workers: create a topic, fill it, read it back,
read a group's committed offsets."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "kafka"
ENV = "STORM_TEST_KAFKA"
# A consumer group's first join waits about half the session timeout on Tansu.
FAST_GROUP = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 500}


def unavailable(reason: str) -> None:
    """Skip outside CI; fail under CI=true (CI must provide the broker)."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI must start a broker: .ci/run uses scripts/kafka)", pytrace=False)
    pytest.skip(reason)


def client() -> Any:
    try:
        import confluent_kafka
    except ImportError:
        unavailable("confluent-kafka is not installed (pip install 'storm-streams[kafka]')")
    return confluent_kafka


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Broker:
    address: str
    pid: int | None = None  # set for a private broker this test may pause

    def pause(self) -> None:
        assert self.pid is not None, "only a private broker can be paused"
        os.kill(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.pid is not None
        os.kill(self.pid, signal.SIGCONT)


@contextmanager
def private_broker() -> Iterator[Broker]:
    """A broker of this test's own on a free port, stopped afterwards."""
    client()
    found = subprocess.run([str(SCRIPT), "bin"], capture_output=True, text=True, check=False)
    if found.returncode != 0:
        unavailable("no Kafka broker binary here (scripts/kafka install)")
    directory = tempfile.mkdtemp(prefix="storm-test-kafka-")
    env = {**os.environ, "STORM_KAFKA_DIR": directory}
    port = _free_port()
    try:
        subprocess.run([str(SCRIPT), "start", str(port)], env=env, check=True, timeout=60)
        pid = int(Path(directory, "broker.pid").read_text())
        yield Broker(f"127.0.0.1:{port}", pid)
    finally:
        subprocess.run([str(SCRIPT), "stop"], env=env, check=False, timeout=60)
        shutil.rmtree(directory, ignore_errors=True)


@contextmanager
def broker() -> Iterator[Broker]:
    """CI's broker (STORM_TEST_KAFKA) or a private one."""
    client()
    address = os.environ.get(ENV)
    if address:
        yield Broker(address)
        return
    with private_broker() as b:
        yield b


def topic_name(prefix: str) -> str:
    """A fresh topic name: tests share one broker."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def create_topic(address: str, topic: str, partitions: int) -> None:
    ck = client()
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": address})
    for fut in admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)]).values():
        fut.result(timeout=30)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        md = admin.list_topics(topic, timeout=10).topics.get(topic)
        if md is not None and md.error is None and len(md.partitions) == partitions:
            return
        time.sleep(0.05)
    raise AssertionError(f"topic {topic} did not appear with {partitions} partitions ({ck.version()})")


def produce(address: str, topic: str, values: Iterable[tuple[bytes | None, bytes]],
            partition_of: Any = None) -> int:
    """Write (key, value) records; waits for every delivery report. Returns the count."""
    ck = client()
    producer = ck.Producer({"bootstrap.servers": address, "linger.ms": 20, "acks": "all"})
    errors: list[Any] = []
    n = 0

    def report(err: Any, _msg: Any) -> None:
        if err is not None:
            errors.append(err)

    for i, (key, value) in enumerate(values):
        kwargs: dict[str, Any] = {"key": key, "value": value, "on_delivery": report}
        if partition_of is not None:
            kwargs["partition"] = partition_of(i)
        while True:
            try:
                producer.produce(topic, **kwargs)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
        n += 1
    left = producer.flush(60)
    assert left == 0 and not errors, f"producing to {topic}: {left} undelivered, errors {errors[:3]}"
    return n


def read_all(address: str, topic: str, partitions: int, timeout: float = 60.0) -> list[Any]:
    """Every record of `topic` now, read to the end of each partition."""
    ck = client()
    consumer = ck.Consumer({"bootstrap.servers": address, "group.id": topic_name("reader"),
                            "enable.auto.commit": False, "enable.partition.eof": True})
    consumer.assign([ck.TopicPartition(topic, p, ck.OFFSET_BEGINNING) for p in range(partitions)])
    out: list[Any] = []
    at_end: set[int] = set()
    deadline = time.monotonic() + timeout
    try:
        while len(at_end) < partitions:
            assert time.monotonic() < deadline, f"reading {topic}: no end of partitions {at_end} in {timeout}s"
            for m in consumer.consume(1000, 0.5):
                if m.error() is not None:
                    if m.error().code() == ck.KafkaError._PARTITION_EOF:
                        at_end.add(m.partition())
                    continue
                at_end.discard(m.partition())
                out.append(m)
    finally:
        consumer.close()
    return out


def committed(address: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    """{partition: committed offset} of `group` (partitions with none are left out).
    Read without joining the group."""
    ck = client()
    consumer = ck.Consumer({"bootstrap.servers": address, "group.id": group, "enable.auto.commit": False})
    try:
        got = consumer.committed([ck.TopicPartition(topic, p) for p in range(partitions)], timeout=30)
    finally:
        consumer.close()
    return {tp.partition: tp.offset for tp in got if tp.offset >= 0}


def end_offsets(address: str, topic: str, partitions: int) -> dict[int, int]:
    """{partition: the offset after its last record}, as a fetch reports it
    (Tansu's ListOffsets answers the last batch's first offset + 1)."""
    ends: dict[int, int] = {}
    for m in read_all(address, topic, partitions):
        ends[m.partition()] = max(ends.get(m.partition(), 0), m.offset() + 1)
    return ends
