"""Topologies of the Kafka tests (real workers, a real broker).

`wordcount`: KafkaSpout (2 tasks) -> split (2) -> a sink (2) that logs every
word it receives as ``partition offset index word`` (one os.write per line,
so a SIGKILL loses nothing the sink acked), then acks it. Task ids follow
component names: a_kafka 1 (worker 0), 2 (worker 1); b_split 3, 4; c_sink 5, 6.
With a hold file ``<itest.dir>/hold-<task>`` the spout task does not join
the consumer group until the file is gone (a restarted worker held back, so
the other task must take its partitions).

`poison`: KafkaSpout -> a bolt that fails every record whose value starts
with "poison" (logging each attempt) and acks the others.

`at_most_once`: KafkaSpout (AT_MOST_ONCE) -> a bolt that, for each record,
reads the group's committed offset of its partition and logs both.

`producer`: a ListSpout of numbers (rate-limited, acks logged) -> KafkaBolt.

`streams`: a KafkaSpout on a topic regex whose translator (`route`) sends
each record to stream `a` or `b` by topic -> one logging bolt per stream.

`held`: KafkaSpout (max.uncommitted.offsets 20) -> a bolt holding every ack.

Config keys: itest.dir, itest.topic, itest.count, itest.rate, and the
kafka.* keys of storm.kafka."""

from __future__ import annotations

import os
from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import Any

from topos_common import RECORD_DIR
from topos_reliability import NumberSource

from storm import Bolt, Stream, Topology, TopologyContext, Tuple
from storm.kafka import KafkaBolt, KafkaSpout, StreamValues
from storm.spouts import SUMMARY_DIR_KEY

TOPIC = "itest.topic"


def _append(conf: dict[str, Any], name: str, task: int) -> int:
    path = os.path.join(conf[RECORD_DIR], f"{name}-{task}-{os.getpid()}.log")
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)


def read_lines(directory: str | os.PathLike[str], name: str) -> list[list[str]]:
    """Every complete line of the `name`-*.log files, split on spaces."""
    out: list[list[str]] = []
    for p in Path(directory).glob(f"{name}-*.log"):
        out.extend(line.split(" ") for line in p.read_bytes().decode().split("\n")[:-1])
    return out


class HeldKafkaSpout(KafkaSpout):
    """A KafkaSpout that joins its group only once <itest.dir>/hold-<task> is absent."""

    def open(self, conf: dict[str, Any], context: TopologyContext) -> None:
        self._args = (conf, context)
        self._hold = Path(conf[RECORD_DIR]) / f"hold-{context.task_id}"
        self._joined = False
        self._join_if_free()

    def _join_if_free(self) -> None:
        if not self._joined and not self._hold.exists():
            self._joined = True
            super().open(*self._args)

    def next_tuple(self) -> None:
        self._join_if_free()
        if self._joined:
            super().next_tuple()

    def close(self) -> None:
        if self._joined:
            super().close()


class Split(Bolt):
    outputs = ["partition", "offset", "index", "word"]

    def execute(self, tup: Tuple) -> None:
        for i, word in enumerate(str(tup["value"]).split()):
            self.emit([tup["partition"], tup["offset"], i, word], anchors=[tup])
        self.ack(tup)


class WordSink(Bolt):
    def prepare(self, conf: dict[str, Any], context: TopologyContext) -> None:
        self.fd = _append(conf, "words", context.task_id)

    def execute(self, tup: Tuple) -> None:
        p, o, i, w = tup.values
        os.write(self.fd, f"{p} {o} {i} {w}\n".encode())
        self.ack(tup)

    def cleanup(self) -> None:
        os.close(self.fd)


def _spout_conf(conf: dict[str, Any]) -> dict[str, Any]:
    return {"kafka.spout.topics": [conf[TOPIC]], SUMMARY_DIR_KEY: conf[RECORD_DIR]}


def wordcount(conf: dict[str, Any]) -> Any:
    class KafkaWordCount(Topology):
        config = {
            "topology.workers": 2,
            "topology.max.spout.pending": 500,
            "topology.message.timeout.secs": 10.0,
        }
        a_kafka = HeldKafkaSpout.spec(par=2, config=_spout_conf(conf))
        b_split = Split.spec(inputs=[a_kafka], par=2)
        c_sink = WordSink.spec(inputs=[b_split], par=2)

    return KafkaWordCount.build(conf)


class PoisonBolt(Bolt):
    """Fails records whose value starts with 'poison'; logs each attempt at them."""

    def prepare(self, conf: dict[str, Any], context: TopologyContext) -> None:
        self.fd = _append(conf, "attempts", context.task_id)

    def execute(self, tup: Tuple) -> None:
        if str(tup["value"]).startswith("poison"):
            os.write(self.fd, f"{tup['partition']} {tup['offset']}\n".encode())
            self.fail(tup)
        else:
            self.ack(tup)

    def cleanup(self) -> None:
        os.close(self.fd)


