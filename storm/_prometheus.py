"""The Prometheus text endpoint: serves the figures of `storm._metrics` (what
`storm stats` prints) as metric families labelled topology/component/task/stream/
worker, collected at scrape time from a callable, so nothing is computed when no
one scrapes. Used by nimbus and `storm local` (config `storm.prometheus.port`);
it owns one HTTP server thread and nothing else."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from prometheus_client.core import CollectorRegistry, CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import start_http_server
from prometheus_client.registry import Collector

from ._metrics import TopologyStats

__all__ = ["PrometheusExporter", "collect_families"]

_COUNTERS = ("emitted", "transferred", "executed", "acked", "failed", "errors")


def collect_families(topologies: Sequence[TopologyStats]) -> list[Metric]:
    """The metric families of `topologies` (all-time counters, 10 s gauges)."""
    comp = ["topology", "component"]
    counters = {k: CounterMetricFamily(f"storm_component_{k}", f"Tuples {k} by the component's tasks",
                                       labels=comp) for k in _COUNTERS}
    task_counters = {k: CounterMetricFamily(f"storm_task_{k}", f"Tuples {k} by the task (since the "
                                            "worker started)", labels=[*comp, "task"])
                     for k in ("executed", "acked", "failed")}
    stream = CounterMetricFamily("storm_stream_emitted", "Tuples emitted on a stream",
                                 labels=[*comp, "stream"])
    gauges = {
        "capacity": GaugeMetricFamily("storm_component_capacity",
                                      "Share of the last 10 s the busiest task spent executing", labels=comp),
        "exec_ms": GaugeMetricFamily("storm_component_execute_latency_ms",
                                     "Mean execute latency (sampled), all time", labels=comp),
        "process_ms": GaugeMetricFamily("storm_component_process_latency_ms",
                                        "Mean process latency of a bolt, execute start to ack (sampled), "
                                        "all time", labels=comp),
        "complete_ms": GaugeMetricFamily("storm_component_complete_latency_ms",
                                         "Mean complete latency of the spout's tuple trees", labels=comp),
        "complete_p50_ms": GaugeMetricFamily("storm_component_complete_latency_p50_ms",
                                             "Median complete latency over recent trees", labels=comp),
        "complete_p99_ms": GaugeMetricFamily("storm_component_complete_latency_p99_ms",
                                             "99th percentile complete latency over recent trees", labels=comp),
        "queue": GaugeMetricFamily("storm_component_queue_depth", "Tuples waiting in the tasks' inboxes",
                                   labels=comp),
        "pending": GaugeMetricFamily("storm_component_pending", "Spout tuple trees not yet acked",
                                     labels=comp),
        "rate": GaugeMetricFamily("storm_component_rate", "Tuples/s over the last 10 s (emitted by a "
                                  "spout, executed by a bolt)", labels=comp),
    }
    wl = ["topology", "worker"]
    workers = {
        "cpu": GaugeMetricFamily("storm_worker_cpu_percent", "CPU of the worker process (% of one core)",
                                 labels=wl),
        "rss": GaugeMetricFamily("storm_worker_rss_bytes", "Resident memory of the worker process",
                                 labels=wl),
        "uptime": GaugeMetricFamily("storm_worker_uptime_seconds", "Seconds since the worker started",
                                    labels=wl),
        "backpressure": GaugeMetricFamily("storm_worker_backpressure", "1 while the worker throttles "
                                          "the spouts", labels=wl),
    }
    restarts = CounterMetricFamily("storm_worker_restarts", "Times the worker was restarted", labels=wl)
    topo_bp = GaugeMetricFamily("storm_topology_backpressure", "1 while any worker throttles the spouts",
                                labels=["topology"])
    topo_errors = CounterMetricFamily("storm_topology_errors", "Errors recorded by the topology's tasks",
                                      labels=["topology"])
    for ts in topologies:
        topo_bp.add_metric([ts.name], 1.0 if ts.backpressure else 0.0)
        topo_errors.add_metric([ts.name], float(ts.error_count))
        for c in ts.components:
            labels = [ts.name, c.name]
            for k, fam in counters.items():
                fam.add_metric(labels, float(getattr(c, k)))
            for s, n in c.streams.items():
                stream.add_metric([*labels, s], float(n))
            for t, figs in sorted(c.task_figures.items()):
                for k, fam in task_counters.items():
                    fam.add_metric([*labels, str(t)], float(figs.get(k) or 0))
            values: dict[str, Any] = {"capacity": c.capacity, "exec_ms": c.exec_ms, "complete_ms": c.complete_ms,
                                      "process_ms": c.process_ms,
                                      "complete_p50_ms": c.complete_p50_ms, "complete_p99_ms": c.complete_p99_ms,
                                      "queue": c.queue, "pending": c.pending,
                                      "rate": c.windows["10s"].rate if "10s" in c.windows else None}
            for k, gauge in gauges.items():
                if values[k] is not None:
                    gauge.add_metric(labels, float(values[k]))
        for w in ts.workers:
            wlabels = [ts.name, str(w.index)]
            restarts.add_metric(wlabels, float(w.restarts))
            workers["backpressure"].add_metric(wlabels, 1.0 if w.backpressure else 0.0)
            for k in ("cpu", "rss", "uptime"):
                v = getattr(w, k)
                if v is not None:
                    workers[k].add_metric(wlabels, float(v))
    return [*counters.values(), *task_counters.values(), stream, *gauges.values(), *workers.values(),
            restarts, topo_bp, topo_errors]


class _Collector(Collector):
    def __init__(self, source: Callable[[], Sequence[TopologyStats]],
                 extra: Callable[[], Iterable[Metric]] | None = None) -> None:
        self.source = source
        self.extra = extra

    def collect(self) -> Iterator[Metric]:
        yield from collect_families(self.source())
        if self.extra is not None:
            yield from self.extra()


class PrometheusExporter:
    """Serve `source()` (called per scrape) on http://host:port/metrics::

        exporter = PrometheusExporter(lambda: [topo.stats()], port=0).start()
        print(exporter.port)
    """

    def __init__(self, source: Callable[[], Sequence[TopologyStats]], port: int, host: str = "127.0.0.1",
                 extra: Callable[[], Iterable[Metric]] | None = None) -> None:
        # `extra`: more families read at scrape time (the Kafka spouts' lag, storm.kafka._lag).
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(source, extra))
        self.host = host
        self.port = port
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def start(self) -> PrometheusExporter:
        self._server, self._thread = start_http_server(self.port, addr=self.host, registry=self.registry)
        self.port = int(self._server.server_port)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/metrics"
