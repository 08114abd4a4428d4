"""`storm local` in the foreground: submit a topology to a LocalCluster, show the
dashboard while it runs (live on a terminal, a plain table every few seconds
otherwise), stop it on Ctrl-C, SIGTERM or after a duration, and print a final
summary. Owns the signal handlers while it runs; never leaves a worker behind."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import FrameType, TracebackType
from typing import Any

from rich.console import Console, RenderableType
from rich.live import Live
from rich.text import Text

from .. import LocalCluster, LocalTopology, StormError, TopologySpec
from .._local import ComponentStats
from .._prometheus import PrometheusExporter
from .._registry import register_local, unregister_local
from .._trace import trace_file
from ..trident._registry import describe_states
from ._dashboard import compute_rates, format_count, render_dashboard, throughput

SAMPLE_SECS = 1.0  # how often figures are read and the live dashboard redrawn
PLAIN_EVERY_SECS = 5.0  # how often the plain-text table is printed when not on a terminal


class StopRequest:
    """SIGINT and SIGTERM ask the run to stop.

    While the topology starts the first signal raises KeyboardInterrupt, so a start
    that hangs can be abandoned. Afterwards a signal only sets `requested`, which the
    run loop polls: no exception can tear through rich's Live or the cluster's locks
    halfway, and a second Ctrl-C while workers shut down does not cut that short."""

    def __init__(self) -> None:
        self.requested: str | None = None
        self.raise_now = False
        self._saved: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        first = self.requested is None
        if first:
            self.requested = signal.Signals(signum).name
        if first and self.raise_now:
            raise KeyboardInterrupt

    def __enter__(self) -> StopRequest:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._saved[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(
        self, tp: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for sig, handler in self._saved.items():
            signal.signal(sig, handler)


@dataclass
class RunResult:
    exit_code: int
    reason: str  # why it stopped, for the summary: "Ctrl-C", "--duration 10", ...
    seconds: float = 0.0  # how long the topology ran (start of the dashboard to the stop)


_SIGNAL_REASONS = {"SIGINT": "Ctrl-C (SIGINT)", "SIGTERM": "SIGTERM"}


def _status(elapsed: float, duration: float | None, note: str) -> str:
    ran = f"running {elapsed:.0f}s" + (f" of {duration:g}s" if duration else "")
    return f"{ran} · {note}" if note else ran


def flow_order(spec: TopologySpec) -> dict[str, int]:
    """Component name -> rank in data-flow order (spouts first, each bolt after the
    components it reads, system components last), for listing them as data moves."""
    comps = spec.components
    rank: dict[str, int] = {}

    def depth(name: str, seen: frozenset[str]) -> int:
        if name in rank:
            return rank[name]
        c = comps[name]
        # System streams (acking) run from bolts back to spouts: not data flow.
        sources = [
            s.source
            for s in c.inputs
            if s.source in comps and s.source not in seen and not s.stream.startswith("__")
        ]
        d = 1 + max((depth(s, seen | {name}) for s in sources), default=-1)
        rank[name] = 0 if c.is_spout else d
        return rank[name]

    for name in comps:
        depth(name, frozenset())
    ordered = sorted(comps, key=lambda n: (n.startswith("__"), rank[n]))
    return {name: i for i, name in enumerate(ordered)}


def _stats(topo: LocalTopology) -> list[ComponentStats]:
    order = flow_order(topo.spec)
    return sorted(topo.component_stats(), key=lambda c: order.get(c.name, len(order)))


def _dashboard(topo: LocalTopology, rates: Mapping[str, float], status: str) -> RenderableType:
    stats = topo.stats()
    order = flow_order(topo.spec)
    return render_dashboard(
        topo.name,
        sorted(stats.components, key=lambda c: order.get(c.name, len(order))),
        stats.workers,
        stats.errors,
        rates,
        status=status,
        error_count=stats.error_count,
        health=stats.health(),
    )


def _start_exporter(console: Console, topo: LocalTopology) -> PrometheusExporter | None:
    """The Prometheus endpoint of `storm local`, when storm.prometheus.port is set."""
    port = topo.spec.config.get("storm.prometheus.port")
    if port is None:
        return None
    host = str(topo.spec.config.get("storm.prometheus.host") or "127.0.0.1")
    try:
        exporter = PrometheusExporter(lambda: [topo.stats()], int(port), host,
                                      extra=_kafka_lag_families(topo)).start()
    except OSError as exc:
        raise StormError(f"cannot serve Prometheus metrics on {host}:{port} ({exc}); "
                         "set storm.prometheus.port to a free port, or 0 for any") from None
    console.print(f"prometheus metrics on {exporter.url}", highlight=False)
    return exporter


def _kafka_lag_families(topo: LocalTopology) -> Callable[[], list[Any]] | None:
    """The Kafka spouts' lag families of `topo` for its endpoint, or None without Kafka spouts."""
    if not any("KafkaSpout" in {k.__name__ for k in c.cls.__mro__} for c in topo.spec.components.values()):
        return None
    from ..kafka._lag import LagReader, kafka_sources, lag_families

    sources = kafka_sources(topo.spec)
    reader = LagReader()

    def families() -> list[Any]:
        rows = reader.lag(topo.name, sources)
        return lag_families([(topo.name, rows)] if isinstance(rows, list) else [])
    return families


def _kill_leftovers(cluster: LocalCluster) -> int:
    """Kill any worker a clean stop did not end (the cluster kills them too; this
    is the last line of defence, so `storm local` never leaves one running)."""
    killed = 0
    for topo in cluster.topologies.values():
        for w in topo.workers:
            if w.proc is not None and w.proc.poll() is None:
                w.proc.kill()
                killed += 1
                try:
                    w.proc.wait(5)
                except Exception:
                    pass
    return killed


