"""Word count from Kafka to Kafka, at-least-once: KafkaSpout (topic
``sentences``, 2 tasks in one consumer group) -> split -> count (fields
grouping) -> KafkaBolt (topic ``word-counts``: key = the word, value = its
count so far; a count is acked only once the broker confirmed it).

Fill the input topic, then run the topology (needs ``pip install 'storm-streams[kafka]'``):

    python topologies/kafka_wordcount.py produce 127.0.0.1:9092 10000
    storm local topologies/kafka_wordcount.py -c kafka.bootstrap.servers=127.0.0.1:9092 --duration 60

Config keys: ``kafka.bootstrap.servers`` (default 127.0.0.1:9092),
``kafka.spout.topics`` (default [sentences]), ``kafka.bolt.topic`` (default
word-counts), and every other key of storm.kafka."""

from __future__ import annotations

import random
import sys
from typing import Any

from storm import Bolt, Grouping, Topology, TopologyContext, Tuple
from storm.kafka import KafkaBolt, KafkaSpout

WORDS = ["the", "cow", "jumped", "over", "moon", "an", "apple", "a", "day", "keeps", "doctor", "away"]


class Split(Bolt):
    outputs = ["word"]

    def execute(self, tup: Tuple) -> None:
        for word in str(tup["value"]).split():
            self.emit([word], anchors=[tup])
        self.ack(tup)


class Count(Bolt):
    outputs = ["word", "count"]

    def prepare(self, conf: dict[str, Any], context: TopologyContext) -> None:
        self.counts: dict[str, int] = {}

    def execute(self, tup: Tuple) -> None:
        word = tup["word"]
        n = self.counts[word] = self.counts.get(word, 0) + 1
        self.emit([word, n], anchors=[tup])
        self.ack(tup)


class KafkaWordCount(Topology):
    config = {
        "kafka.bootstrap.servers": "127.0.0.1:9092",
        "kafka.spout.topics": ["sentences"],
        "kafka.spout.offset.commit.period.ms": 1000,
        "kafka.bolt.topic": "word-counts",
        "topology.max.spout.pending": 1000,
    }
    sentences = KafkaSpout.spec(par=2)
    split = Split.spec(inputs=[sentences], par=2)
    count = Count.spec(inputs={split: Grouping.fields("word")}, par=2)
    counts = KafkaBolt.spec(inputs=[count], config={"kafka.bolt.key.field": "word",
                                                    "kafka.bolt.value.field": "count"})


def produce(servers: str, n: int, seed: int = 1) -> None:
    """Create the topics (4 partitions each) if missing and write `n` sentences."""
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": servers})
    existing = admin.list_topics(timeout=30).topics
    wanted = [NewTopic(t, num_partitions=4, replication_factor=1) for t in ("sentences", "word-counts")
              if t not in existing]
    for fut in (admin.create_topics(wanted).values() if wanted else []):
        fut.result(timeout=30)
    rng = random.Random(seed)
    producer = Producer({"bootstrap.servers": servers, "linger.ms": 20})
    for _ in range(n):
        while True:
            try:
                producer.produce("sentences", " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 8))))
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    if producer.flush(60):
        sys.exit("error: not every sentence was delivered within 60 s")
    print(f"wrote {n} sentences to 'sentences' on {servers}")


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] != "produce":
        sys.exit("usage: python topologies/kafka_wordcount.py produce BOOTSTRAP_SERVERS COUNT")
    produce(sys.argv[2], int(sys.argv[3]))
