"""Topology figures over sliding windows, computed where the workers' reports
arrive (LocalCluster, nimbus), never in a worker: workers keep sending their
cumulative per-task counters, `MetricsHistory` keeps a short time series of them
per task, and `aggregate` (pure) turns that into per-component figures for the
last 10 s, the last 10 min and all time. The CLI, the dashboard and the
Prometheus exporter read the result (`TopologyStats`, or its `to_json` form).
This module owns no process, socket or clock of its own: callers pass `now`."""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = [
    "COUNTERS",
    "WINDOWS",
    "ComponentStats",
    "MetricsHistory",
    "TopologyStats",
    "WindowStats",
    "WorkerStats",
    "aggregate",
    "for_window",
    "stats_from_json",
]

# (name, seconds); None = since the topology started.
WINDOWS: tuple[tuple[str, float | None], ...] = (("10s", 10.0), ("10m", 600.0), ("all", None))

# Cumulative per-task counters a worker reports (see storm._runtime.TaskStats).
COUNTERS = ("emitted", "transferred", "executed", "acked", "failed", "errors", "busy_s",
            "exec_ns", "exec_samples", "complete_ns", "complete_samples", "process_ns", "process_samples")

_KEEP_SECS = 620.0  # a little over the longest window


def _counters(snap: Mapping[str, Any]) -> tuple[float, ...]:
    out = []
    for key in COUNTERS:
        v = snap.get(key)
        if key == "emitted":
            # Data streams only: the ack streams are system traffic.
            v = sum(n for s, n in (v or {}).items() if not str(s).startswith("__")) if isinstance(v, Mapping) else v
        out.append(float(v or 0))
    return tuple(out)


class _TaskSeries:
    """(time, counters) samples of one task, with counter resets (a restarted
    worker starts from zero) folded in so the totals never go down."""

    __slots__ = ("times", "values", "offset", "last_raw", "first_time")

    def __init__(self) -> None:
        self.times: deque[float] = deque()
        self.values: deque[tuple[float, ...]] = deque()
        self.offset = [0.0] * len(COUNTERS)
        self.last_raw: tuple[float, ...] | None = None
        self.first_time = 0.0

    def add(self, now: float, raw: tuple[float, ...]) -> None:
        last = self.last_raw
        if last is not None and any(r < p for r, p in zip(raw, last, strict=True)):
            # A new incarnation: what the old one counted stays counted.
            self.offset = [o + p for o, p in zip(self.offset, last, strict=True)]
        self.last_raw = raw
        if not self.times:
            self.first_time = now
        elif now <= self.times[-1]:
            now = self.times[-1] + 1e-6
        self.times.append(now)
        self.values.append(tuple(o + r for o, r in zip(self.offset, raw, strict=True)))
        while len(self.times) > 2 and self.times[1] < now - _KEEP_SECS:
            self.times.popleft()
            self.values.popleft()

    def window(self, seconds: float | None, now: float) -> tuple[tuple[float, ...], float]:
        """(counter deltas over the window, seconds the rate-type figures cover)."""
        latest = self.values[-1]
        t_latest = self.times[-1]
        zero = (0.0,) * len(COUNTERS)
        if seconds is None or self.first_time >= now - seconds:
            # The task's whole life is inside the window: counters started at 0.
            # The covered span is from the first report (the first interval is unknown).
            if len(self.times) > 1:
                base_t, base = self.times[0], self.values[0]
                span = t_latest - base_t
                counts = latest
                rate_delta = tuple(a - b for a, b in zip(latest, base, strict=True))
                return _merge(counts, rate_delta), span
            return _merge(latest, zero), 0.0
        i = bisect.bisect_right(list(self.times), now - seconds) - 1
        i = max(i, 0)
        base_t, base = self.times[i], self.values[i]
        delta = tuple(a - b for a, b in zip(latest, base, strict=True))
        return _merge(delta, delta), t_latest - base_t


