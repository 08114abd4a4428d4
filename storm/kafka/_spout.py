"""KafkaSpout: reads topics as a member of a consumer group and emits each
record as a tuple, with storm-kafka-client's processing guarantees, first-poll
strategies, retry back-off and limit, and per-partition backpressure
(max.uncommitted.offsets). This module owns the consumer and its callbacks;
the per-partition offset rules are storm.kafka._offsets, the settings
storm.kafka._settings. Tuple trees and timeouts are the runtime's."""

from __future__ import annotations

import json
import logging
import os
import time
from collections import deque
from collections.abc import Sequence
from typing import Any, ClassVar

from .._component import Spout
from .._context import TopologyContext
from .._errors import ConfigError
from .._tuple import DEFAULT_STREAM
from ..spouts import SUMMARY_DIR_KEY
from . import _settings as s
from ._offsets import InFlight, PartitionOffsets
from ._record import KafkaRecord, StreamValues, decode_record
from ._settings import FirstPollOffsetStrategy, ProcessingGuarantee, SpoutSettings

__all__ = ["DEFAULT_FIELDS", "KafkaSpout"]

DEFAULT_FIELDS = ("topic", "partition", "offset", "key", "value", "timestamp")
SUMMARY_INTERVAL_SECS = 1.0

log = logging.getLogger("storm.kafka")

TopicPartitionKey = tuple[str, int]
# What one emit attempt did (see KafkaSpout._emit_next).
_EMITTED, _SKIPPED, _BLOCKED = object(), object(), object()


