"""Real-time alerting: metric events -> rule matching -> per-key rule evaluation
on event time -> alerts written as JSON lines (and to the worker log).

Run it:

    storm local topologies/alerting.py -c alerting.rules=conf/alerts.example.yaml --duration 90
    storm local topologies/alerting.py --rules my-rules.yaml     # the same, on your rules

and watch the alerts arrive in another terminal: ``tail -f alerts.jsonl``.
The rules file is watched while it runs: an edit applies without a restart,
a bad one is rejected (the dashboard shows why) and the running rules stay;
``storm alerts silence RULE[/KEY] --for 30m`` and ``storm alerts list Alerting``
work on it too (README, "storm alerts").
A generator emits metrics for 8 hosts with a scripted 60-second cycle: host-2's
CPU runs hot (cpu_high fires, then resolves), the api service's errors surge
(errors_rising), host-5 stops its heartbeats (heartbeat_missing), host-3's
latency spikes (latency_p95_high, latency_anomaly).

Config keys (all optional, -c key=value):

``alerting.rules``            rules file (default conf/alerts.example.yaml next to this repo)
``sinks.file.path``           where alerts are written (default alerts.jsonl)
``alerting.webhook.url``      also POST alerts to this URL (a WebhookSink)
``alerting.demo.rate``        events per second of the generator (default 200)
``alerting.demo.hosts``       hosts it simulates (default 8)
``alerting.demo.cycle.secs``  length of the scripted cycle (default 60)
``alerting.demo.start.secs``  where in the cycle to start (default 0; 8 starts with the hot CPU)
``alerting.demo.count``       stop after this many events (default: run forever)
``alerting.source``           ``kafka``: read the events from Kafka instead of the generator, a
                              JSON object per record (as above), with ``kafka.bootstrap.servers``
                              and ``kafka.spout.topics`` (default [metrics]); any storm.kafka key applies
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from storm import ComponentSpec, ConfigError, Grouping, Spout, Topology, TopologySpec
from storm._topology import build_spec
from storm.alerting import RULES_KEY, WATERMARK_STREAM, RuleEvalBolt, RuleMatchBolt, load_rules
from storm.sinks import FileSink, StdoutSink, WebhookSink

DEFAULT_RULES = str(Path(__file__).resolve().parent.parent / "conf" / "alerts.example.yaml")
METRICS = ("cpu", "latency_ms", "errors", "heartbeat")


class MetricsSpout(Spout):
    """Metric events at a steady rate, event time = wall clock, with the
    scripted incidents of the module docstring."""

    outputs = ["event"]

    def open(self, conf: dict[str, Any], context: Any) -> None:
        self.rng = random.Random(context.task_id)
        self.rate = float(conf.get("alerting.demo.rate", 200))
        self.hosts = [f"host-{i}" for i in range(int(conf.get("alerting.demo.hosts", 8)))]
        self.cycle = float(conf.get("alerting.demo.cycle.secs", 60))
        count = conf.get("alerting.demo.count")
        self.limit = int(count) if count else None
        self.started = time.time() - float(conf.get("alerting.demo.start.secs", 0))
        self.sent = 0
        self.series = [(h, m) for h in self.hosts for m in METRICS]
        self.skipped = int((time.time() - self.started) * self.rate)  # no burst for the skipped start

    def next_tuple(self) -> None:
        now = time.time()
        due = int((now - self.started) * self.rate) - self.skipped
        if self.limit is not None:
            due = min(due, self.limit)
        n = min(due - self.sent, 100)
        for _ in range(max(n, 0)):
            host, metric = self.series[self.sent % len(self.series)]
            self.sent += 1
            event = self.event(now, host, metric)
            if event is not None:
                self.emit([event], msg_id=self.sent)

    def event(self, now: float, host: str, metric: str) -> dict[str, Any] | None:
        phase = (now - self.started) % self.cycle
        rng = self.rng
        ev: dict[str, Any] = {"ts": now, "host": host, "metric": metric}
        if metric == "cpu":
            ev["value"] = 97.0 if host == "host-2" and 8 <= phase < 22 else 30 + rng.random() * 20
        elif metric == "latency_ms":
            spike = host == "host-3" and 40 <= phase < 44
            ev["value"] = 900.0 + rng.random() * 50 if spike else rng.gauss(100, 10)
        elif metric == "errors":
            ev["service"] = "api" if int(host.rsplit("-", 1)[1]) % 2 == 0 else "db"
            surge = ev["service"] == "api" and 30 <= phase < 40
            ev["value"] = 10 + rng.randint(0, 5) if surge else rng.randint(1, 3)
        else:  # heartbeat
            if host == "host-5" and 28 <= phase < 38:
                return None
            ev["value"] = 1
        return ev


class Alerting(Topology):
    """metrics -> match -> evaluate -> alerts (file) + log (stdout sink)."""

    config = {
        "topology.message.timeout.secs": 30.0,
        "sinks.file.path": "alerts.jsonl",
        # Without events for 3 s, event time follows the wall clock (absence rules).
        "alerting.idle.secs": 3.0,
    }
    metrics = MetricsSpout.spec()
    match = RuleMatchBolt.spec(inputs=[metrics], config={"topology.tick.tuple.freq.secs": 0.5})
    evaluate = RuleEvalBolt.spec(
        inputs={match: Grouping.fields("rule", "key"), match[WATERMARK_STREAM]: Grouping.all()},
        config={"topology.tick.tuple.freq.secs": 0.5},
    )
    alerts = FileSink.spec(inputs=[evaluate])
    log = StdoutSink.spec(inputs=[evaluate])

    @classmethod
    def build(cls, overrides: Mapping[str, Any] | None = None) -> TopologySpec:
        conf = dict(cls.config)
        conf.update(overrides or {})
        conf.setdefault(RULES_KEY, DEFAULT_RULES)
        # A bad rules file stops the build here, with one error naming the rule and field.
        load_rules(conf[RULES_KEY])
        specs = list(cls._specs)
        source = conf.get("alerting.source")
        if source == "kafka":
            specs = _from_kafka(specs, conf)
        elif source not in (None, "generator"):
            raise ConfigError(f"alerting.source must be 'kafka' or 'generator', got {source!r}")
        url = conf.get("alerting.webhook.url")
        if url:
            specs.append(WebhookSink.spec(name="webhook", inputs=[cls.evaluate],
                                          config={"sinks.webhook.url": url}))
        return build_spec(cls.__name__, specs, conf)


def _from_kafka(specs: list[ComponentSpec], conf: dict[str, Any]) -> list[ComponentSpec]:
    """The specs with the generator replaced by a KafkaSpout of the same name
    (JSON values, one field `event`), and the matcher reading from it."""
    from storm.kafka import KafkaSpout

    conf.setdefault("kafka.spout.topics", ["metrics"])
    kafka = KafkaSpout.spec(name="metrics", outputs=["event"],
                            config={"kafka.spout.value.json": True, "kafka.spout.record.translator": "value"})
    out = []
    for spec in specs:
        if spec is Alerting.metrics:
            out.append(kafka)
        elif spec is Alerting.match:
            out.append(replace(spec, inputs=[kafka]))
        else:
            out.append(spec)
    return out
