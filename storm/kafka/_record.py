"""A consumed Kafka record as the spouts hand it to a translator (decoded key
and value), and what a translator returns to pick a stream. Pure data."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["KafkaRecord", "StreamValues", "decode_record"]


@dataclass(frozen=True, slots=True)
class KafkaRecord:
    """One consumed record. `key` and `value` are decoded: text when the bytes
    are UTF-8 (else the bytes), and `value` parsed as JSON with
    kafka.spout.value.json (text that is not JSON stays text); `raw_value` is
    the bytes as they were. `timestamp` is in milliseconds (None if unknown)."""

    topic: str
    partition: int
    offset: int
    key: Any
    value: Any
    timestamp: int | None
    headers: tuple[tuple[str, bytes], ...]
    raw_value: bytes | None


@dataclass(frozen=True, slots=True)
class StreamValues:
    """What a translator returns to emit a record on another stream than the default."""

    stream: str
    values: Sequence[Any]


def _text(raw: bytes | None) -> Any:
    if raw is None:
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw


def decode_record(msg: Any, as_json: bool) -> KafkaRecord:
    raw = msg.value()
    value = _text(raw)
    if as_json and isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            pass
    kind, ts = msg.timestamp()
    return KafkaRecord(msg.topic(), msg.partition(), msg.offset(), _text(msg.key()), value,
                       ts if kind else None, tuple(msg.headers() or ()), raw)
