"""`storm stats` and `storm monitor`: a cluster topology's figures, read from
nimbus (its `stats` request, the windows computed there by storm._metrics),
printed once or shown live with the dashboard `storm local` uses. The live loop
reads single keys from the terminal (q quits, w window, t topology, s sort) and
restores the terminal whatever happens. Registered on the app in _app.py."""

from __future__ import annotations

import json
import os
import select
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from .._errors import StormError
from .._metrics import WINDOWS, ComponentStats, TopologyStats, for_window, stats_from_json
from ._app import app, fail
from ._cluster import ConfFileOpt, ConfigOpt, NameArg, _client, _conf, _duration, _user_errors
from ._dashboard import format_bytes, format_count, format_latency, render_dashboard

WINDOW_NAMES = [w for w, _ in WINDOWS]
SORTS = ("flow", "rate", "capacity", "name")

WindowOpt = Annotated[str, typer.Option("--window", help="Window of the counts: 10s, 10m or all.")]


def _check_window(window: str) -> None:
    if window not in WINDOW_NAMES:
        raise typer.BadParameter(f"must be one of {', '.join(WINDOW_NAMES)}", param_hint="'--window'")


def fetch_stats(client: Any, name: str) -> TopologyStats:
    return stats_from_json(client.call("stats", name=name))


def kafka_lag_table(kafka: Any) -> RenderableType | None:
    """The Kafka spouts' lag of a `stats` answer (its "kafka" entry), or None."""
    if not isinstance(kafka, dict):
        return None
    if kafka.get("error"):
        return Text(f"kafka lag: {kafka['error']}", style="yellow")
    t = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, padding=0, title="kafka lag",
              title_justify="left")
    for col in ("component", "topic", "partition", "committed", "end", "lag"):
        t.add_column(col, justify="left" if col in ("component", "topic") else "right", no_wrap=True)
    for r in kafka.get("partitions") or []:
        t.add_row(str(r["component"]), str(r["topic"]), str(r["partition"]),
                  "-" if r.get("committed") is None else str(r["committed"]), str(r["end"]), str(r["lag"]))
    return t


def kafka_lag_note(kafka: Any) -> str:
    """One line for the live dashboard: total lag per topic."""
    if not isinstance(kafka, dict):
        return ""
    if kafka.get("error"):
        return "kafka lag unknown"
    per_topic: dict[str, int] = {}
    for r in kafka.get("partitions") or []:
        per_topic[str(r["topic"])] = per_topic.get(str(r["topic"]), 0) + int(r["lag"])
    return "kafka lag " + ", ".join(f"{t} {n}" for t, n in sorted(per_topic.items())) if per_topic else ""


def sort_components(components: Sequence[ComponentStats], sort: str) -> list[ComponentStats]:
    """Spouts first then bolts (flow), or by 10 s rate, capacity or name; system
    components always last."""
    def rate(c: ComponentStats) -> float:
        w = c.windows.get("10s")
        return (w.rate or 0.0) if w is not None else 0.0

    keys: dict[str, Callable[[ComponentStats], Any]] = {
        "flow": lambda c: (c.kind != "spout", c.name),
        "rate": lambda c: -rate(c),
        "capacity": lambda c: -(c.capacity or 0.0),
        "name": lambda c: c.name,
    }
    key = keys[sort]
    return sorted(components, key=lambda c: (c.name.startswith("__"), key(c)))


def spout_rate(stats: TopologyStats) -> float:
    """Tuples/s the spouts emitted over the last 10 s."""
    return sum((c.windows["10s"].rate or 0.0) for c in stats.components
               if c.kind == "spout" and "10s" in c.windows)


def monitor_view(stats: TopologyStats, *, window: str = "all", sort: str = "flow", note: str = "",
                 trend: Sequence[float] | None = None) -> RenderableType:
    """One frame of `storm monitor`: the dashboard of `stats` with counts of `window`
    and rates over the last 10 s."""
    comps = sort_components(for_window(stats.components, window), sort)
    rates: dict[str, float] = {}
    for c in stats.components:
        w = c.windows.get("10s")
        if w is not None and w.rate is not None:
            rates[c.name] = w.rate
    status = f"{stats.status} · up {_duration(stats.uptime)} · window {window} · sort {sort}"
    if note:
        status += f" · {note}"
    return render_dashboard(stats.name, comps, stats.workers, stats.errors, rates, status=status,
                            error_count=stats.error_count, health=stats.health(), trend=trend)


