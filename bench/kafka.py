"""Kafka in: records/s from a pre-filled topic (4 partitions, five-word
sentences) through KafkaSpout -> split -> count (2 workers, 2 tasks each),
with acking on (AT_LEAST_ONCE: each record a tuple tree, offsets committed
once acked) and off (NO_GUARANTEE: no tuple trees), beside the ceiling: a bare
confluent-kafka consumer reading and decoding the same topic in one process.

    python bench/kafka.py [--records 200000] [--rounds 3] [--bootstrap HOST:PORT]

Without --bootstrap it starts a private broker with scripts/kafka (Tansu;
`scripts/kafka install` first). The rate of a topology run is taken between
10% and 90% of the records counted (the group join before is not counted);
rows are interleaved round by round and medians reported, with the ratio of
each to the ceiling.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from storm import Bolt, Grouping, LocalCluster, Topology, TopologyContext, Tuple
from storm.kafka import KafkaSpout

HERE = Path(__file__).resolve()
SCRIPT = HERE.parents[1] / "scripts" / "kafka"
WORDS_PER_RECORD = 5
VOCABULARY = [f"w{i}" for i in range(1000)]


class Split(Bolt):
    outputs = ["word"]

    def execute(self, tup: Tuple) -> None:
        for word in tup["value"].split():
            self.emit([word], anchors=[tup])
        self.ack(tup)


class Count(Bolt):
    def prepare(self, conf: dict[str, Any], context: TopologyContext) -> None:
        self.counts: dict[str, int] = {}

    def execute(self, tup: Tuple) -> None:
        w = tup[0]
        self.counts[w] = self.counts.get(w, 0) + 1
        self.ack(tup)


class KafkaBench(Topology):
    config = {"topology.workers": 2, "topology.max.spout.pending": 2000,
              "topology.metrics.interval.secs": 0.25, "kafka.spout.offset.commit.period.ms": 1000,
              "kafka.spout.consumer": {"session.timeout.ms": 6000}}
    sentences = KafkaSpout.spec(par=2)
    split = Split.spec(inputs=[sentences], par=2)
    count = Count.spec(inputs={split: Grouping.fields("word")}, par=2)


def fill(address: str, topic: str, n: int) -> None:
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": address})
    for fut in admin.create_topics([NewTopic(topic, num_partitions=4, replication_factor=1)]).values():
        fut.result(timeout=30)
    producer = Producer({"bootstrap.servers": address, "linger.ms": 20})
    for i in range(n):
        words = " ".join(VOCABULARY[(i * 7 + k * 131) % 1000] for k in range(WORDS_PER_RECORD))
        while True:
            try:
                producer.produce(topic, words.encode())
                break
            except BufferError:
                producer.poll(0.05)
    assert producer.flush(120) == 0


def raw_consumer(address: str, topic: str, n: int) -> float:
    """Records/s of one confluent-kafka consumer reading and decoding every record."""
    from confluent_kafka import Consumer

    c = Consumer({"bootstrap.servers": address, "group.id": f"raw-{uuid.uuid4().hex[:8]}",
                  "enable.auto.commit": False, "auto.offset.reset": "earliest", "session.timeout.ms": 6000})
    c.subscribe([topic])
    got = 0
    t10 = t90 = None
    while got < n:
        for m in c.consume(500, 1.0):
            if m.error() is None:
                m.value().decode().split()
                got += 1
                if t10 is None and got >= n // 10:
                    t10 = time.perf_counter()
                if t90 is None and got >= n * 9 // 10:
                    t90 = time.perf_counter()
    c.close()
    assert t10 is not None and t90 is not None
    return (n * 8 // 10) / (t90 - t10)


def topology(address: str, topic: str, n: int, guarantee: str) -> float:
    """Records/s through the topology, between 10% and 90% of the words counted."""
    conf = {"kafka.bootstrap.servers": address, "kafka.spout.topics": [topic],
            "kafka.spout.group.id": f"bench-{uuid.uuid4().hex[:8]}",
            "kafka.spout.processing.guarantee": guarantee}
    words = n * WORDS_PER_RECORD
    with LocalCluster() as cluster:
        topo = cluster.submit(f"{HERE}:KafkaBench", config=conf, name=f"bench-kafka-{guarantee.lower()}")

        def counted() -> int:
            return sum(v["executed"] for v in topo.metrics().values() if v["component"] == "count")
        marks: dict[float, float] = {}
        deadline = time.monotonic() + 600
        while len(marks) < 2 and time.monotonic() < deadline:
            c = counted()
            for share in (0.1, 0.9):
                if share not in marks and c >= share * words:
                    marks[share] = time.perf_counter()
            time.sleep(0.05)  # sampling the counters, not waiting for a condition
        topo.stop()
    if len(marks) < 2:
        raise SystemExit(f"{guarantee}: the topology did not count {words} words in 600 s")
    return (n * 0.8) / (marks[0.9] - marks[0.1])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--bootstrap", help="an existing broker (default: start a private one)")
    args = ap.parse_args()
    directory = None
    address = args.bootstrap
    env = dict(os.environ)
    if address is None:
        directory = tempfile.mkdtemp(prefix="storm-bench-kafka-")
        env["STORM_KAFKA_DIR"] = directory
        port = _free_port()
        subprocess.run([str(SCRIPT), "start", str(port)], env=env, check=True)
        address = f"127.0.0.1:{port}"
    try:
        topic = f"bench-{uuid.uuid4().hex[:8]}"
        t0 = time.perf_counter()
        fill(address, topic, args.records)
        print(f"{args.records} records ({WORDS_PER_RECORD} words each) in 4 partitions written in "
              f"{time.perf_counter() - t0:.1f}s; {args.rounds} round(s)", flush=True)
        rows: dict[str, list[float]] = {"raw confluent-kafka consumer": [], "KafkaSpout acking off": [],
                                        "KafkaSpout acking on": []}
        for r in range(args.rounds):
            order = list(rows)
            order = order[r % 3:] + order[:r % 3]
            for name in order:
                if name.startswith("raw"):
                    v = raw_consumer(address, topic, args.records)
                else:
                    v = topology(address, topic, args.records,
                                 "NO_GUARANTEE" if "off" in name else "AT_LEAST_ONCE")
                rows[name].append(v)
                print(f"  round {r + 1}: {name:<30} {v:>10,.0f} records/s", flush=True)
        ceiling = statistics.median(rows["raw confluent-kafka consumer"])
        print(f"\n{'median':<32}{'records/s':>12}{'min':>12}{'max':>12}{'of raw':>9}")
        for name, vs in rows.items():
            med = statistics.median(vs)
            print(f"{name:<32}{med:>12,.0f}{min(vs):>12,.0f}{max(vs):>12,.0f}{med / ceiling:>9.1%}")
        on, off = statistics.median(rows["KafkaSpout acking on"]), statistics.median(rows["KafkaSpout acking off"])
        print(f"\nacking on / off: {on / off:.2f}")
    finally:
        if directory is not None:
            subprocess.run([str(SCRIPT), "stop"], env=env, check=False)
            shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