class KafkaSpout(Spout):
    """Emits the records of Kafka topics; see storm.kafka for every config key.

    Settings come from the component's (and the topology's) config, else these
    class attributes. With AT_LEAST_ONCE (the default) each record is a tuple
    tree (msg id ``(topic, partition, offset, epoch)``) and an offset is
    committed only once it and every earlier offset of its partition is acked
    or given up on; a failed record is re-emitted after an exponential back-off
    until ``max_retries`` is used up, then it is committed and counted in
    ``retries_exhausted``. Override ``translate(record)`` (or set
    kafka.spout.record.translator) to choose the values and the stream."""

    outputs: ClassVar[Any] = list(DEFAULT_FIELDS)
    bootstrap_servers: ClassVar[str | None] = None
    topics: ClassVar[Sequence[str]] = ()
    topic_pattern: ClassVar[str | None] = None
    group_id: ClassVar[str | None] = None
    processing_guarantee: ClassVar[str] = ProcessingGuarantee.AT_LEAST_ONCE
    first_poll_offset_strategy: ClassVar[str] = FirstPollOffsetStrategy.UNCOMMITTED_EARLIEST
    max_retries: ClassVar[int | None] = None
    value_json: ClassVar[bool] = False

    # -- settings ------------------------------------------------------------
    @classmethod
    def class_defaults(cls) -> dict[str, Any]:
        """The class attributes, by config key (the config overrides them)."""
        out: dict[str, Any] = {
            s.GUARANTEE_KEY: cls.processing_guarantee,
            s.FIRST_POLL_KEY: cls.first_poll_offset_strategy,
            s.RETRY_LIMIT_KEY: cls.max_retries,
            s.JSON_KEY: cls.value_json,
        }
        for key, value in ((s.BOOTSTRAP_KEY, cls.bootstrap_servers), (s.TOPICS_KEY, list(cls.topics)),
                           (s.PATTERN_KEY, cls.topic_pattern), (s.GROUP_KEY, cls.group_id)):
            if value:
                out[key] = value
        return out

    @classmethod
    def validate_topology(cls, spec: Any, name: str) -> None:
        """Build time: the settings parse, the client is installed, and the
        default translators fit the declared fields."""
        comp = spec.components[name]
        settings = s.spout_settings({**spec.config, **comp.config}, name, cls.class_defaults())
        s.confluent(name)
        overridden = cls.translate is not KafkaSpout.translate
        if not overridden and not callable(settings.translator):
            want = 1 if settings.translator == "value" else len(DEFAULT_FIELDS) if (
                settings.translator in (None, "default")) else None
            default = comp.outputs.get(DEFAULT_STREAM)
            if want is not None and (default is None or len(default.fields) != want):
                have = list(default.fields) if default is not None else "none"
                raise ConfigError(
                    f"Kafka spout '{name}': its record translator emits {want} value(s) on the default "
                    f"stream but the spout declares fields {have}; declare {want} field(s) or set "
                    f"{s.TRANSLATOR_KEY}")

    # -- the Spout API -------------------------------------------------------
    def open(self, conf: dict[str, Any], context: TopologyContext) -> None:
        self._component = context.component_id
        self._task = context.task_id
        st = self.settings = s.spout_settings(conf, self._component, type(self).class_defaults())
        ck = s.confluent(self._component)
        self._ck = ck
        self._translator = self._make_translator(st)
        self.partitions: dict[TopicPartitionKey, PartitionOffsets] = {}
        self._buffers: dict[TopicPartitionKey, deque[KafkaRecord]] = {}
        self._ready: deque[TopicPartitionKey] = deque()  # partitions with buffered records
        self._paused: set[TopicPartitionKey] = set()
        self._assigned_before: set[TopicPartitionKey] = set()
        self._positions: dict[TopicPartitionKey, int] = {}  # NO_GUARANTEE: next offset per partition
        self._epoch = 0
        self._retry_waiting = 0
        self.emitted = self.acked = self.failed = self.retried = 0
        self.retries_exhausted = self.skipped = self.ignored_results = self.commits = 0
        self.rebalances = 0
        reset = "latest" if st.first_poll in (FirstPollOffsetStrategy.LATEST,
                                              FirstPollOffsetStrategy.UNCOMMITTED_LATEST) else "earliest"
        consumer_conf: dict[str, Any] = {
            "bootstrap.servers": st.bootstrap_servers,
            "group.id": st.group_id,
            "client.id": f"{context.topology_name}-{self._component}-{self._task}",
            "auto.offset.reset": reset,
            # A shorter session than Kafka's 45 s: a killed worker's partitions move sooner.
            "session.timeout.ms": 10_000,
            **st.consumer,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
        }
        self.consumer: Any = ck.Consumer(consumer_conf, logger=self._logger)
        self.consumer.subscribe(st.subscription(), on_assign=self._on_assign, on_revoke=self._on_revoke,
                                on_lost=self._on_lost)
        self._next_commit = time.monotonic() + st.commit_period_s
        self._summary_path: str | None = None
        directory = conf.get(SUMMARY_DIR_KEY)
        if directory:
            self._summary_path = os.path.join(str(directory), f"{self._component}-{self._task}.json")
        self._next_summary = 0.0
        self._closed = False

    def next_tuple(self) -> None:
        now = time.monotonic()
        if now >= self._next_commit:
            self._next_commit = now + self.settings.commit_period_s
            self.commit()
        if self._summary_path is not None and now >= self._next_summary:
            self.write_summary()
        if self._retry_waiting and self._emit_retry(now):
            return
        polled = False
        while True:
            if not self._ready:
                if polled:
                    return
                self._poll()
                polled = True
                if not self._ready:
                    return
            got = self._emit_next()
            if got is _EMITTED:
                return
            if got is _BLOCKED:
                # Every buffered partition's window is full (it is paused): others may have records.
                if polled:
                    return
                self._poll()
                polled = True

    def ack(self, msg_id: Any) -> None:
        po, offset = self._lookup(msg_id)
        if po is None:
            return
        self.acked += 1
        po.settle(offset)
        self._maybe_resume(msg_id[0], msg_id[1], po)

    def fail(self, msg_id: Any) -> None:
        po, offset = self._lookup(msg_id)
        if po is None:
            return
        record = po.in_flight[offset]
        if record.waiting:
            self.ignored_results += 1
            return
        self.failed += 1
        limit = self.settings.max_retries
        if limit is not None and record.attempts > limit:
            self.retries_exhausted += 1
            po.settle(offset)
            self.on_retries_exhausted(msg_id[0], msg_id[1], offset, record.values, record.attempts)
            self._maybe_resume(msg_id[0], msg_id[1], po)
            return
        record.waiting = True
        po.schedule_retry(offset, time.monotonic() + self.settings.retry_delay(record.attempts))
        self._retry_waiting += 1

    def deactivate(self) -> None:
        self.commit()

    def close(self) -> None:
        if getattr(self, "_closed", True):
            return
        self._closed = True
        self.commit()
        self.write_summary()
        try:
            self.consumer.close()
        except Exception as exc:  # the broker may be gone; the offsets were committed above
            self._logger.warning("Kafka spout '%s' task %d: closing the consumer: %s",
                                 self._component, self._task, exc)
        self._logger.info("Kafka spout '%s' task %d closed: %s", self._component, self._task, self.summary())

    # -- to override -----------------------------------------------------------
    def translate(self, record: KafkaRecord) -> Sequence[Any] | StreamValues | None:
        """The values of one record (default stream), a StreamValues, or None
        to skip it (it is committed as if acked)."""
        return self._translator(record)

    def on_retries_exhausted(self, topic: str, partition: int, offset: int, values: list[Any],
                             attempts: int) -> None:
        """A record failed after max_retries re-emits; it is committed anyway."""
        self._logger.warning("Kafka spout '%s' task %d: %s[%d]@%d failed %d times, committed without "
                             "success (retry limit)", self._component, self._task, topic, partition,
                             offset, attempts)

    # -- figures -----------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        """Counters and, per assigned partition, the committed offset, the end
        of the log as the last fetch saw it, and the lag between them."""
        parts: dict[str, dict[str, Any]] = {}
        for (topic, partition), po in sorted(getattr(self, "partitions", {}).items()):
            end = None
            try:
                _low, high = self.consumer.get_watermark_offsets(
                    self._ck.TopicPartition(topic, partition), cached=True)
                end = high if high >= 0 else None
            except Exception:  # no fetch yet
                end = None
            committed = po.last_commit
            parts[f"{topic}:{partition}"] = {
                "topic": topic, "partition": partition, "committed": committed, "end": end,
                "uncommitted": po.uncommitted, "in_flight": len(po.in_flight),
                "lag": None if end is None or committed is None else max(end - committed, 0),
            }
        return {
            "component": getattr(self, "_component", ""), "task": getattr(self, "_task", 0),
            "pid": os.getpid(), "emitted": self.emitted, "acked": self.acked, "failed": self.failed,
            "retried": self.retried, "retries_exhausted": self.retries_exhausted,
            "skipped": self.skipped, "ignored_results": self.ignored_results, "commits": self.commits,
            "rebalances": self.rebalances, "paused": sorted(f"{t}:{p}" for t, p in self._paused),
            "partitions": parts,
        }

    def write_summary(self) -> None:
        """Write the summary to spouts.summary.dir (when set) now."""
        path = getattr(self, "_summary_path", None)
        if path is None:
            return
        self._next_summary = time.monotonic() + SUMMARY_INTERVAL_SECS
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            json.dump(self.summary(), f)
        os.replace(tmp, path)

    # -- committing ---------------------------------------------------------------
    def commit(self, keys: Sequence[TopicPartitionKey] | None = None) -> None:
        """Commit now what the processing guarantee allows (synchronously for
        AT_LEAST_ONCE, asynchronously for NO_GUARANTEE; AT_MOST_ONCE commits at poll)."""
        st = self.settings
        tp = self._ck.TopicPartition
        if st.guarantee is ProcessingGuarantee.AT_LEAST_ONCE:
            offsets = []
            for key in keys if keys is not None else list(self.partitions):
                po = self.partitions.get(key)
                if po is not None and po.committed is not None and po.committed != po.last_commit:
                    offsets.append((key, po, po.committed))
            if not offsets:
                return
            try:
                self.consumer.commit(offsets=[tp(k[0], k[1], o) for k, _, o in offsets], asynchronous=False)
            except self._ck.KafkaException as exc:
                # Not committed now means read again after a crash: never a loss.
                self._logger.warning("Kafka spout '%s' task %d: commit failed (%s); it is retried",
                                     self._component, self._task, exc)
                return
            for _, po, o in offsets:
                po.last_commit = o
            self.commits += 1
        elif st.guarantee is ProcessingGuarantee.NO_GUARANTEE and self._positions:
            positions, self._positions = self._positions, {}
            try:
                self.consumer.commit(offsets=[tp(t, p, o) for (t, p), o in positions.items()],
                                     asynchronous=True)
                self.commits += 1
            except self._ck.KafkaException as exc:
                self._logger.warning("Kafka spout '%s' task %d: commit failed (%s)", self._component,
                                     self._task, exc)

    # -- polling and emitting ---------------------------------------------------------
    def _poll(self) -> None:
        st = self.settings
        try:
            msgs = self.consumer.consume(st.poll_records, st.poll_timeout_s)
        except self._ck.KafkaException as exc:
            self._logger.warning("Kafka spout '%s' task %d: poll failed: %s", self._component, self._task, exc)
            return
        got: dict[TopicPartitionKey, int] = {}
        first: dict[TopicPartitionKey, int] = {}
        for msg in msgs:
            err = msg.error()
            if err is not None:
                if err.code() != self._ck.KafkaError._PARTITION_EOF:
                    self._logger.warning("Kafka spout '%s' task %d: %s", self._component, self._task, err)
                continue
            key = (msg.topic(), msg.partition())
            if key not in self.partitions:
                continue  # fetched before its partition was revoked
            buf = self._buffers.get(key)
            if buf is None:
                buf = self._buffers[key] = deque()
            if not buf:
                self._ready.append(key)
            buf.append(decode_record(msg, st.value_json))
            got[key] = msg.offset() + 1
            first.setdefault(key, msg.offset())
        if got and st.guarantee is ProcessingGuarantee.AT_MOST_ONCE:
            tp = self._ck.TopicPartition
            # Committed before any of them is emitted: a crash loses them, never repeats them.
            try:
                self.consumer.commit(offsets=[tp(t, p, o) for (t, p), o in got.items()], asynchronous=False)
            except self._ck.KafkaException as exc:
                # Not committed: not emitted either; the poll is read again.
                self._logger.warning("Kafka spout '%s' task %d: commit failed (%s); the poll is read again",
                                     self._component, self._task, exc)
                for key, offset in first.items():
                    self._buffers.pop(key, None)
                    self.consumer.seek(tp(key[0], key[1], offset))
                return
            self.commits += 1
            for key, o in got.items():
                self.partitions[key].last_commit = o
        if st.guarantee is ProcessingGuarantee.AT_LEAST_ONCE:
            for key in got:
                self._maybe_pause(key)

    def _emit_next(self) -> object:
        """Emit the next buffered record: _EMITTED, _SKIPPED (a record taken
        without a tuple: skipped by the translator, or stale) or _BLOCKED (every
        buffered partition's uncommitted window is full)."""
        ready = self._ready
        for _ in range(len(ready)):
            key = ready[0]
            buf = self._buffers.get(key)
            po = self.partitions.get(key)
            if not buf or po is None:
                ready.popleft()
                continue
            if (self.settings.guarantee is ProcessingGuarantee.AT_LEAST_ONCE
                    and po.uncommitted >= self.settings.max_uncommitted):
                ready.rotate(-1)  # this partition's window is full: backpressure, not loss
                continue
            record = buf.popleft()
            if not buf:
                ready.popleft()
            else:
                ready.rotate(-1)
            return _EMITTED if self._emit_record(key, po, record) else _SKIPPED
        return _BLOCKED if ready else _SKIPPED

    def _emit_record(self, key: TopicPartitionKey, po: PartitionOffsets, record: KafkaRecord) -> bool:
        got = self.translate(record)
        st = self.settings
        offset = record.offset
        if st.guarantee is ProcessingGuarantee.AT_LEAST_ONCE:
            if not po.add(offset):
                return False
            if got is None:
                self.skipped += 1
                po.settle(offset)
                return False
        if got is None:
            self.skipped += 1
            self._positions[key] = offset + 1
            return False
        stream, values = (got.stream, list(got.values)) if isinstance(got, StreamValues) else (
            DEFAULT_STREAM, list(got))
        if st.guarantee is ProcessingGuarantee.AT_LEAST_ONCE:
            po.in_flight[offset] = InFlight(values, stream)
            self.emit(values, stream, (key[0], key[1], offset, po.epoch))
        else:
            self._positions[key] = offset + 1
            self.emit(values, stream)
        self.emitted += 1
        return True

    def _emit_retry(self, now: float) -> bool:
        for key, po in self.partitions.items():
            if not po.retries:
                continue
            offset = po.due_retry(now)
            if offset is None:
                continue
            self._retry_waiting = sum(len(p.retries) for p in self.partitions.values())
            record = po.in_flight[offset]
            record.attempts += 1
            record.waiting = False
            self.retried += 1
            self.emit(record.values, record.stream, (key[0], key[1], offset, po.epoch))
            return True
        self._retry_waiting = sum(len(p.retries) for p in self.partitions.values())
        return False

    def _lookup(self, msg_id: Any) -> tuple[PartitionOffsets | None, int]:
        try:
            topic, partition, offset, epoch = msg_id
        except (TypeError, ValueError):
            self.ignored_results += 1
            return None, 0
        po = self.partitions.get((topic, partition))
        if po is None or po.epoch != epoch or offset not in po.in_flight:
            # Its partition was revoked (and maybe given back): the new owner reads it again.
            self.ignored_results += 1
            return None, 0
        return po, int(offset)

    def _maybe_pause(self, key: TopicPartitionKey) -> None:
        po = self.partitions[key]
        if key not in self._paused and po.uncommitted + len(self._buffers.get(key) or ()) \
                >= self.settings.max_uncommitted:
            self.consumer.pause([self._ck.TopicPartition(key[0], key[1])])
            self._paused.add(key)

    def _maybe_resume(self, topic: str, partition: int, po: PartitionOffsets) -> None:
        key = (topic, partition)
        if key in self._paused and po.uncommitted + len(self._buffers.get(key) or ()) \
                < self.settings.max_uncommitted:
            self.consumer.resume([self._ck.TopicPartition(topic, partition)])
            self._paused.discard(key)

    # -- rebalancing ------------------------------------------------------------------
    def _on_assign(self, consumer: Any, assigned: list[Any]) -> None:
        self.rebalances += 1
        first = self.settings.first_poll
        moved = False
        for tp in assigned:
            key = (tp.topic, tp.partition)
            self._epoch += 1
            self.partitions[key] = PartitionOffsets(epoch=self._epoch)
            if key not in self._assigned_before:
                self._assigned_before.add(key)
                if first is FirstPollOffsetStrategy.EARLIEST:
                    tp.offset, moved = self._ck.OFFSET_BEGINNING, True
                elif first is FirstPollOffsetStrategy.LATEST:
                    tp.offset, moved = self._ck.OFFSET_END, True
        if moved:
            consumer.assign(assigned)
        self._logger.info("Kafka spout '%s' task %d assigned %s", self._component, self._task,
                          sorted(f"{tp.topic}:{tp.partition}" for tp in assigned))

    def _on_revoke(self, consumer: Any, revoked: list[Any]) -> None:
        keys = [(tp.topic, tp.partition) for tp in revoked]
        # What was acked is committed before another task takes the partition.
        self.commit(keys)
        self._forget(keys, "revoked")

    def _on_lost(self, consumer: Any, lost: list[Any]) -> None:
        self._forget([(tp.topic, tp.partition) for tp in lost], "lost")

    def _forget(self, keys: list[TopicPartitionKey], why: str) -> None:
        for key in keys:
            self.partitions.pop(key, None)
            self._buffers.pop(key, None)
            self._paused.discard(key)
            self._positions.pop(key, None)
        self._retry_waiting = sum(len(p.retries) for p in self.partitions.values())
        self._logger.info("Kafka spout '%s' task %d: partitions %s %s; their tuples in flight are "
                          "forgotten", self._component, self._task, sorted(f"{t}:{p}" for t, p in keys), why)

    # -- internals ----------------------------------------------------------------------
    def _make_translator(self, st: SpoutSettings) -> Any:
        spec = st.translator
        if callable(spec):
            return spec
        if spec == "value":
            return lambda r: [r.value]
        if spec in (None, "default"):
            return lambda r: [r.topic, r.partition, r.offset, r.key, r.value, r.timestamp]
        return s.load_function(str(spec), f"Kafka spout '{self._component}'")

    @property
    def _logger(self) -> logging.Logger:
        return getattr(self, "logger", None) or log

