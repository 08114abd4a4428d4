"""Kafka in and out: KafkaSpout (a consumer-group reader with Storm's
processing guarantees) and KafkaBolt (acks a tuple once the broker confirmed
its write). Needs the extra: ``pip install 'storm-streams[kafka]'``. The
Trident spouts over Kafka are storm.trident.OpaqueKafkaSpout and
TransactionalKafkaSpout; consumer-group lag is storm.kafka.lag.

Spout keys (per component config, or the topology's; class attributes of the
same meaning are the defaults):

``kafka.bootstrap.servers``                 brokers, ``host:port[,host:port]`` (spout and bolt)
``kafka.spout.topics``                      a list of topics (or "a,b")
``kafka.spout.topic.pattern``               a regex subscription instead of topics
``kafka.spout.group.id``                    consumer group (default ``<topology>-<component>``)
``kafka.spout.processing.guarantee``        AT_LEAST_ONCE (default), AT_MOST_ONCE, NO_GUARANTEE
``kafka.spout.first.poll.offset.strategy``  UNCOMMITTED_EARLIEST (default), UNCOMMITTED_LATEST,
                                            EARLIEST, LATEST (these two ignore committed offsets
                                            the first time a task process gets a partition)
``kafka.spout.offset.commit.period.ms``     commit period (default 30000)
``kafka.spout.max.uncommitted.offsets``     per partition: fetched, uncommitted offsets at most
                                            before polling it pauses (default 10000000)
``kafka.spout.retry.initial.delay.ms``      back-off of a failed record: initial + period * 2^(n-1)
``kafka.spout.retry.delay.period.ms``       ... (defaults 0 and 2), at most
``kafka.spout.retry.max.delay.ms``          ... this (default 10000)
``kafka.spout.retry.max.retries``           re-emits per record, then it is committed and counted
                                            as ``retries_exhausted`` (default null: no limit)
``kafka.spout.max.poll.records``            records per poll (default 500)
``kafka.spout.poll.timeout.ms``             how long one poll may wait (default 10)
``kafka.spout.value.json``                  decode values as JSON (default false)
``kafka.spout.record.translator``           ``default`` (fields topic, partition, offset, key,
                                            value, timestamp), ``value`` (one field) or
                                            ``module:function`` (record -> values, StreamValues
                                            or None to skip)
``kafka.spout.consumer``                    librdkafka consumer settings passed through
                                            (``enable.auto.commit`` is refused)

Bolt keys: ``kafka.bolt.topic`` / ``kafka.bolt.topic.field``, ``kafka.bolt.key.field``,
``kafka.bolt.value.field``, ``kafka.bolt.producer`` (librdkafka producer settings),
``kafka.bolt.close.flush.secs`` (default 10).

Example::

    from storm import Grouping, Topology
    from storm.kafka import KafkaBolt, KafkaSpout

    class Upper(Topology):
        config = {"kafka.bootstrap.servers": "127.0.0.1:9092"}
        lines = KafkaSpout.spec(config={"kafka.spout.topics": ["lines"]})
        out = KafkaBolt.spec(inputs=[lines], config={"kafka.bolt.topic": "copies"})
"""

from ._bolt import KafkaBolt
from ._offsets import PartitionOffsets
from ._record import KafkaRecord, StreamValues
from ._settings import EXTRA_HINT, FirstPollOffsetStrategy, ProcessingGuarantee, SpoutSettings
from ._spout import DEFAULT_FIELDS, KafkaSpout

__all__ = [
    "DEFAULT_FIELDS",
    "EXTRA_HINT",
    "FirstPollOffsetStrategy",
    "KafkaBolt",
    "KafkaRecord",
    "KafkaSpout",
    "PartitionOffsets",
    "ProcessingGuarantee",
    "SpoutSettings",
    "StreamValues",
]
