"""The Trident word count of trident_topos_wordcount (same split, flaky step,
group_by and persistent_aggregate into the state the config names, same
topology name, so trident_topos_harness reads its committed txid), fed by an
OpaqueKafkaSpout or TransactionalKafkaSpout over a topic of sentences.
Extra config keys: itest.topic, kafka.bootstrap.servers, trident.test.kind."""

from __future__ import annotations

from typing import Any

import trident_topos_wordcount as tw

from storm import TopologySpec
from storm.trident import Count, OpaqueKafkaSpout, TransactionalKafkaSpout, TridentTopology

TOPIC = "itest.topic"


def wordcount(conf: dict[str, Any]) -> TopologySpec:
    kind = str(conf.get(tw.KIND) or "opaque")
    cls = OpaqueKafkaSpout if kind == "opaque" else TransactionalKafkaSpout
    spout = cls(str(conf["kafka.bootstrap.servers"]), str(conf[TOPIC]), ["sentence"],
                batch_size=int(conf.get(tw.BATCH) or 250))
    flaky = tw.Flaky(float(conf.get(tw.FAIL_RATE) or 0))
    t = TridentTopology("TridentWordCount", {
        "topology.workers": 2,
        "topology.max.spout.pending": 3,
        "topology.message.timeout.secs": 5.0,
        "topology.trident.batch.emit.interval.millis": 5.0,
    })
    (t.new_stream("sentences", spout, par=2)
     .each("sentence", str.split, "word")
     .project("word")
     .shuffle(par=2)
     .filter("word", lambda w: not flaky(w))
     .group_by("word")
     .persistent_aggregate(tw.state_factory(conf), Count(), "count", par=2, name="counts"))
    return t.build()