def stats_tables(stats: TopologyStats, windows: Sequence[str]) -> RenderableType:
    """`storm stats` as text: one table per window, the workers, health and errors."""
    parts: list[RenderableType] = []
    head = Text(stats.name, style="bold")
    head.append(f"  {stats.status} · up {_duration(stats.uptime)} · backpressure "
                f"{'on' if stats.backpressure else 'off'}")
    parts.append(head)
    comps = sort_components(stats.components, "flow")
    for window in windows:
        # As Storm UI: spouts with their complete latency, bolts with their execute
        # and process latency, in tables of their own.
        spouts = [c for c in comps if c.kind == "spout" and window in c.windows]
        bolts = [c for c in comps if c.kind != "spout" and window in c.windows]
        st = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, padding=0,
                   title=f"window {window}", title_justify="left")
        st.add_column("spout", no_wrap=True, max_width=16, overflow="ellipsis")
        for col in ("emitted", "transf", "acked", "failed", "rate/s", "complete ms"):
            st.add_column(col, justify="right", no_wrap=True)
        for c in spouts:
            w = c.windows[window]
            st.add_row(c.name, format_count(w.emitted), format_count(w.transferred), format_count(w.acked),
                       format_count(w.failed), "-" if w.rate is None else format_count(w.rate),
                       format_latency(w.complete_ms), style="cyan")
        parts.append(st)
        bt = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, padding=0)
        bt.add_column("bolt", no_wrap=True, max_width=16, overflow="ellipsis")
        for col in ("emitted", "transf", "executed", "acked", "failed", "rate/s", "execute ms", "process ms",
                    "cap"):
            bt.add_column(col, justify="right", no_wrap=True)
        for c in bolts:
            w = c.windows[window]
            bt.add_row(c.name, format_count(w.emitted), format_count(w.transferred), format_count(w.executed),
                       format_count(w.acked), format_count(w.failed),
                       "-" if w.rate is None else format_count(w.rate), format_latency(w.exec_ms),
                       format_latency(w.process_ms), "-" if w.capacity is None else f"{w.capacity:.2f}",
                       style="dim" if c.name.startswith("__") else "")
        if bolts:
            parts.append(bt)
    extra = [c for c in comps if c.complete_p50_ms is not None or c.queue or c.pending or c.state]
    if extra:
        lines = Text()
        for c in extra:
            lines.append(f"{c.name}: queue {c.queue}, pending {c.pending}")
            if c.complete_p50_ms is not None:
                lines.append(f", complete p50 {format_latency(c.complete_p50_ms)} ms, "
                             f"p99 {format_latency(c.complete_p99_ms)} ms")
            if c.state:
                lines.append(", state " + ", ".join(
                    f"{k} {format_bytes(v) if k == 'bytes' else format_count(v)}" for k, v in sorted(c.state.items())))
            lines.append("\n")
        lines.rstrip()
        parts.append(lines)
    wt = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, padding=0)
    for col in ("worker", "host:port", "pid", "status", "uptime", "restarts", "cpu%", "rss", "bp"):
        wt.add_column(col, justify="left" if col in ("host:port", "status") else "right", no_wrap=True)
    for wk in stats.workers:
        wt.add_row(str(wk.index), f"{wk.host}:{wk.port}" if wk.port else (wk.host or "-"), str(wk.pid or "-"),
                   wk.status, "-" if wk.uptime is None else _duration(wk.uptime), str(wk.restarts),
                   "-" if wk.cpu is None else f"{wk.cpu:.0f}", format_bytes(wk.rss),
                   "on" if wk.backpressure else "")
    parts.append(wt)
    health = stats.health()
    parts.append(Text("health " + ("; ".join(health) if health else "ok"),
                      style="yellow" if health else "green"))
    if stats.errors:
        parts.append(Text(f"last errors ({stats.error_count} in all)", style="bold red"))
        for e in stats.errors[-5:]:
            msg = " ".join(str(e.get("error", "")).split())
            when = e.get("time")
            stamp = time.strftime("%H:%M:%S ", time.localtime(when)) if isinstance(when, (int, float)) else ""
            parts.append(Text(f"{stamp}{e.get('component')}[{e.get('task')}] {e.get('where', '')}: {msg}",
                              no_wrap=True, overflow="ellipsis"))
        parts.append(Text("(tracebacks: storm stats --json)", style="dim"))
    return Group(*parts)


@app.command()
def stats(
    name: NameArg,
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON (for scripts).")] = False,
    window: Annotated[str | None, typer.Option("--window", help="Only this window: 10s, 10m or all.")] = None,
    config: ConfigOpt = None,
    conf_file: ConfFileOpt = None,
) -> None:
    """Print a cluster topology's figures once: per component and window, workers, errors."""
    if window is not None:
        _check_window(window)
    with _user_errors():
        conf, _ = _conf(conf_file, config)
        data = _client(conf).call("stats", name=name)
    if as_json:
        print(json.dumps(data, indent=2, sort_keys=True))
        return
    console = Console(highlight=False)
    console.print(stats_tables(stats_from_json(data), [window] if window else WINDOW_NAMES))
    lag = kafka_lag_table(data.get("kafka"))
    if lag is not None:
        console.print(lag)