_BUSY = COUNTERS.index("busy_s")


def _merge(counts: tuple[float, ...], rate_delta: tuple[float, ...]) -> tuple[float, ...]:
    # Counts and latency sums from `counts`; busy time from the span actually
    # covered by samples, as capacity divides it by that span.
    return counts[:_BUSY] + rate_delta[_BUSY:_BUSY + 1] + counts[_BUSY + 1:]


class MetricsHistory:
    """The recent per-task reports of one topology.

        >>> h = MetricsHistory()
        >>> h.record({1: {"executed": 10, "busy_s": 0.5}}, now=100.0)
        >>> h.record({1: {"executed": 30, "busy_s": 1.5}}, now=101.0)
        >>> h.latest[1]["executed"]
        30
    """

    def __init__(self) -> None:
        self.series: dict[int, _TaskSeries] = {}
        self.latest: dict[int, dict[str, Any]] = {}

    def record(self, task_metrics: Mapping[Any, Mapping[str, Any]], now: float) -> None:
        for t, snap in task_metrics.items():
            task = int(t)
            s = self.series.get(task)
            if s is None:
                s = self.series[task] = _TaskSeries()
            s.add(now, _counters(snap))
            self.latest[task] = dict(snap)

    def window(self, task: int, seconds: float | None, now: float) -> tuple[dict[str, float], float] | None:
        s = self.series.get(task)
        if s is None or not s.times:
            return None
        values, span = s.window(seconds, now)
        return dict(zip(COUNTERS, values, strict=True)), span


@dataclass
class WindowStats:
    """One component's figures over one window."""

    emitted: int = 0
    transferred: int = 0
    executed: int = 0
    acked: int = 0
    failed: int = 0
    errors: int = 0
    rate: float | None = None  # tuples/s: emitted by a spout, executed by a bolt
    exec_ms: float | None = None
    complete_ms: float | None = None
    capacity: float | None = None  # bolts: the busiest task's share of the window in execute
    process_ms: float | None = None  # bolts: execute start to ack (sampled)


@dataclass
class ComponentStats:
    """Figures of one component summed over its tasks. The flat counters are all
    time; `windows` has them per window ("10s", "10m", "all")."""

    name: str
    kind: str
    tasks: int
    emitted: int = 0
    transferred: int = 0
    executed: int = 0
    acked: int = 0
    failed: int = 0
    errors: int = 0
    queue: int = 0
    pending: int = 0
    exec_ms: float | None = None
    complete_ms: float | None = None
    complete_p50_ms: float | None = None
    complete_p99_ms: float | None = None
    streams: dict[str, int] = field(default_factory=dict)
    capacity: float | None = None  # over the last 10 s
    process_ms: float | None = None  # bolts: execute start to ack (sampled), all time
    reporting: int = 0  # tasks with a report
    state: dict[str, int] = field(default_factory=dict)  # summed state_size() of its tasks (alert state)
    windows: dict[str, WindowStats] = field(default_factory=dict)
    task_figures: dict[int, dict[str, Any]] = field(default_factory=dict)


@dataclass
class WorkerStats:
    index: int
    pid: int = 0
    host: str = ""
    port: int | None = None
    uptime: float | None = None
    restarts: int = 0
    cpu: float | None = None  # percent of one core
    rss: int | None = None  # bytes
    backpressure: bool = False
    status: str = ""
    ready: bool = True


