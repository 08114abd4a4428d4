"""Metrics of topologies with known counts on a LocalCluster (real workers):
1,000 tuples → emitted 1,000, acked 1,000, failed 0; a bolt failing every 10th →
failed 100; a bolt sleeping per tuple → capacity near 1; and the Prometheus
endpoint serving the same figures, parsed with prometheus-client's parser."""

from __future__ import annotations

import urllib.request

import pytest
from itest_support import wait_for
from prometheus_client.parser import text_string_to_metric_families
from topos_metrics import Busy, Counted, FailingTenth

from storm import LocalCluster
from storm._metrics import ComponentStats
from storm._prometheus import PrometheusExporter


def by_name(topo: object) -> dict[str, ComponentStats]:
    return {c.name: c for c in topo.stats().components}  # type: ignore[attr-defined]


@pytest.mark.timeout(60)
def test_known_counts_and_prometheus(cluster: LocalCluster) -> None:
    topo = cluster.submit(Counted)
    def finished() -> bool:
        # Reports come per worker: wait until every one has sent its figures of the end.
        c = by_name(topo)
        return c["numbers"].acked >= 1000 and c["relay"].acked >= 1000 and c["sink"].acked >= 1000

    wait_for(topo, finished, "1,000 tuples acked", 30)
    c = by_name(topo)
    assert (c["numbers"].emitted, c["numbers"].acked, c["numbers"].failed) == (1000, 1000, 0)
    assert c["numbers"].transferred == 1000
    assert (c["relay"].executed, c["relay"].emitted, c["relay"].acked) == (1000, 1000, 1000)
    assert (c["sink"].executed, c["sink"].acked, c["sink"].failed) == (1000, 1000, 0)
    assert c["numbers"].windows["10m"].acked == 1000
    assert c["numbers"].complete_ms is not None and c["numbers"].complete_p99_ms is not None
    assert c["relay"].exec_ms is not None
    stats = topo.stats()
    assert len(stats.workers) == 2 and all(w.pid and w.rss for w in stats.workers)
    exporter = PrometheusExporter(lambda: [topo.stats()], 0).start()
    try:
        with urllib.request.urlopen(exporter.url, timeout=10) as resp:
            text = resp.read().decode()
    finally:
        exporter.stop()
    samples = {(s.name, s.labels.get("component"), s.labels.get("task")): s.value
               for fam in text_string_to_metric_families(text) for s in fam.samples
               if s.labels.get("topology") == "Counted"}
    assert samples[("storm_component_emitted_total", "numbers", None)] == 1000
    assert samples[("storm_component_acked_total", "numbers", None)] == 1000
    assert samples[("storm_component_failed_total", "numbers", None)] == 0
    assert sum(v for (n, comp, task), v in samples.items()
               if n == "storm_task_executed_total" and comp == "relay") == 1000


@pytest.mark.timeout(60)
def test_failing_every_tenth_and_capacity_of_a_sleeping_bolt(cluster: LocalCluster) -> None:
    failing = cluster.submit(FailingTenth)
    busy = cluster.submit(Busy)
    wait_for(failing, lambda: by_name(failing)["numbers"].acked + by_name(failing)["numbers"].failed >= 1000,
             "every tree acked or failed", 30)
    c = by_name(failing)
    assert (c["failer"].executed, c["failer"].failed, c["failer"].acked) == (1000, 100, 900)
    assert (c["numbers"].emitted, c["numbers"].acked, c["numbers"].failed) == (1000, 900, 100)
    # Two reports at least inside the 10 s window, a second apart, while it sleeps 2 ms a tuple.
    wait_for(busy, lambda: (by_name(busy)["sleepy"].capacity or 0) > 0.5, "capacity near 1", 20)
    assert by_name(busy)["sleepy"].capacity <= 1.0  # type: ignore[operator]
