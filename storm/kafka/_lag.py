"""Consumer-group lag of a topology's Kafka spouts, read from the brokers as
Storm UI's ``topology/{id}/lag`` does (storm-kafka-monitor): per partition the
group's committed offset, the end of the log, and lag = end - committed. The
spouts to look at come from the topology spec (`kafka_sources`), so nothing
runs in the workers; nimbus, `storm stats`, `storm monitor` and the
Prometheus endpoint call `LagReader`. Owns short-lived clients only."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypedDict

from .._errors import StormError

__all__ = ["LagReader", "PartitionLag", "kafka_sources", "lag_families", "query_lag"]


class KafkaSourceInfo(TypedDict):
    """What lag needs of one KafkaSpout component (plain data: nimbus stores it)."""

    bootstrap_servers: str
    group_id: str
    topics: list[str]
    pattern: str | None


class PartitionLag(TypedDict):
    component: str
    group: str
    topic: str
    partition: int
    committed: int | None
    end: int
    lag: int


def source_info(cls: type, conf: Mapping[str, Any], name: str) -> KafkaSourceInfo | None:
    """The lag source of component `name` when it is a KafkaSpout, else None."""
    from ._settings import spout_settings
    from ._spout import KafkaSpout

    if not (isinstance(cls, type) and issubclass(cls, KafkaSpout)):
        return None
    st = spout_settings(conf, name, cls.class_defaults())
    return {"bootstrap_servers": st.bootstrap_servers, "group_id": st.group_id, "topics": list(st.topics),
            "pattern": st.pattern}


def kafka_sources(spec: Any) -> dict[str, KafkaSourceInfo]:
    """{component: source} of every KafkaSpout of a TopologySpec."""
    out: dict[str, KafkaSourceInfo] = {}
    for c in spec.components.values():
        info = source_info(c.cls, {**spec.config, **c.config}, c.name)
        if info is not None:
            out[c.name] = info
    return out


def _end_offsets(ck: Any, address: str, tps: list[Any], timeout: float) -> dict[tuple[str, int], int]:
    """The log end of each partition as a fetch reports it (the high watermark
    of a fetch response), and at least what ListOffsets answers: some
    Kafka-protocol brokers (Tansu 0.6) answer ListOffsets with the last batch's
    first offset + 1, which hides the lag inside a batch."""
    ends: dict[tuple[str, int], int] = {}
    consumer = ck.Consumer({"bootstrap.servers": address, "group.id": "storm-lag-reader",
                            "enable.auto.commit": False, "enable.partition.eof": True,
                            "fetch.wait.max.ms": 10, "max.partition.fetch.bytes": 1024,
                            "queued.min.messages": 1})
    try:
        for tp in tps:
            _low, high = consumer.get_watermark_offsets(tp, timeout=timeout)
            ends[(tp.topic, tp.partition)] = max(int(high), 0)
        consumer.assign([ck.TopicPartition(tp.topic, tp.partition, max(tp.offset, 0)) for tp in tps])
        waiting = {(tp.topic, tp.partition) for tp in tps}
        deadline = time.monotonic() + timeout
        while waiting and time.monotonic() < deadline:
            for m in consumer.consume(len(waiting) * 4, 0.1):
                key = (m.topic(), m.partition())
                if key in waiting:
                    waiting.discard(key)
                    _low, high = consumer.get_watermark_offsets(
                        ck.TopicPartition(key[0], key[1]), cached=True)
                    ends[key] = max(ends.get(key, 0), int(high))
    finally:
        consumer.close()
    return ends


def query_lag(sources: Mapping[str, KafkaSourceInfo], timeout: float = 5.0) -> list[PartitionLag]:
    """Lag per partition of every source (StormError when a broker does not answer)."""
    from ._settings import confluent

    rows: list[PartitionLag] = []
    for component, src in sorted(sources.items()):
        ck = confluent(component)
        consumer = ck.Consumer({"bootstrap.servers": src["bootstrap_servers"], "group.id": src["group_id"],
                                "enable.auto.commit": False})
        try:
            md = consumer.list_topics(timeout=timeout)
            if src["pattern"] is not None:
                import re

                rx = re.compile(src["pattern"])
                topics = sorted(t for t in md.topics if rx.search(t) and not t.startswith("__"))
            else:
                topics = list(src["topics"])
            tps = [ck.TopicPartition(t, p) for t in topics if t in md.topics for p in sorted(md.topics[t].partitions)]
            committed = consumer.committed(tps, timeout=timeout) if tps else []
        except ck.KafkaException as exc:
            raise StormError(f"Kafka lag of '{component}': {src['bootstrap_servers']} did not answer: {exc}") from None
        finally:
            consumer.close()
        ends = _end_offsets(ck, src["bootstrap_servers"], committed, timeout) if committed else {}
        for tp in committed:
            off = int(tp.offset) if tp.offset >= 0 else None
            end = ends.get((tp.topic, tp.partition), 0)
            rows.append({"component": component, "group": src["group_id"], "topic": tp.topic,
                         "partition": int(tp.partition), "committed": off, "end": end,
                         "lag": max(end - (off or 0), 0)})
    return rows


class LagReader:
    """query_lag with a cache: at most one broker round per `ttl` seconds per
    topology, so a dashboard or a scrape does not hammer the brokers."""

    def __init__(self, ttl: float = 2.0, timeout: float = 5.0) -> None:
        self.ttl = ttl
        self.timeout = timeout
        self._cache: dict[str, tuple[float, list[PartitionLag] | str]] = {}
        self._lock = threading.Lock()

    def lag(self, topology: str, sources: Mapping[str, KafkaSourceInfo]) -> list[PartitionLag] | str:
        """The rows, or an error message when the brokers did not answer."""
        if not sources:
            return []
        with self._lock:
            hit = self._cache.get(topology)
            if hit is not None and time.monotonic() - hit[0] < self.ttl:
                return hit[1]
            try:
                got: list[PartitionLag] | str = query_lag(sources, self.timeout)
            except StormError as exc:
                got = str(exc)
            self._cache[topology] = (time.monotonic(), got)
            return got


def lag_families(per_topology: Iterable[tuple[str, Sequence[PartitionLag]]]) -> list[Any]:
    """Prometheus families: storm_kafka_partition_lag, _committed_offset, _end_offset."""
    from prometheus_client.core import GaugeMetricFamily

    labels = ["topology", "component", "topic", "partition"]
    lag = GaugeMetricFamily("storm_kafka_partition_lag", "Kafka log end minus the spout group's committed "
                            "offset", labels=labels)
    committed = GaugeMetricFamily("storm_kafka_committed_offset", "The spout group's committed offset",
                                  labels=labels)
    end = GaugeMetricFamily("storm_kafka_end_offset", "The end of the partition's log", labels=labels)
    for topology, rows in per_topology:
        for r in rows:
            values = [topology, r["component"], r["topic"], str(r["partition"])]
            lag.add_metric(values, float(r["lag"]))
            end.add_metric(values, float(r["end"]))
            if r["committed"] is not None:
                committed.add_metric(values, float(r["committed"]))
    return [lag, committed, end]
