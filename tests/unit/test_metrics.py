"""storm._metrics (windows over cumulative counters, aggregation), the
Prometheus families, `storm monitor`'s frame and key loop and `storm visualize`,
all without processes."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client.core import CollectorRegistry
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console

from storm._metrics import (
    MetricsHistory,
    TopologyStats,
    WorkerStats,
    aggregate,
    for_window,
    stats_from_json,
)
from storm._prometheus import _Collector
from storm._target import build_target, load_target
from storm.cli._monitor import monitor_view, run_monitor, sort_components, stats_tables
from storm.cli._visualize import graph_of, render_dot, render_tree

pytestmark = pytest.mark.timeout(30)

WORDCOUNT = Path(__file__).resolve().parents[2] / "topologies" / "wordcount.py"
COMPONENTS = {"numbers": ("spout", [1]), "work": ("bolt", [2, 3])}


def snap(emitted: int = 0, executed: int = 0, acked: int = 0, failed: int = 0, busy: float = 0.0,
         exec_ns: int = 0, exec_samples: int = 0) -> dict[str, object]:
    return {"emitted": {"default": emitted, "__ack_init": emitted} if emitted else {}, "executed": executed,
            "acked": acked, "failed": failed, "busy_s": busy, "exec_ns": exec_ns,
            "exec_samples": exec_samples, "transferred": emitted, "queue": 3}


def history() -> MetricsHistory:
    """A spout at 100 tuples/s and two bolts at 50/s each, busy 0.5 and 0.9 s per s,
    reported every second for 30 s."""
    h = MetricsHistory()
    for i in range(31):
        h.record({1: snap(emitted=100 * i, acked=100 * i),
                  2: snap(executed=50 * i, acked=50 * i, failed=5 * i, busy=0.5 * i, exec_ns=1_000_000 * i,
                          exec_samples=i),
                  3: snap(executed=50 * i, acked=50 * i, busy=0.9 * i)}, now=1000.0 + i)
    return h


def test_windows_counts_rates_capacity_latency() -> None:
    stats = aggregate("t", COMPONENTS, history(), now=1030.0, uptime=30.0)
    spout, bolt = stats.components
    assert spout.emitted == 3000 and spout.acked == 3000  # all time, system streams left out
    assert spout.windows["10s"].emitted == 1000
    assert spout.windows["10s"].rate == pytest.approx(100.0)
    assert spout.capacity is None  # spouts have none
    assert bolt.executed == 3000 and bolt.failed == 150
    assert bolt.windows["10s"].executed == 1000 and bolt.windows["10s"].failed == 50
    assert bolt.windows["10m"].executed == 3000  # the whole life fits in 10 minutes
    assert bolt.windows["10s"].rate == pytest.approx(100.0)
    assert bolt.capacity == pytest.approx(0.9)  # the busiest task
    assert bolt.windows["all"].exec_ms == pytest.approx(1.0)
    assert bolt.queue == 6


def test_a_restarted_worker_does_not_lose_counts() -> None:
    h = MetricsHistory()
    h.record({2: snap(executed=500)}, now=1.0)
    h.record({2: snap(executed=900)}, now=2.0)
    h.record({2: snap(executed=40)}, now=3.0)  # a new incarnation starts from zero
    stats = aggregate("t", {"work": ("bolt", [2])}, h, now=3.0)
    assert stats.components[0].executed == 940


def test_old_samples_leave_the_short_window() -> None:
    h = MetricsHistory()
    h.record({2: snap(executed=0)}, now=0.0)
    h.record({2: snap(executed=1000)}, now=1.0)
    for i in range(2, 40):
        h.record({2: snap(executed=1000)}, now=float(i))
    stats = aggregate("t", {"work": ("bolt", [2])}, h, now=39.0)
    w = stats.components[0].windows
    assert w["10s"].executed == 0 and w["10s"].rate == 0.0
    assert w["10m"].executed == 1000 and w["all"].executed == 1000


def test_json_round_trip_and_window_view() -> None:
    stats = aggregate("t", COMPONENTS, history(), now=1030.0, uptime=30.0,
                      workers=[WorkerStats(0, pid=7, cpu=50.0, rss=1 << 20, backpressure=True)],
                      errors=[{"time": 1.0, "component": "work", "task": 2, "error": "E: x"}], error_count=4)
    back = stats_from_json(stats.to_json())
    assert back.components[1].windows["10s"].failed == 50
    assert back.workers[0].backpressure and back.error_count == 4
    assert back.health()[0] == "backpressure on workers 0"
    assert "work failing (50 in 10s)" in back.health()
    assert "work at capacity 0.90" in back.health()
    assert [c.executed for c in for_window(back.components, "10s")] == [0, 1000]
    assert [c.name for c in sort_components(back.components, "capacity")] == ["work", "numbers"]


def render(renderable: object, width: int = 80) -> str:
    console = Console(record=True, width=width, color_system=None)
    console.print(renderable)
    return console.export_text()


def test_monitor_frame_fits_80x24_and_stats_tables() -> None:
    stats = aggregate("Counted", COMPONENTS, history(), now=1030.0, uptime=30.0,
                      workers=[WorkerStats(0, pid=7, cpu=50.0, rss=1 << 20)], status="ACTIVE")
    text = render(monitor_view(stats, window="10s", note="q quit", trend=[50.0, 100.0]))
    lines = text.splitlines()
    assert len(lines) <= 24 and max(len(x) for x in lines) <= 80, text
    row = next(x for x in lines if x.startswith("work ")).split()
    assert row[:6] == ["work", "2", "0", "1000", "1000", "50"]
    assert row[-2] == "0.90"
    assert "#0 pid 7 50% 1.0M" in text and "window 10s" in text
    assert "spouts ▅█ 100/s" in text
    stats.errors = [{"time": 1.0, "component": "work", "task": 2, "where": "execute", "error": "KeyError: 'a'",
                     "traceback": "Traceback ..."}]
    stats.error_count = 1
    table = render(stats_tables(stats, ["all"]), width=100)
    assert "window all" in table and "3000" in table and "health" in table
    # Storm's names: a spout's latency is the complete latency, a bolt's the execute latency.
    headers = [x.split() for x in table.splitlines() if x.startswith(("spout ", "bolt "))]
    assert headers == [["spout", "emitted", "transf", "acked", "failed", "rate/s", "complete", "ms"],
                       ["bolt", "emitted", "transf", "executed", "acked", "failed", "rate/s", "execute", "ms",
                        "process", "ms", "cap"]], table
    assert "work[2] execute: KeyError: 'a'" in table


def test_monitor_loop_keys() -> None:
    stats = aggregate("Counted", COMPONENTS, history(), now=1030.0, uptime=30.0)
    keys = iter(["w", "s", None, "q"])
    windows: list[str] = []

    def fetch(name: str) -> TopologyStats:
        assert name == "Counted"
        return stats

    console = Console(record=True, width=80, height=24, color_system=None, force_terminal=False)
    import storm.cli._monitor as mon

    real = mon.monitor_view

    def spy(s: TopologyStats, **kw: object) -> object:
        windows.append(str(kw["window"]))
        return real(s, **kw)  # type: ignore[arg-type]

    mon.monitor_view = spy  # type: ignore[assignment]
    try:
        assert run_monitor(console, fetch, lambda: ["Counted"], None, 0.01, lambda t: next(keys)) == 0
    finally:
        mon.monitor_view = real
    assert windows[:3] == ["all", "10s", "10s"]  # w cycles the window, s only the sort


def test_prometheus_families_parse() -> None:
    stats = aggregate("Counted", COMPONENTS, history(), now=1030.0, uptime=30.0,
                      workers=[WorkerStats(0, pid=7, cpu=50.0, rss=1 << 20, uptime=30.0)])
    reg = CollectorRegistry(auto_describe=False)
    reg.register(_Collector(lambda: [stats]))
    text = generate_latest(reg).decode()
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for fam in text_string_to_metric_families(text) for s in fam.samples}
    assert samples[("storm_component_emitted_total", (("component", "numbers"), ("topology", "Counted")))] == 3000
    assert samples[("storm_component_failed_total", (("component", "work"), ("topology", "Counted")))] == 150
    assert samples[("storm_task_executed_total",
                    (("component", "work"), ("task", "3"), ("topology", "Counted")))] == 1500
    assert samples[("storm_stream_emitted_total",
                    (("component", "numbers"), ("stream", "default"), ("topology", "Counted")))] == 3000
    assert samples[("storm_component_capacity", (("component", "work"), ("topology", "Counted")))] == \
        pytest.approx(0.9)
    assert samples[("storm_worker_rss_bytes", (("topology", "Counted"), ("worker", "0")))] == 1 << 20


def test_visualize_tree_and_dot() -> None:
    g = graph_of(build_target(load_target(str(WORDCOUNT))))
    text = render(render_tree(g))
    assert "sentences  spout ×2" in text
    assert "default ─fields(word)→ count ×2" in text
    assert "__acker" not in text
    dot = render_dot(g)
    assert dot.startswith('digraph "WordCount" {')
    assert '"split" -> "count" [label="default: fields(word)"];' in dot
    assert "__acker" in render_dot(graph_of(build_target(load_target(str(WORDCOUNT))), system=True))
