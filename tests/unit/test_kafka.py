"""storm.kafka without a broker: the offset rules of one partition (the commit
point never passes an unsettled offset, gaps allowed, stale fetches ignored),
the retry back-off, settings parsing and its errors, the bolt's build-time
checks, the missing-extra error, and the lag views of `storm stats` / `storm monitor`."""

from __future__ import annotations

import sys
from typing import Any

import pytest
from rich.console import Console

from storm import Topology
from storm._errors import ConfigError, StormError
from storm.cli._monitor import kafka_lag_note, kafka_lag_table
from storm.kafka import KafkaBolt, KafkaSpout, PartitionOffsets
from storm.kafka._settings import (
    FirstPollOffsetStrategy,
    ProcessingGuarantee,
    confluent,
    spout_settings,
)
from storm.spouts import ListSpout


def test_commit_point_moves_over_the_settled_prefix_only() -> None:
    po = PartitionOffsets()
    for o in (10, 11, 12, 14, 15):  # 13 is a gap (a transaction marker, a compacted record)
        assert po.add(o)
    assert po.commit_point() == 10
    po.settle(11)
    po.settle(12)
    assert po.commit_point() == 10, "10 is not settled: nothing after it may be committed"
    po.settle(10)
    assert po.commit_point() == 13
    po.settle(15)
    assert po.commit_point() == 13 and po.uncommitted == 2
    po.settle(14)
    assert po.commit_point() == 16 and po.uncommitted == 0


def test_fetches_from_before_a_seek_are_ignored() -> None:
    po = PartitionOffsets()
    assert po.add(5) and po.add(6)
    assert not po.add(6) and not po.add(3)
    po.settle(5)
    assert not po.add(4)
    assert po.fetched == type(po.fetched)([6])


def test_retries_come_due_in_order_and_only_while_in_flight() -> None:
    from storm.kafka._offsets import InFlight

    po = PartitionOffsets()
    for o in (1, 2, 3):
        po.add(o)
        po.in_flight[o] = InFlight([o], "default")
    po.schedule_retry(2, due=5.0)
    po.schedule_retry(1, due=7.0)
    po.schedule_retry(3, due=6.0)
    po.settle(3)  # settled while waiting: never re-emitted
    assert po.due_retry(4.0) is None
    assert po.due_retry(6.5) == 2
    assert po.due_retry(6.5) is None
    assert po.due_retry(8.0) == 1


def _settings(**conf: Any) -> Any:
    return spout_settings({"kafka.bootstrap.servers": "h:1", **conf}, "words", {})


def test_settings_defaults_and_back_off() -> None:
    st = _settings(**{"kafka.spout.topics": "a, b", "kafka.spout.retry.initial.delay.ms": 100,
                      "kafka.spout.retry.delay.period.ms": 50, "kafka.spout.retry.max.delay.ms": 1000,
                      "topology.name": "T"})
    assert st.topics == ("a", "b") and st.subscription() == ["a", "b"]
    assert st.group_id == "T-words"
    assert st.guarantee is ProcessingGuarantee.AT_LEAST_ONCE
    assert st.first_poll is FirstPollOffsetStrategy.UNCOMMITTED_EARLIEST
    assert [st.retry_delay(n) for n in (1, 2, 3, 10, 500)] == pytest.approx([0.15, 0.2, 0.3, 1.0, 1.0])
    assert _settings(**{"kafka.spout.topic.pattern": "logs-.*"}).subscription() == ["^logs-.*"]
    lower = _settings(**{"kafka.spout.topics": ["a"], "kafka.spout.processing.guarantee": "at_most_once"})
    assert lower.guarantee is ProcessingGuarantee.AT_MOST_ONCE


@pytest.mark.parametrize(("conf", "message"), [
    ({"kafka.spout.topics": ["a"], "kafka.spout.max.uncommitted.offsets": 0},
     "kafka.spout.max.uncommitted.offsets must be an integer >= 1"),
    ({"kafka.spout.topics": ["a"], "kafka.spout.consumer": {"group.id": "x"}}, "kafka.spout.group.id"),
    ({"kafka.spout.topics": ["a"], "kafka.spout.consumer": "fast"}, "must be a mapping of librdkafka settings"),
    ({"kafka.spout.topics": [""]}, "must be a list of topic names"),
    ({"kafka.spout.topics": ["a"], "kafka.spout.record.translator": "nonsense"}, "'module:function'"),
])
def test_bad_settings(conf: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _settings(**conf)


def test_no_brokers_is_an_error() -> None:
    with pytest.raises(ConfigError, match="set kafka.bootstrap.servers"):
        spout_settings({"kafka.spout.topics": ["a"]}, "words", {})


def test_default_translator_must_fit_the_declared_fields() -> None:
    pytest.importorskip("confluent_kafka")

    class T(Topology):
        config = {"kafka.bootstrap.servers": "h:1", "kafka.spout.topics": ["a"]}
        a = KafkaSpout.spec(outputs=["line"])

    with pytest.raises(StormError, match="declares fields \\['line'\\]; declare 6 field"):
        T.build()

    class V(Topology):
        config = {"kafka.bootstrap.servers": "h:1", "kafka.spout.topics": ["a"],
                  "kafka.spout.record.translator": "value"}
        a = KafkaSpout.spec(outputs=["line"])

    assert "a" in V.build().components


def test_bolt_without_a_topic_is_an_error_at_build_time() -> None:
    pytest.importorskip("confluent_kafka")

    class T(Topology):
        config = {"kafka.bootstrap.servers": "h:1"}
        a = ListSpout.spec()
        b = KafkaBolt.spec(inputs=[a])

    with pytest.raises(StormError, match="Kafka bolt 'b' has no topic: set kafka.bolt.topic"):
        T.build()


def test_missing_client_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "confluent_kafka", None)  # import raises ImportError
    with pytest.raises(ConfigError) as err:
        confluent("words")
    assert str(err.value) == "'words' needs the confluent-kafka client: pip install 'storm-streams[kafka]'"


def test_lag_views() -> None:
    kafka = {"partitions": [
        {"component": "s", "group": "g", "topic": "t", "partition": 0, "committed": 40, "end": 50, "lag": 10},
        {"component": "s", "group": "g", "topic": "t", "partition": 1, "committed": None, "end": 7, "lag": 7}]}
    console = Console(width=100, record=True)
    table = kafka_lag_table(kafka)
    assert table is not None
    console.print(table)
    text = console.export_text()
    assert "kafka lag" in text and "40" in text and "10" in text
    assert kafka_lag_note(kafka) == "kafka lag t 17"
    assert kafka_lag_note({"error": "down"}) == "kafka lag unknown"
    assert kafka_lag_table(None) is None and kafka_lag_note(None) == ""
