"""Topologies of the alerting integration tests: a ListSpout of scripted metric
events (synthetic event times) -> match -> evaluate -> file sink and webhook.
The rules file and the sinks' destinations come from config, so each test
points them at its own temporary directory and HTTP server."""

from __future__ import annotations

from typing import Any

from storm import Grouping, Topology
from storm.alerting import WATERMARK_STREAM, RuleEvalBolt, RuleMatchBolt
from storm.sinks import FileSink, WebhookSink
from storm.spouts import ListSpout

RULES = """
time_field: ts
rules:
  - name: cpu_high
    filter: {metric: cpu}
    key: host
    condition: {kind: threshold, aggregate: avg, field: value, window: 10, slide: 5, op: ">", value: 90}
  - name: heartbeat_missing
    filter: {metric: heartbeat}
    key: host
    condition: {kind: absence, for: 5, slide: 1}
"""

#: (rule, key, state, event time) the scripted events must produce, in order per key.
EXPECTED = [
    ("cpu_high", "h1", "firing", 20.0),
    ("cpu_high", "h1", "resolved", 30.0),
    ("heartbeat_missing", "h2", "firing", 34.0),
    ("heartbeat_missing", "h2", "resolved", 101.0),
    ("heartbeat_missing", "h2", "firing", 105.0),  # silent again after its one heartbeat
]


def scripted_events() -> list[list[Any]]:
    """h1's CPU is hot from 10 s to 25 s; h2's heartbeats stop at 29 s and come
    back once at 100 s; the last events at 200 s move event time past it all."""
    events: list[dict[str, Any]] = []
    for ts in range(60):
        for host in ("h1", "h2"):
            hot = host == "h1" and 10 <= ts < 25
            events.append({"ts": float(ts), "host": host, "metric": "cpu", "value": 95.0 if hot else 10.0})
        if ts < 30:
            events.append({"ts": float(ts), "host": "h2", "metric": "heartbeat"})
    events.append({"ts": 100.0, "host": "h2", "metric": "heartbeat"})
    # One per match task (shuffle alternates): the watermark is the minimum over them.
    events.append({"ts": 200.0, "host": "h0", "metric": "end"})
    events.append({"ts": 200.0, "host": "h0", "metric": "end"})
    return [[e] for e in events]


class Events(ListSpout):
    outputs = ["event"]

    def load_items(self, conf: dict[str, Any], context: Any) -> list[list[Any]]:
        return scripted_events()


TICK = {"topology.tick.tuple.freq.secs": 0.2}


class ScriptedAlerts(Topology):
    config = {"topology.message.timeout.secs": 20.0}
    events = Events.spec()
    match = RuleMatchBolt.spec(inputs=[events], par=2, config=TICK)
    evaluate = RuleEvalBolt.spec(
        inputs={match: Grouping.fields("rule", "key"), match[WATERMARK_STREAM]: Grouping.all()},
        par=2, config=TICK,
    )
    file = FileSink.spec(inputs=[evaluate])


class ScriptedAlertsWebhook(ScriptedAlerts):
    webhook = WebhookSink.spec(inputs=[ScriptedAlerts.evaluate], config={"sinks.webhook.batch.size": 1})