@dataclass
class TopologyStats:
    name: str
    uptime: float
    components: list[ComponentStats]
    workers: list[WorkerStats]
    errors: list[dict[str, Any]]
    error_count: int = 0
    status: str = ""

    @property
    def backpressure(self) -> bool:
        return any(w.backpressure for w in self.workers)

    def health(self) -> list[str]:
        """Short problems, empty when healthy: backpressure, failing components,
        busy bolts, restarted workers."""
        notes = []
        if self.backpressure:
            notes.append("backpressure on workers "
                         + ",".join(str(w.index) for w in self.workers if w.backpressure))
        for c in self.components:
            w = c.windows.get("10s")
            if w is not None and w.failed:
                notes.append(f"{c.name} failing ({w.failed} in 10s)")
            if c.capacity is not None and c.capacity >= 0.8 and not c.name.startswith("__"):
                notes.append(f"{c.name} at capacity {c.capacity:.2f}")
        restarts = sum(w.restarts for w in self.workers)
        if restarts:
            notes.append(f"{restarts} worker restart(s)")
        return notes

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["backpressure"] = self.backpressure
        out["health"] = self.health()
        for c in out["components"]:
            c["task_figures"] = {str(t): v for t, v in c["task_figures"].items()}
        return out


def _int(v: float) -> int:
    return int(round(v))


def aggregate(
    name: str,
    components: Mapping[str, tuple[str, Sequence[int]]],
    history: MetricsHistory,
    now: float,
    *,
    workers: Iterable[WorkerStats] = (),
    errors: Sequence[Mapping[str, Any]] = (),
    error_count: int = 0,
    uptime: float = 0.0,
    status: str = "",
) -> TopologyStats:
    """Per-component figures of one topology over each of WINDOWS.

    `components` maps a component name to (kind "spout"/"bolt", its task ids);
    `now` is on the clock `history` was recorded with. Counts are sums over
    tasks; latencies are means weighted by samples; capacity is the busiest
    task's share of the window spent executing (as Storm UI shows it)."""
    out: list[ComponentStats] = []
    for cname, (kind, tasks) in components.items():
        cs = ComponentStats(cname, kind, len(tasks))
        p50s: list[float] = []
        p99s: list[float] = []
        for t in tasks:
            m = history.latest.get(int(t))
            if not m:
                continue
            cs.reporting += 1
            for s, n in (m.get("emitted") or {}).items():
                cs.streams[str(s)] = cs.streams.get(str(s), 0) + int(n)
            cs.queue += int(m.get("queue") or 0)
            cs.pending += int(m.get("pending") or 0)
            for k, v in (m.get("state") or {}).items():
                cs.state[str(k)] = cs.state.get(str(k), 0) + int(v)
            if m.get("complete_p50_ms") is not None:
                p50s.append(float(m["complete_p50_ms"]))
            if m.get("complete_p99_ms") is not None:
                p99s.append(float(m["complete_p99_ms"]))
            cs.task_figures[int(t)] = {k: m.get(k) for k in ("executed", "acked", "failed", "queue", "worker")}
        # Across tasks: the mean of medians and the worst p99 (an upper bound).
        cs.complete_p50_ms = sum(p50s) / len(p50s) if p50s else None
        cs.complete_p99_ms = max(p99s) if p99s else None
        for wname, seconds in WINDOWS:
            ws = WindowStats()
            sums = dict.fromkeys(COUNTERS, 0.0)
            span = 0.0
            busiest: float | None = None
            for t in tasks:
                got = history.window(int(t), seconds, now)
                if got is None:
                    continue
                values, task_span = got
                for k, v in values.items():
                    sums[k] += v
                span = max(span, task_span)
                if task_span > 0 and kind == "bolt":
                    cap = min(1.0, values["busy_s"] / task_span)
                    busiest = cap if busiest is None else max(busiest, cap)
            ws.emitted, ws.transferred = _int(sums["emitted"]), _int(sums["transferred"])
            ws.executed, ws.acked = _int(sums["executed"]), _int(sums["acked"])
            ws.failed, ws.errors = _int(sums["failed"]), _int(sums["errors"])
            ws.exec_ms = sums["exec_ns"] / sums["exec_samples"] / 1e6 if sums["exec_samples"] else None
            ws.complete_ms = (sums["complete_ns"] / sums["complete_samples"] / 1e6
                              if sums["complete_samples"] else None)
            ws.process_ms = (sums["process_ns"] / sums["process_samples"] / 1e6
                             if sums["process_samples"] else None)
            ws.capacity = busiest
            if seconds is not None and span > 0:
                # The rate over the sampled span of the window.
                rate_counts = _window_rate_counts(history, tasks, seconds, now)
                ws.rate = rate_counts / span
            elif seconds is None and uptime > 0:
                ws.rate = (ws.emitted if kind == "spout" else ws.executed) / uptime
            cs.windows[wname] = ws
        all_time = cs.windows["all"]
        cs.emitted, cs.transferred = all_time.emitted, all_time.transferred
        cs.executed, cs.acked, cs.failed = all_time.executed, all_time.acked, all_time.failed
        cs.errors = all_time.errors
        cs.exec_ms, cs.complete_ms = all_time.exec_ms, all_time.complete_ms
        cs.process_ms = all_time.process_ms
        cs.capacity = cs.windows["10s"].capacity
        out.append(cs)
    return TopologyStats(name, uptime, out, list(workers), [dict(e) for e in errors],
                         max(error_count, len(errors)), status)


