"""The Kafka integration's settings: the config keys a KafkaSpout / KafkaBolt
reads (a user namespace, per component), their parsing and validation into
typed records at topology build time, and the import of confluent-kafka with
a one-line error naming the extra when it is missing. Owns no client or
socket: the spout and bolt modules make those from these records."""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from .._errors import ConfigError

__all__ = [
    "BOOTSTRAP_KEY",
    "FirstPollOffsetStrategy",
    "ProcessingGuarantee",
    "SpoutSettings",
    "confluent",
]

BOOTSTRAP_KEY = "kafka.bootstrap.servers"
TOPICS_KEY = "kafka.spout.topics"
PATTERN_KEY = "kafka.spout.topic.pattern"
GROUP_KEY = "kafka.spout.group.id"
GUARANTEE_KEY = "kafka.spout.processing.guarantee"
FIRST_POLL_KEY = "kafka.spout.first.poll.offset.strategy"
COMMIT_PERIOD_KEY = "kafka.spout.offset.commit.period.ms"
MAX_UNCOMMITTED_KEY = "kafka.spout.max.uncommitted.offsets"
RETRY_INITIAL_KEY = "kafka.spout.retry.initial.delay.ms"
RETRY_PERIOD_KEY = "kafka.spout.retry.delay.period.ms"
RETRY_MAX_DELAY_KEY = "kafka.spout.retry.max.delay.ms"
RETRY_LIMIT_KEY = "kafka.spout.retry.max.retries"
POLL_RECORDS_KEY = "kafka.spout.max.poll.records"
POLL_TIMEOUT_KEY = "kafka.spout.poll.timeout.ms"
JSON_KEY = "kafka.spout.value.json"
TRANSLATOR_KEY = "kafka.spout.record.translator"
CONSUMER_KEY = "kafka.spout.consumer"

EXTRA_HINT = "pip install 'storm-streams[kafka]'"


class ProcessingGuarantee(StrEnum):
    """When the spout commits an offset (storm-kafka-client's names)."""

    #: Commit an offset once it and every earlier offset of its partition is acked.
    AT_LEAST_ONCE = "AT_LEAST_ONCE"
    #: Commit the offsets of a poll synchronously before emitting its records.
    AT_MOST_ONCE = "AT_MOST_ONCE"
    #: Commit the polled positions asynchronously every commit period.
    NO_GUARANTEE = "NO_GUARANTEE"


class FirstPollOffsetStrategy(StrEnum):
    """Where a partition is first read from (storm-kafka-client's names)."""

    #: The partition's first offset, whatever was committed.
    EARLIEST = "EARLIEST"
    #: The partition's end, whatever was committed.
    LATEST = "LATEST"
    #: The committed offset; the first offset when nothing was committed.
    UNCOMMITTED_EARLIEST = "UNCOMMITTED_EARLIEST"
    #: The committed offset; the end when nothing was committed.
    UNCOMMITTED_LATEST = "UNCOMMITTED_LATEST"


def confluent(component: str) -> Any:
    """The confluent_kafka module, or a ConfigError naming the extra to install."""
    try:
        return importlib.import_module("confluent_kafka")
    except ImportError:
        raise ConfigError(f"'{component}' needs the confluent-kafka client: {EXTRA_HINT}") from None


@dataclass(frozen=True)
class SpoutSettings:
    """A KafkaSpout's settings, validated (see storm.kafka for each key)."""

    bootstrap_servers: str
    topics: tuple[str, ...]
    pattern: str | None
    group_id: str
    guarantee: ProcessingGuarantee
    first_poll: FirstPollOffsetStrategy
    commit_period_s: float
    max_uncommitted: int
    retry_initial_s: float
    retry_period_s: float
    retry_max_delay_s: float
    max_retries: int | None
    poll_records: int
    poll_timeout_s: float
    value_json: bool
    translator: Callable[..., Any] | str | None
    consumer: dict[str, Any] = field(default_factory=dict)

    def retry_delay(self, attempt: int) -> float:
        """Seconds before re-emitting a record that failed `attempt` times (>= 1):
        initial + period * 2^(attempt-1), at most the max delay (storm-kafka-client's
        exponential back-off)."""
        delay = self.retry_initial_s + self.retry_period_s * 2.0 ** min(max(attempt - 1, 0), 60)
        return float(min(delay, self.retry_max_delay_s))

    def subscription(self) -> list[str]:
        """What to pass to Consumer.subscribe: topics, or '^regex' for a pattern."""
        if self.pattern is not None:
            return [self.pattern if self.pattern.startswith("^") else "^" + self.pattern]
        return list(self.topics)


def _choice(enum: type[StrEnum], value: Any, key: str, where: str) -> Any:
    try:
        return enum(str(value).upper())
    except ValueError:
        allowed = ", ".join(m.value for m in enum)
        raise ConfigError(f"{where}: {key} must be one of {allowed}, got {value!r}") from None


def _number(conf: Mapping[str, Any], key: str, default: float, where: str, *, minimum: float = 0,
            integer: bool = False) -> Any:
    value = conf.get(key, default)
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value >= minimum
    if integer:
        ok = ok and float(value).is_integer()
    if not ok:
        kind = "an integer" if integer else "a number"
        raise ConfigError(f"{where}: {key} must be {kind} >= {minimum:g}, got {value!r}")
    return int(value) if integer else float(value)


