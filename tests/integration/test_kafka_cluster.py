"""The Kafka lag of a cluster topology (real nimbus, supervisor, workers and
broker): topologies/kafka_wordcount.py reads a filled topic; `storm stats
--json` carries the spout group's committed offset, log end and lag per
partition, `storm stats` prints them as a table, and nimbus's Prometheus
endpoint serves storm_kafka_partition_lag{topic,partition}, all reaching 0."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kafka_support as ks
import pytest
from daemon_topos_harness import Daemons, free_ports, wait_until
from prometheus_client.parser import text_string_to_metric_families

EXAMPLE = str(Path(__file__).resolve().parents[2] / "topologies" / "kafka_wordcount.py") + ":KafkaWordCount"


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[Daemons]:
    with Daemons(tmp_path) as d:
        yield d


@pytest.mark.timeout(150)
def test_cluster_stats_and_prometheus_show_kafka_lag(daemons: Daemons) -> None:
    d = daemons
    with ks.broker() as broker:
        src, out = ks.topic_name("sentences"), ks.topic_name("counts")
        ks.create_topic(broker.address, src, 2)
        ks.create_topic(broker.address, out, 2)
        ks.produce(broker.address, src, ((None, b"a b c %d" % i) for i in range(1000)),
                   partition_of=lambda i: i % 2)
        prom = free_ports(1)[0]
        d.start_nimbus(extra={"storm.prometheus.port": prom})
        d.start_supervisor("sup-a")
        d.submit(EXAMPLE, **{"kafka.bootstrap.servers": broker.address, "kafka.spout.topics": [src],
                             "kafka.bolt.topic": out, "topology.workers": 1,
                             "kafka.spout.consumer": ks.FAST_GROUP})
        d.wait_running("KafkaWordCount", 1)

        def stats() -> dict[str, Any]:
            r = d.storm("stats", "KafkaWordCount", "--json")
            assert r.returncode == 0, r.stderr
            return dict(json.loads(r.stdout))

        def caught_up() -> bool:
            rows = (stats().get("kafka") or {}).get("partitions") or []
            return len(rows) == 2 and all(r["lag"] == 0 and r["committed"] == 500 for r in rows)
        wait_until(caught_up, "storm stats shows lag 0 on both partitions", 90, d.diagnostics)
        rows = stats()["kafka"]["partitions"]
        assert {(r["component"], r["topic"], r["partition"], r["end"]) for r in rows} == {
            ("sentences", src, 0, 500), ("sentences", src, 1, 500)}
        table = d.storm("stats", "KafkaWordCount")
        assert table.returncode == 0 and "kafka lag" in table.stdout and src in table.stdout, table.stdout

        def scraped() -> dict[str, float]:
            with urllib.request.urlopen(f"http://127.0.0.1:{prom}/metrics", timeout=10) as resp:
                text = resp.read().decode()
            return {s.labels["partition"]: s.value for fam in text_string_to_metric_families(text)
                    for s in fam.samples if s.name == "storm_kafka_partition_lag"
                    and s.labels.get("topology") == "KafkaWordCount" and s.labels.get("topic") == src}
        wait_until(lambda: scraped() == {"0": 0.0, "1": 0.0}, "nimbus serves the lag on Prometheus", 30,
                   d.diagnostics)