def _window_rate_counts(history: MetricsHistory, tasks: Sequence[int], seconds: float, now: float) -> float:
    """Tuples counted between the first and last sample inside the window (the
    throughput counter), to divide by the span those samples cover."""
    total = 0.0
    for t in tasks:
        s = history.series.get(int(t))
        if s is None or len(s.times) < 2:
            continue
        times = list(s.times)
        i = max(bisect.bisect_right(times, now - seconds) - 1, 0)
        first, last = s.values[i], s.values[-1]
        d = [a - b for a, b in zip(last, first, strict=True)]
        # emitted for spouts (no executes), executed for bolts
        executed = d[COUNTERS.index("executed")]
        total += executed if executed else d[COUNTERS.index("emitted")]
    return total


def stats_from_json(data: Mapping[str, Any]) -> TopologyStats:
    """The inverse of TopologyStats.to_json (what the CLI gets from nimbus)."""
    comps = []
    for c in data.get("components") or []:
        c = dict(c)
        windows = {k: WindowStats(**v) for k, v in (c.pop("windows", None) or {}).items()}
        figs = {int(t): v for t, v in (c.pop("task_figures", None) or {}).items()}
        known = {f for f in ComponentStats.__dataclass_fields__}
        comps.append(ComponentStats(**{k: v for k, v in c.items() if k in known}, windows=windows,
                                    task_figures=figs))
    wknown = set(WorkerStats.__dataclass_fields__)
    workers = [WorkerStats(**{k: v for k, v in w.items() if k in wknown}) for w in data.get("workers") or []]
    return TopologyStats(str(data.get("name", "")), float(data.get("uptime") or 0), comps, workers,
                         list(data.get("errors") or []), int(data.get("error_count") or 0),
                         str(data.get("status") or ""))


def for_window(components: Sequence[ComponentStats], window: str) -> list[ComponentStats]:
    """Copies of `components` whose flat counters, latencies and capacity are those
    of `window` ("10s", "10m", "all"), for views that show one window."""
    out = []
    for c in components:
        w = c.windows.get(window)
        if w is None:
            out.append(c)
            continue
        out.append(ComponentStats(
            c.name, c.kind, c.tasks, emitted=w.emitted, transferred=w.transferred, executed=w.executed,
            acked=w.acked, failed=w.failed, errors=w.errors, queue=c.queue, pending=c.pending,
            exec_ms=w.exec_ms, complete_ms=w.complete_ms, complete_p50_ms=c.complete_p50_ms,
            complete_p99_ms=c.complete_p99_ms, streams=dict(c.streams),
            capacity=w.capacity if w.capacity is not None else c.capacity, reporting=c.reporting,
            process_ms=w.process_ms,
            windows=c.windows, task_figures=c.task_figures))
    return out