def run_local(
    console: Console,
    target: str,
    config: Mapping[str, Any],
    name: str | None,
    duration: float | None,
) -> RunResult:
    """Run `target` until a signal or `duration`; StormError from a bad target or a
    failed start propagates to the caller once every process is gone."""
    cluster = LocalCluster(local_dir=config.get("storm.local.dir") or None)
    live_mode = console.is_terminal
    with StopRequest() as stop:
        try:
            stop.raise_now = True
            try:
                if live_mode:
                    with console.status(f"starting {target} ..."):
                        topo = cluster.submit(target, config=config, name=name)
                else:
                    topo = cluster.submit(target, config=config, name=name)
            except KeyboardInterrupt:
                console.print("interrupted while starting; stopping the workers")
                return RunResult(0, "interrupted while starting")
            finally:
                stop.raise_now = False
            pids = ", ".join(str(w.pid) for w in topo.workers)
            until = f"stops after {duration:g}s" if duration else "Ctrl-C to stop"
            console.print(
                f"running topology '{topo.name}' on {topo.num_workers} worker(s) "
                f"(pids {pids}); {until}",
                highlight=False,
            )
            exporter = _start_exporter(console, topo)
            sys.stdout.flush()
            # `storm query NAME` finds the topology's states through this entry.
            registered = register_local(cluster.local_dir, topo.name, topo.target, topo.overrides,
                                         {"states": describe_states(topo.spec, os.getcwd())})
            # `storm trace NAME` reads the sampled tuple trees from this file.
            topo.trace_file = trace_file(cluster.local_dir, topo.name)
            try:
                result = _watch(console, topo, duration, stop, live_mode)
            finally:
                unregister_local(registered)
                _remove_trace_file(topo)
                if exporter is not None:
                    exporter.stop()
        finally:
            stop.raise_now = False
            cluster.shutdown()
            _kill_leftovers(cluster)
    _summary(console, topo, result)
    return result


def _remove_trace_file(topo: LocalTopology) -> None:
    path, topo.trace_file = topo.trace_file, None
    if path is not None:
        try:
            path.unlink()
        except OSError:
            pass


def _watch(
    console: Console,
    topo: LocalTopology,
    duration: float | None,
    stop: StopRequest,
    live_mode: bool,
) -> RunResult:
    """Show figures until asked to stop."""
    started = time.monotonic()
    deadline = started + duration if duration else None
    note = "" if duration else "Ctrl-C to stop"
    prev = topo.component_stats()
    prev_at = started
    rates: dict[str, float] = {}
    next_plain = started + PLAIN_EVERY_SECS
    live = Live(console=console, auto_refresh=False, transient=True) if live_mode else None
    if live is not None:
        live.start()
        live.update(_dashboard(topo, rates, _status(0, duration, note)), refresh=True)
    try:
        while True:
            now = time.monotonic()
            if stop.requested:
                return RunResult(
                    0, _SIGNAL_REASONS.get(stop.requested, stop.requested), now - started
                )
            if deadline is not None and now >= deadline:
                return RunResult(0, f"--duration {duration:g}", now - started)
            if topo.stopped.is_set():
                return RunResult(1, "the local cluster stopped on its own", now - started)
            if now - prev_at >= SAMPLE_SECS:
                stats = topo.component_stats()
                rates = compute_rates(prev, stats, now - prev_at)
                prev, prev_at = stats, now
                status = _status(now - started, duration, note)
                if live is not None:
                    live.update(_dashboard(topo, rates, status), refresh=True)
                elif now >= next_plain:
                    next_plain = now + PLAIN_EVERY_SECS
                    console.print()
                    console.print(_dashboard(topo, rates, status))
                    sys.stdout.flush()
            # Polling a flag set by the signal handler keeps the loop signal-safe;
            # a tenth of a second is the longest Ctrl-C waits to be noticed.
            wait = 0.1 if deadline is None else max(0.0, min(0.1, deadline - now))
            time.sleep(wait)
    finally:
        if live is not None:
            live.update(Text(f"stopping {topo.name} ...", style="yellow"), refresh=True)
            live.stop()
        else:
            console.print(f"stopping {topo.name} ...", highlight=False)
            sys.stdout.flush()


def _summary(console: Console, topo: LocalTopology, result: RunResult) -> None:
    stats = _stats(topo)
    # The final figures include what the workers reported on their way out.
    ran = max(result.seconds, 1e-3)
    rates = {c.name: throughput(c) / ran for c in stats}
    console.print()
    console.print(
        render_dashboard(
            topo.name,
            stats,
            topo.workers,
            topo.recent_errors(),
            rates,
            status=f"final · ran {result.seconds:.1f}s · rate/s is the average",
            error_count=topo.error_count,
        )
    )
    restarts = sum(w.restarts for w in topo.workers)
    errors = max(topo.error_count, sum(c.errors for c in stats))
    alive = [w.pid for w in topo.workers if w.proc is not None and w.proc.poll() is None]
    console.print()
    # soft_wrap: each line stays whole however narrow the console, for logs and grep.
    head = Text("summary: ", style="bold")
    head.append(f"'{topo.name}' ran {result.seconds:.1f}s, stopped by {result.reason}")
    console.print(head, soft_wrap=True)
    state = Text(
        f"{topo.num_workers} worker(s), {restarts} restart(s), {format_count(errors)} error(s); "
    )
    if alive:
        state.append(f"workers still running: pids {alive}", style="bold red")
    else:
        state.append("all workers stopped", style="green")
    console.print(state, soft_wrap=True)
    console.print(Text("worker logs: ", style="bold") + Text(str(topo.log_dir)), soft_wrap=True)
    sys.stdout.flush()
