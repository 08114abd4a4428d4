"""Topology of the stateful alerting test: JSON events tailed from a file the
test appends to -> match -> a StatefulRuleEvalBolt (checkpointed rule state)
-> a file sink. The evaluator and the file sink run in worker 1, the tail and
match in worker 0, so killing worker 1 restarts only the rule state. Also the
topology of the sources test (tail and HTTP ingest into a file)."""

from __future__ import annotations

from typing import Any

from storm import Grouping, Topology
from storm.alerting import WATERMARK_STREAM, RuleMatchBolt, StatefulRuleEvalBolt
from storm.sinks import FileSink
from storm.sources import HttpSpout, TailSpout
from storm.stateful import CheckpointSpout

RULES = """
time_field: ts
rules:
  - name: cpu_high
    filter: {metric: cpu}
    key: host
    condition: {kind: threshold, aggregate: avg, field: value, window: 10, slide: 5, op: ">", value: 90}
"""

# Frequent watermarks: a watermark that overtook the observations emitted before
# it (they used to share a batch, watermarks first) made windows look empty.
TICK = {"topology.tick.tuple.freq.secs": 0.01}


def cpu_events(first: int, last: int, hot_until: int) -> list[dict[str, Any]]:
    return [{"ts": float(ts), "host": "h1", "metric": "cpu", "value": 95.0 if 10 <= ts < hot_until else 10.0}
            for ts in range(first, last)]


class StatefulAlerts(Topology):
    config = {
        "topology.workers": 2,
        "topology.message.timeout.secs": 10.0,
        "topology.state.checkpoint.interval.ms": 200.0,
        # A checkpoint sent to the killed worker is given up on (and rolled back)
        # after 3 s rather than after the message timeout.
        "topology.state.checkpoint.timeout.secs": 3.0,
        "sources.tail.json": True,
    }
    checkpoint = CheckpointSpout.spec()
    events = TailSpout.spec()
    match = RuleMatchBolt.spec(inputs=[events], config=TICK)
    evaluate = StatefulRuleEvalBolt.spec(
        inputs={match: Grouping.fields("rule", "key"), match[WATERMARK_STREAM]: Grouping.all()},
        checkpoints=checkpoint, config=TICK,
    )
    file = FileSink.spec(inputs=[evaluate])


class Sources(Topology):
    """A tail spout and an HTTP ingest spout into one file sink (for the
    sources test: a rotation on a real worker, POSTs from outside)."""

    config = {"topology.workers": 2}
    tail = TailSpout.spec()
    http = HttpSpout.spec()
    file = FileSink.spec(inputs=[tail, http])
