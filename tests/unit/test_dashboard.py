"""The dashboard of `storm local` rendered to a recording rich Console: rows,
figures, workers and errors appear, and it fits an 80x24 terminal."""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.console import Console

from storm._local import ComponentStats, WorkerInfo
from storm._metrics import WorkerStats
from storm._target import build_target, load_target
from storm.cli import compute_rates, render_dashboard
from storm.cli._dashboard import format_count, format_latency
from storm.cli._run import flow_order

pytestmark = pytest.mark.timeout(30)

WORDCOUNT = Path(__file__).resolve().parents[2] / "topologies" / "wordcount.py"


def render(renderable: object, width: int = 80) -> str:
    console = Console(record=True, width=width, color_system=None)
    console.print(renderable)
    return console.export_text()


def wordcount_stats() -> list[ComponentStats]:
    return [
        ComponentStats("sentences", "spout", 2, emitted=96_200, complete_ms=12.5),
        ComponentStats("split", "bolt", 2, emitted=593_018, executed=92_650, acked=92_650,
                       queue=50, exec_ms=0.0167),
        ComponentStats("count", "bolt", 2, emitted=27, executed=536_437, acked=536_435,
                       failed=3, errors=2, queue=1234, exec_ms=0.0012, capacity=0.93),
        ComponentStats("sink", "bolt", 1, executed=28, acked=27, exec_ms=0.11),
        ComponentStats("__acker", "bolt", 2),
    ]


def row(text: str, name: str) -> list[str]:
    lines = [line for line in text.splitlines() if line.split()[:1] == [name]]
    assert len(lines) == 1, f"one row for {name} expected in:\n{text}"
    return lines[0].split()


def test_rows_show_each_components_figures() -> None:
    rates = {"sentences": 21_800.4, "split": 24_400, "count": 127_000, "sink": 27}
    workers = [WorkerInfo(0, pid=4117, ready=True), WorkerInfo(1, pid=4118, ready=True, restarts=2)]
    text = render(render_dashboard("wordcount", wordcount_stats(), workers, [], rates,
                                   status="running 12s"))
    assert text.splitlines()[0].split() == ["wordcount", "running", "12s"]
    headers = [line.split() for line in text.splitlines() if line.startswith(("spout ", "bolt "))]
    # Storm UI's names: a spout's latency is the complete latency, a bolt's the execute latency.
    assert headers == [["spout", "tasks", "emitted", "acked", "failed", "rate/s", "complete", "ms", "err"],
                       ["bolt", "tasks", "emitted", "executed", "acked", "failed", "rate/s", "queue",
                        "execute", "ms", "cap", "err"]]
    assert row(text, "sentences") == ["sentences", "2", "96.2k", "0", "0", "21.8k", "12.5", "0"]
    assert row(text, "split") == ["split", "2", "593k", "92.7k", "92.7k", "0",
                                  "24.4k", "50", "0.017", "-", "0"]
    assert row(text, "count") == ["count", "2", "27", "536k", "536k", "3", "127k",
                                  "1234", "0.001", "0.93", "2"]
    assert row(text, "sink") == ["sink", "1", "0", "28", "27", "0", "27", "0",
                                 "0.110", "-", "0"]
    assert row(text, "__acker")[-4:] == ["0", "-", "-", "0"]
    assert "#0 pid 4117" in text
    assert "#1 pid 4118 restarts 2" in text
    assert "last errors (2 in all)" in text  # the components' error counters


def test_errors_are_one_line_each_and_repeats_fold() -> None:
    errors = [
        {"time": 0.0, "component": "split", "task": 3, "error": "KeyError: 'a'"},
        {"time": 1.0, "component": "count", "task": 5, "error": "ValueError: bad\nsecond line"},
        {"time": 2.0, "component": "count", "task": 5, "error": "ValueError: bad\nsecond line"},
        {"time": 3.0, "component": "sink", "task": 7, "error": "OSError: " + "disk full " * 20},
    ]
    text = render(render_dashboard("wc", [], [], errors, {}, error_count=40, max_errors=3))
    lines = text.splitlines()
    start = lines.index("last errors (40 in all)")
    shown = lines[start + 1:]
    assert len(shown) == 3
    assert "split[3] KeyError: 'a'" in shown[0]
    assert "count[5] (x2) ValueError: bad second line" in shown[1]
    assert "sink[7] OSError: disk full" in shown[2] and shown[2].endswith("…")