def bootstrap(conf: Mapping[str, Any], where: str) -> str:
    servers = conf.get(BOOTSTRAP_KEY)
    if not servers or not isinstance(servers, (str, list)):
        raise ConfigError(f"{where}: set {BOOTSTRAP_KEY} to the brokers, e.g. 127.0.0.1:9092")
    return servers if isinstance(servers, str) else ",".join(str(s) for s in servers)


def passthrough(conf: Mapping[str, Any], key: str, where: str) -> dict[str, Any]:
    raw = conf.get(key) or {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: {key} must be a mapping of librdkafka settings, got {raw!r}")
    return {str(k): v for k, v in raw.items()}


def spout_settings(conf: Mapping[str, Any], component: str, defaults: Mapping[str, Any]) -> SpoutSettings:
    """Parse and check a spout's settings: `conf` (topology config merged with
    the component's) over `defaults` (the class's attributes, by key)."""
    where = f"Kafka spout '{component}'"
    merged = {**defaults, **{k: v for k, v in conf.items() if v is not None}}
    raw_topics = merged.get(TOPICS_KEY) or ()
    if isinstance(raw_topics, str):
        raw_topics = [t for t in (s.strip() for s in raw_topics.split(",")) if t]
    if not isinstance(raw_topics, (list, tuple)) or not all(isinstance(t, str) and t for t in raw_topics):
        raise ConfigError(f"{where}: {TOPICS_KEY} must be a list of topic names, got {raw_topics!r}")
    pattern = merged.get(PATTERN_KEY)
    if pattern is not None:
        if raw_topics:
            raise ConfigError(f"{where}: set {TOPICS_KEY} or {PATTERN_KEY}, not both")
        try:
            re.compile(str(pattern))
        except re.error as exc:
            raise ConfigError(f"{where}: {PATTERN_KEY} {pattern!r} is not a regular expression: {exc}") from None
    elif not raw_topics:
        raise ConfigError(f"{where} has no topics: set {TOPICS_KEY} (a list) or {PATTERN_KEY} (a regex)")
    consumer = passthrough(merged, CONSUMER_KEY, where)
    if "enable.auto.commit" in consumer or "enable.auto.offset.store" in consumer:
        raise ConfigError(
            f"{where}: {CONSUMER_KEY} sets enable.auto.commit; the spout commits offsets itself as its "
            f"{GUARANTEE_KEY} says (AT_LEAST_ONCE: only acked offsets), so remove it")
    if "group.id" in consumer:
        raise ConfigError(f"{where}: set the group with {GROUP_KEY}, not {CONSUMER_KEY}['group.id']")
    translator = merged.get(TRANSLATOR_KEY)
    if translator is not None and not callable(translator):
        translator = str(translator)
        if translator not in ("default", "value") and ":" not in translator:
            raise ConfigError(f"{where}: {TRANSLATOR_KEY} must be 'default', 'value' or 'module:function', "
                              f"got {translator!r}")
    limit = merged.get(RETRY_LIMIT_KEY)
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise ConfigError(f"{where}: {RETRY_LIMIT_KEY} must be an integer >= 0 or null (no limit), got {limit!r}")
    group = merged.get(GROUP_KEY) or f"{merged.get('topology.name') or 'storm'}-{component}"
    return SpoutSettings(
        bootstrap_servers=bootstrap(merged, where),
        topics=tuple(raw_topics),
        pattern=None if pattern is None else str(pattern),
        group_id=str(group),
        guarantee=_choice(ProcessingGuarantee, merged.get(GUARANTEE_KEY, "AT_LEAST_ONCE"), GUARANTEE_KEY, where),
        first_poll=_choice(FirstPollOffsetStrategy, merged.get(FIRST_POLL_KEY, "UNCOMMITTED_EARLIEST"),
                           FIRST_POLL_KEY, where),
        commit_period_s=_number(merged, COMMIT_PERIOD_KEY, 30_000, where) / 1000.0,
        max_uncommitted=_number(merged, MAX_UNCOMMITTED_KEY, 10_000_000, where, minimum=1, integer=True),
        retry_initial_s=_number(merged, RETRY_INITIAL_KEY, 0, where) / 1000.0,
        retry_period_s=_number(merged, RETRY_PERIOD_KEY, 2, where) / 1000.0,
        retry_max_delay_s=_number(merged, RETRY_MAX_DELAY_KEY, 10_000, where) / 1000.0,
        max_retries=limit,
        poll_records=_number(merged, POLL_RECORDS_KEY, 500, where, minimum=1, integer=True),
        poll_timeout_s=_number(merged, POLL_TIMEOUT_KEY, 10, where) / 1000.0,
        value_json=bool(merged.get(JSON_KEY, False)),
        translator=translator,
        consumer=consumer,
    )


def load_function(spec: str, where: str) -> Callable[..., Any]:
    """`module:function` -> the function, or a ConfigError naming what is missing."""
    module, _, name = spec.partition(":")
    try:
        fn = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"{where}: cannot load {spec!r}: {exc}") from None
    if not callable(fn):
        raise ConfigError(f"{where}: {spec!r} is not a function")
    return fn