class KeyReader:
    """Single keys from the terminal (cbreak mode, restored on exit); no keys
    when stdin is not a terminal."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream if stream is not None else sys.stdin
        self._saved: Any = None

    @contextmanager
    def active(self) -> Iterator[KeyReader]:
        fd = None
        try:
            if self.stream.isatty():
                import termios
                import tty

                fd = self.stream.fileno()
                self._saved = termios.tcgetattr(fd)
                tty.setcbreak(fd)
        except (OSError, ValueError, AttributeError):
            fd = None
        try:
            yield self
        finally:
            if fd is not None and self._saved is not None:
                import termios

                termios.tcsetattr(fd, termios.TCSADRAIN, self._saved)

    def read(self, timeout: float) -> str | None:
        """A key pressed within `timeout` seconds, else None (after the timeout)."""
        if self._saved is None:
            time.sleep(timeout)
            return None
        ready, _, _ = select.select([self.stream], [], [], timeout)
        if not ready:
            return None
        ch = os.read(self.stream.fileno(), 1)
        return ch.decode(errors="replace") if ch else None


def run_monitor(console: Console, fetch: Callable[[str], TopologyStats], names: Callable[[], list[str]],
                name: str | None, interval: float, keys: Callable[[float], str | None],
                window: str = "all", max_frames: int | None = None,
                extra_note: Callable[[str], str] | None = None) -> int:
    """The live loop: redraw every `interval` s until q (or `max_frames` frames)."""
    sort = "flow"
    trends: dict[str, deque[float]] = {}
    frames = 0
    note = ""
    with Live(console=console, auto_refresh=False, screen=console.is_terminal, transient=True) as live:
        while True:
            available = names()
            if name is None or name not in available:
                if not available:
                    view: RenderableType = Text("no topologies running (q quits)", style="yellow")
                    name = None
                else:
                    name = available[0]
            if name is not None:
                try:
                    current = fetch(name)
                    trend = trends.setdefault(name, deque(maxlen=40))
                    trend.append(spout_rate(current))
                    shown = note or "keys q w s t"
                    more = extra_note(name) if extra_note is not None else ""
                    view = monitor_view(current, window=window, sort=sort,
                                        note=f"{more} · {shown}" if more else shown, trend=list(trend))
                except StormError as exc:
                    view = Text(f"{name}: {exc}", style="red")
            live.update(view, refresh=True)
            frames += 1
            note = ""
            if max_frames is not None and frames >= max_frames:
                return 0
            deadline = time.monotonic() + interval
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                key = keys(left)
                if key is None:
                    continue
                if key in ("q", "Q", "\x1b", "\x03"):
                    return 0
                if key == "w":
                    window = WINDOW_NAMES[(WINDOW_NAMES.index(window) + 1) % len(WINDOW_NAMES)]
                elif key == "s":
                    sort = SORTS[(SORTS.index(sort) + 1) % len(SORTS)]
                elif key == "t" and available:
                    name = available[(available.index(name) + 1) % len(available)] if name in available \
                        else available[0]
                else:
                    continue
                break  # redraw now


@app.command()
def monitor(
    name: Annotated[str | None, typer.Argument(metavar="[NAME]", help="The topology (default: the first).",
                                               show_default=False)] = None,
    interval: Annotated[float, typer.Option("--interval", "-i", min=0.1, help="Seconds between redraws.")] = 2.0,
    window: WindowOpt = "all",
    config: ConfigOpt = None,
    conf_file: ConfFileOpt = None,
) -> None:
    """Live dashboard of a cluster topology (q quit, w window, s sort, t next topology)."""
    _check_window(window)
    with _user_errors():
        conf, _ = _conf(conf_file, config)
        client = _client(conf)
        listed = [t["name"] for t in client.call("list")["topologies"]]
        if name is not None and name not in listed:
            raise fail(f"no topology named '{name}' (running: {', '.join(listed) or 'none'})")

    def names() -> list[str]:
        return [t["name"] for t in client.call("list")["topologies"]]

    reader = KeyReader()
    try:
        with reader.active():
            lags: dict[str, Any] = {}

            def fetch(n: str) -> TopologyStats:
                data = client.call("stats", name=n)
                lags[n] = data.get("kafka")
                return stats_from_json(data)
            run_monitor(Console(highlight=False), fetch, names, name, interval, reader.read, window=window,
                        extra_note=lambda n: kafka_lag_note(lags.get(n)))
    except StormError as exc:
        raise fail(str(exc)) from None
    except KeyboardInterrupt:
        pass
