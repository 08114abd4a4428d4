"""Trident spouts over a Kafka topic: a batch is an offset range per partition
(stored in the batch metadata by the emitter, storm.trident._executor), so a
replayed txid re-reads its records from the same start. Opaque: a replay
takes what is there from its start; transactional: a replay must find exactly
the stored range (for topics whose partitions and records do not change, no
compaction or deletion under the range). This module owns only reading a
range with an assigned consumer (no group membership, no commits: Trident's
metadata is the committed position)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from .._errors import ConfigError, StormError
from ._spouts import TridentSpout

__all__ = ["OpaqueKafkaSpout", "TransactionalKafkaSpout"]

DEFAULT_FIELDS = ("topic", "partition", "offset", "key", "value", "timestamp")


class OpaqueKafkaSpout(TridentSpout):
    """An opaque-transactional Trident spout over `topic`'s partitions.

    Each batch holds up to ``batch_size`` records per partition; rows are the
    default fields (topic, partition, offset, key, value, timestamp) or, with
    one field, ``[value]``, or ``translate(record)`` (a storm.kafka.KafkaRecord).
    ``partitions`` defaults to the topic's partition count, asked of the
    broker when first needed. ``fetch_timeout`` bounds the wait for one range."""

    kind = "opaque"

    def __init__(self, bootstrap_servers: str, topic: str, fields: Sequence[str] = DEFAULT_FIELDS,
                 batch_size: int = 1000, partitions: int | None = None, value_json: bool = False,
                 translate: Callable[[Any], Sequence[Any]] | None = None,
                 consumer: dict[str, Any] | None = None, fetch_timeout: float = 5.0) -> None:
        if not topic or not bootstrap_servers:
            raise ConfigError("a Kafka Trident spout needs bootstrap_servers and a topic")
        super().__init__(fields, batch_size, 1)
        if translate is None and tuple(fields) != DEFAULT_FIELDS and len(self.fields) != 1:
            raise ConfigError(f"Kafka Trident spout on '{topic}': fields {list(fields)} need a translate "
                              f"function (the default rows are {list(DEFAULT_FIELDS)} or, with one field, [value])")
        self.bootstrap_servers = bootstrap_servers
        self.topic = topic
        self._partitions = partitions
        self.value_json = value_json
        self.translate = translate
        self.consumer_conf = dict(consumer or {})
        if "enable.auto.commit" in self.consumer_conf:
            raise ConfigError(f"Kafka Trident spout on '{topic}': enable.auto.commit is refused; "
                              "the batch metadata is the committed position")
        self.fetch_timeout = fetch_timeout
        self._consumer: Any = None
        self._ck: Any = None

    @property
    def partitions(self) -> int:
        if self._partitions is None:
            self._partitions = self._partition_count()
        return self._partitions

    @partitions.setter
    def partitions(self, value: int) -> None:
        self._partitions = value

    def _client(self) -> Any:
        if self._consumer is None:
            from ..kafka._settings import confluent

            ck = self._ck = confluent(f"Kafka Trident spout on '{self.topic}'")
            self._consumer = ck.Consumer({
                "bootstrap.servers": self.bootstrap_servers,
                "group.id": f"storm-trident-{self.topic}",
                # The broker answers an empty fetch at once: an idle partition ends a range quickly.
                "fetch.wait.max.ms": 10,
                **self.consumer_conf,
                "enable.auto.commit": False,
                "enable.partition.eof": True,
            })
        return self._consumer

    def _partition_count(self) -> int:
        consumer = self._client()
        md = consumer.list_topics(self.topic, timeout=30).topics.get(self.topic)
        if md is None or md.error is not None or not md.partitions:
            raise StormError(f"Kafka Trident spout: topic '{self.topic}' is not on {self.bootstrap_servers}"
                             f" ({md.error if md is not None else 'no metadata'}); create it first")
        return len(md.partitions)

    def _row(self, msg: Any) -> Sequence[Any]:
        from ..kafka._record import decode_record

        record = decode_record(msg, self.value_json)
        if self.translate is not None:
            return self.translate(record)
        if len(self.fields) == 1:
            return [record.value]
        return [record.topic, record.partition, record.offset, record.key, record.value, record.timestamp]

    def read_range(self, partition: int, start: int, max_count: int,
                   stop: int | None = None) -> tuple[list[Sequence[Any]], int]:
        """Up to `max_count` rows of `partition` from offset `start` (below
        `stop` when given), and the offset after the last one read (`start`
        when none): the range the batch covers."""
        consumer = self._client()
        ck = self._ck
        consumer.assign([ck.TopicPartition(self.topic, partition, start)])
        rows: list[Sequence[Any]] = []
        after = start
        deadline = time.monotonic() + self.fetch_timeout
        while len(rows) < max_count and (stop is None or after < stop):
            left = deadline - time.monotonic()
            if left <= 0:
                if stop is None:
                    break  # what arrived in time is this batch
                raise StormError(f"Kafka Trident spout: {self.topic}[{partition}] did not return offsets "
                                 f"{after}..{stop} within {self.fetch_timeout}s")
            at_end = False
            for m in consumer.consume(max_count - len(rows), min(left, 0.2)):
                err = m.error()
                if err is not None:
                    if err.code() == ck.KafkaError._PARTITION_EOF:
                        at_end = True
                        continue
                    raise StormError(f"Kafka Trident spout: reading {self.topic}[{partition}]: {err}")
                offset = m.offset()
                if offset < after or (stop is not None and offset >= stop):
                    continue
                rows.append(self._row(m))
                after = offset + 1
                if len(rows) >= max_count:
                    break
            if at_end and (stop is None or after >= stop):
                break
            if at_end and stop is not None:
                raise StormError(f"Kafka Trident spout: {self.topic}[{partition}] ends at {after}, before "
                                 f"the stored range's end {stop}: the topic lost records")
        return rows, after

    def read(self, partition: int, offset: int, max_count: int) -> list[Sequence[Any]]:
        return self.read_range(partition, offset, max_count)[0]


class TransactionalKafkaSpout(OpaqueKafkaSpout):
    """A transactional Trident spout over a topic: a replayed txid re-reads
    exactly its stored offset range (and fails if the topic no longer has it)."""

    kind = "transactional"
