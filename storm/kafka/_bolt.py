"""KafkaBolt: writes each input tuple as a record to a topic and acks the tuple
only when the broker confirmed the write (its delivery report), fails it on a
delivery error so the spout upstream replays it. Owns one producer per task;
delivery reports are served on this task's thread (in execute and on ticks),
so ack and fail are never called from another thread."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from .._component import Bolt, ComponentSpec
from .._context import TopologyContext
from .._errors import ConfigError
from .._tuple import Tuple
from . import _settings as s

__all__ = ["KafkaBolt"]

TOPIC_KEY = "kafka.bolt.topic"
TOPIC_FIELD_KEY = "kafka.bolt.topic.field"
KEY_FIELD_KEY = "kafka.bolt.key.field"
VALUE_FIELD_KEY = "kafka.bolt.value.field"
PRODUCER_KEY = "kafka.bolt.producer"
FLUSH_SECS_KEY = "kafka.bolt.close.flush.secs"

log = logging.getLogger("storm.kafka")


def _bytes(value: Any) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    return json.dumps(value, separators=(",", ":"), default=str).encode("utf-8")


class KafkaBolt(Bolt):
    """Writes tuples to Kafka. The topic is kafka.bolt.topic, or the value of
    the field kafka.bolt.topic.field, or what ``topic_of(tup)`` returns; the key
    the field kafka.bolt.key.field (or ``key_of``); the value the field
    kafka.bolt.value.field (default: a field named ``message`` or ``value``, else
    the tuple's values as a JSON list), or ``value_of``. Text is written as
    UTF-8, bytes as they are, anything else as JSON. kafka.bolt.producer passes
    librdkafka producer settings through (default acks=all).

    Counters: ``written`` (acked after a delivery report), ``delivery_failed``."""

    outputs: ClassVar[Any] = None
    topic: ClassVar[str | None] = None
    topic_selector: ClassVar[Callable[[Tuple], str] | None] = None

    @classmethod
    def spec(cls, name: str | None = None, inputs: Any = None, par: int = 1,
             config: Mapping[str, Any] | None = None, outputs: Any = None) -> ComponentSpec:
        conf = dict(config or {})
        # Ticks serve delivery reports while no tuple arrives (each execute serves
        # them too). Not more often: a worker that sees work more often than every
        # 0.3 s waits out its whole drain deadline on a clean stop.
        conf.setdefault("topology.tick.tuple.freq.secs", 0.5)
        return super().spec(name=name, inputs=inputs, par=par, config=conf, outputs=outputs)

    @classmethod
    def validate_topology(cls, spec: Any, name: str) -> None:
        conf = {**spec.config, **spec.components[name].config}
        where = f"Kafka bolt '{name}'"
        s.bootstrap(conf, where)
        s.passthrough(conf, PRODUCER_KEY, where)
        if not (conf.get(TOPIC_KEY) or conf.get(TOPIC_FIELD_KEY) or cls.topic
                or cls.topic_of is not KafkaBolt.topic_of):
            raise ConfigError(f"{where} has no topic: set {TOPIC_KEY}, {TOPIC_FIELD_KEY} or override topic_of")
        s.confluent(name)

    def prepare(self, conf: dict[str, Any], context: TopologyContext) -> None:
        where = f"Kafka bolt '{context.component_id}'"
        self._where = where
        ck = s.confluent(context.component_id)
        self._ck = ck
        self._topic = conf.get(TOPIC_KEY) or type(self).topic
        self._topic_field = conf.get(TOPIC_FIELD_KEY)
        self._key_field = conf.get(KEY_FIELD_KEY)
        self._value_field = conf.get(VALUE_FIELD_KEY)
        self._flush_secs = float(conf.get(FLUSH_SECS_KEY, 10.0))
        timeout_ms = float(conf.get("topology.message.timeout.secs", 30.0)) * 1000
        producer_conf: dict[str, Any] = {
            "bootstrap.servers": s.bootstrap(conf, where),
            "acks": "all",
            # The delivery report should come before the tuple tree times out.
            "message.timeout.ms": int(max(1000, min(300_000, timeout_ms * 0.8))),
            **s.passthrough(conf, PRODUCER_KEY, where),
        }
        self.producer: Any = ck.Producer(producer_conf, logger=self.logger if hasattr(self, "logger") else log)
        self.written = 0
        self.delivery_failed = 0
        self.unwritable = 0

    # -- to override ---------------------------------------------------------------
    def topic_of(self, tup: Tuple) -> str:
        if self._topic_field:
            return str(tup[self._topic_field])
        assert self._topic is not None
        return str(self._topic)

    def key_of(self, tup: Tuple) -> Any:
        return tup[self._key_field] if self._key_field else None

    def value_of(self, tup: Tuple) -> Any:
        if self._value_field:
            return tup[self._value_field]
        fields = tup.fields
        for name in ("message", "value"):
            if name in fields:
                return tup[name]
        return list(tup.values)

    # -- the Bolt API ------------------------------------------------------------------
    def execute(self, tup: Tuple) -> None:
        try:
            topic = self.topic_of(tup)
            key = _bytes(self.key_of(tup))
            value = _bytes(self.value_of(tup))
        except (KeyError, TypeError, ValueError) as exc:
            # A tuple that cannot become a record fails; it does not stop the task.
            self.unwritable += 1
            self.report_error(exc)
            self.fail(tup)
            return

        def delivered(err: Any, _msg: Any, tup: Tuple = tup) -> None:
            if err is None:
                self.written += 1
                self.ack(tup)
            else:
                self.delivery_failed += 1
                self.logger.warning("%s: delivery to %s failed (%s); the tuple fails", self._where, topic, err)
                self.fail(tup)

        while True:
            try:
                self.producer.produce(topic, value=value, key=key, on_delivery=delivered)
                break
            except BufferError:
                self.producer.poll(0.05)  # the local queue is full: wait for reports
        self.producer.poll(0)

    def process_tick(self, tup: Tuple) -> None:
        self.producer.poll(0)

    def cleanup(self) -> None:
        deadline = time.monotonic() + self._flush_secs
        while len(self.producer) and time.monotonic() < deadline:
            self.producer.flush(0.1)