def test_no_errors_and_no_rates_yet() -> None:
    stats = wordcount_stats()[:1]
    stats[0].errors = 0
    text = render(render_dashboard("wc", stats, [], [], {}))
    assert "no errors" in text
    assert row(text, "sentences")[5] == "-"  # no rate before the second snapshot


def test_fits_an_80x24_terminal() -> None:
    stats = wordcount_stats() + [
        ComponentStats("a_component_with_a_very_long_name", "bolt", 12,
                       executed=1_234_567_890, acked=1_234_567_890, queue=16_384)
    ]
    workers = [WorkerInfo(i, pid=400_000 + i, ready=True, restarts=i) for i in range(4)]
    errors = [{"time": float(i), "component": "count", "task": i, "error": f"E{i}: " + "x" * 200}
              for i in range(10)]
    text = render(render_dashboard("a-topology-with-a-long-name", stats, workers, errors,
                                   {c.name: 1.5e6 for c in stats}, status="running 1234s of 3600s",
                                   error_count=10))
    lines = text.splitlines()
    assert len(lines) <= 24, text
    assert "  #2 pid 400002 restarts 2" in text  # wrapped between workers, not inside one
    assert max(len(line) for line in lines) <= 80, text
    assert row(text, "a_component_w…")[2:4] == ["0", "1.23G"]


def test_compute_rates() -> None:
    before = [ComponentStats("s", "spout", 1, emitted=100), ComponentStats("b", "bolt", 1, executed=50)]
    after = [ComponentStats("s", "spout", 1, emitted=300, executed=7),
             ComponentStats("b", "bolt", 1, emitted=999, executed=20)]
    # spouts by emitted, bolts by executed; a counter that went down (restart) gives 0
    assert compute_rates(before, after, 2.0) == {"s": 100.0, "b": 0.0}
    assert compute_rates(before, after, 0) == {}


@pytest.mark.parametrize(
    ("n", "text"),
    [(0, "0"), (9_999, "9999"), (12_345, "12.3k"), (99_999, "100k"), (999_999, "1.00M"),
     (53_600_000, "53.6M"), (1.2e9, "1.20G"), (2.4, "2")],
)
def test_format_count(n: float, text: str) -> None:
    assert format_count(n) == text


def test_format_latency() -> None:
    assert [format_latency(v) for v in (None, 0.0012, 2.345, 45.67, 1234.5)] == [
        "-", "0.001", "2.35", "45.7", "1234"]


def test_components_are_listed_in_data_flow_order() -> None:
    spec = build_target(load_target(str(WORDCOUNT)))
    order = flow_order(spec)
    assert sorted(order, key=order.__getitem__) == ["sentences", "split", "count", "sink", "__acker"]


def test_health_line_and_worker_cpu_memory() -> None:
    workers = [WorkerStats(0, pid=4117, cpu=87.4, rss=31_457_280, backpressure=True)]
    text = render(render_dashboard("wc", wordcount_stats(), workers, [], {},
                                   health=["backpressure on workers 0", "count at capacity 0.93"]))
    assert "#0 pid 4117 87% 30.0M backpressure" in text
    assert "health backpressure on workers 0; count at capacity 0.93" in text
    assert "health ok" in render(render_dashboard("wc", [], [], [], {}, health=[]))


def test_sparkline_trend_line() -> None:
    from storm.cli._dashboard import sparkline

    assert sparkline([0, 1, 2, 4, 8]) == "▁▂▃▅█"
    assert sparkline([0, 0]) == "▁▁"
    text = render(render_dashboard("wc", [], [], [], {}, trend=[100.0, 2_000.0, 16_200.0]))
    assert text.splitlines()[1] == "spouts ▁▂█ 16.2k/s"
