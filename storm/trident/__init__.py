"""Trident-like batched exactly-once layer: a stream API over batches of
transaction ids, compiled to ordinary spouts and bolts, with states that apply
each batch exactly once (transactional or opaque txid rules) and commit in txid
order.

Example::

    from storm.trident import Count, SQLiteState, TransactionalListSpout, TridentTopology

    t = TridentTopology("wordcount")
    (t.new_stream("sentences", TransactionalListSpout(rows, ["sentence"], batch_size=500))
      .each("sentence", str.split, "word")
      .group_by("word")
      .persistent_aggregate(SQLiteState("counts.sqlite"), Count(), "count"))
    spec = t.build()
"""

from ._backends import PostgresState, RedisState
from ._executor import MasterCoordinator, TridentBolt
from ._kafka import OpaqueKafkaSpout, TransactionalKafkaSpout
from ._operations import (
    Aggregator,
    CombinerAggregator,
    Count,
    First,
    Max,
    Min,
    ReducerAggregator,
    Sum,
)
from ._spouts import (
    MetaStore,
    NonTransactionalListSpout,
    OpaqueListSpout,
    TransactionalListSpout,
    TridentSpout,
)
from ._state import (
    MemoryState,
    SQLiteState,
    StateFactory,
    TxidMapState,
    encode_key,
    opaque_update,
    transactional_update,
)
from ._topology import GroupedStream, Stream, TridentState, TridentTopology

__all__ = [
    "Aggregator",
    "CombinerAggregator",
    "Count",
    "First",
    "GroupedStream",
    "Max",
    "MasterCoordinator",
    "MemoryState",
    "MetaStore",
    "Min",
    "NonTransactionalListSpout",
    "OpaqueKafkaSpout",
    "OpaqueListSpout",
    "PostgresState",
    "ReducerAggregator",
    "RedisState",
    "SQLiteState",
    "StateFactory",
    "Stream",
    "Sum",
    "TransactionalKafkaSpout",
    "TransactionalListSpout",
    "TridentBolt",
    "TridentSpout",
    "TridentState",
    "TridentTopology",
    "TxidMapState",
    "encode_key",
    "opaque_update",
    "transactional_update",
]