def poison(conf: dict[str, Any]) -> Any:
    class KafkaPoison(Topology):
        config = {"topology.workers": 1, "topology.message.timeout.secs": 10.0}
        a_kafka = KafkaSpout.spec(config=_spout_conf(conf))
        b_check = PoisonBolt.spec(inputs=[a_kafka])

    return KafkaPoison.build(conf)


class CommittedProbe(Bolt):
    """Logs `partition offset committed` for each record it gets, reading the
    group's committed offset of that partition from the broker."""

    def prepare(self, conf: dict[str, Any], context: TopologyContext) -> None:
        import confluent_kafka as ck

        self.ck = ck
        self.fd = _append(conf, "probe", context.task_id)
        self.consumer = ck.Consumer({"bootstrap.servers": conf["kafka.bootstrap.servers"],
                                     "group.id": conf["kafka.spout.group.id"], "enable.auto.commit": False})
        self.topic = conf[TOPIC]

    def execute(self, tup: Tuple) -> None:
        p, o = tup["partition"], tup["offset"]
        got = self.consumer.committed([self.ck.TopicPartition(self.topic, p)], timeout=10)
        os.write(self.fd, f"{p} {o} {got[0].offset}\n".encode())
        self.ack(tup)

    def cleanup(self) -> None:
        os.close(self.fd)
        self.consumer.close()


def at_most_once(conf: dict[str, Any]) -> Any:
    class KafkaAtMostOnce(Topology):
        config = {"topology.workers": 1}
        a_kafka = KafkaSpout.spec(config={**_spout_conf(conf),
                                          "kafka.spout.processing.guarantee": "AT_MOST_ONCE"})
        b_probe = CommittedProbe.spec(inputs=[a_kafka])

    return KafkaAtMostOnce.build(conf)


class Numbers(NumberSource):
    """Numbers as [n] (field `message`), acks logged (topos_reliability)."""

    outputs = ["message"]

    def next_message(self) -> tuple[Hashable, Sequence[Any]] | None:
        return super().next_message()


def producer(conf: dict[str, Any]) -> Any:
    class KafkaProducer(Topology):
        config = {"topology.workers": 1, "topology.message.timeout.secs": 10.0,
                  "topology.max.spout.pending": 200}
        a_numbers = Numbers.spec(config={SUMMARY_DIR_KEY: conf[RECORD_DIR]})
        b_kafka = KafkaBolt.spec(inputs=[a_numbers], config={"kafka.bolt.topic": conf[TOPIC]})

    return KafkaProducer.build(conf)


class HoldBolt(Bolt):
    """Logs each record's offset and holds it un-acked until <itest.dir>/release exists."""

    def prepare(self, conf: dict[str, Any], context: TopologyContext) -> None:
        self.fd = _append(conf, "held", context.task_id)
        self.release = Path(conf[RECORD_DIR]) / "release"
        self.held: list[Tuple] = []

    def execute(self, tup: Tuple) -> None:
        os.write(self.fd, f"{tup['partition']} {tup['offset']}\n".encode())
        self.held.append(tup)
        self._maybe_release()

    def process_tick(self, tup: Tuple) -> None:
        self._maybe_release()

    def _maybe_release(self) -> None:
        if self.held and self.release.exists():
            for t in self.held:
                self.ack(t)
            self.held = []

    def cleanup(self) -> None:
        os.close(self.fd)


def held(conf: dict[str, Any]) -> Any:
    class KafkaHeld(Topology):
        config = {"topology.workers": 1, "topology.message.timeout.secs": 60.0}
        a_kafka = KafkaSpout.spec(config={**_spout_conf(conf), "kafka.spout.max.uncommitted.offsets": 20})
        b_hold = HoldBolt.spec(inputs=[a_kafka], config={"topology.tick.tuple.freq.secs": 0.3})

    return KafkaHeld.build(conf)


def route(record: Any) -> Any:
    """A record translator (kafka.spout.record.translator = kafka_topos:route):
    records of topics ending in -a go to stream `a`, the others to `b`."""
    stream = "a" if record.topic.endswith("-a") else "b"
    return StreamValues(stream, [record.topic, record.value])


class StreamLog(Bolt):
    def prepare(self, conf: dict[str, Any], context: TopologyContext) -> None:
        self.fd = _append(conf, f"stream-{context.component_id}", context.task_id)

    def execute(self, tup: Tuple) -> None:
        os.write(self.fd, f"{tup.stream} {tup['topic']} {tup['value']}\n".encode())
        self.ack(tup)

    def cleanup(self) -> None:
        os.close(self.fd)


def streams(conf: dict[str, Any]) -> Any:
    class KafkaStreams(Topology):
        config = {"topology.workers": 1}
        a_kafka = KafkaSpout.spec(
            outputs=[Stream(["topic", "value"], name="a"), Stream(["topic", "value"], name="b")],
            config={"kafka.spout.topic.pattern": conf[TOPIC], SUMMARY_DIR_KEY: conf[RECORD_DIR],
                    "kafka.spout.record.translator": "kafka_topos:route"})
        b_a = StreamLog.spec(inputs=[a_kafka["a"]])
        c_b = StreamLog.spec(inputs=[a_kafka["b"]])

    return KafkaStreams.build(conf)
