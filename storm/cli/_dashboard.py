"""The topology dashboard: turns a snapshot of component figures, workers and recent
errors into one rich renderable. Pure functions only (no clock, no I/O, no cluster
access), so `storm local` and `storm monitor` share it and tests can render it to
a recording Console. Sized for an 80x24 terminal."""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from rich import box
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.table import Table
from rich.text import Text

__all__ = [
    "ComponentFigures",
    "WorkerFigures",
    "compute_rates",
    "format_bytes",
    "format_count",
    "format_latency",
    "sparkline",
    "render_dashboard",
    "throughput",
]


class ComponentFigures(Protocol):
    """What the dashboard reads of one component (storm's ComponentStats has it)."""

    @property
    def name(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def tasks(self) -> int: ...
    @property
    def emitted(self) -> int: ...
    @property
    def executed(self) -> int: ...
    @property
    def acked(self) -> int: ...
    @property
    def failed(self) -> int: ...
    @property
    def errors(self) -> int: ...
    @property
    def queue(self) -> int: ...
    @property
    def exec_ms(self) -> float | None: ...
    @property
    def complete_ms(self) -> float | None: ...


class WorkerFigures(Protocol):
    """What the dashboard reads of one worker (storm's WorkerInfo has it)."""

    @property
    def index(self) -> int: ...
    @property
    def pid(self) -> int: ...
    @property
    def restarts(self) -> int: ...


def throughput(c: ComponentFigures) -> int:
    """The counter a component's rate is taken from: tuples emitted by a spout,
    tuples executed by a bolt."""
    return c.emitted if c.kind == "spout" else c.executed


def compute_rates(
    previous: Iterable[ComponentFigures], current: Iterable[ComponentFigures], seconds: float
) -> dict[str, float]:
    """Per-component tuples/second between two snapshots taken `seconds` apart.

    A counter that went down (a restarted worker starts from zero) gives 0, not a
    negative rate."""
    if seconds <= 0:
        return {}
    before = {c.name: throughput(c) for c in previous}
    return {c.name: max(0.0, (throughput(c) - before.get(c.name, 0)) / seconds) for c in current}


def format_count(n: float) -> str:
    """At most five characters: 9999, 12.3k, 593k, 1.23M, 53.6M, 1.20G."""
    n = round(n)
    if abs(n) < 10_000:
        return str(n)
    v = float(n)
    for unit in ("k", "M", "G", "T"):
        v /= 1000
        a = abs(v)
        # Decide on the rounded value, so 99_999 reads 100k and not 100.0k.
        if round(a, 2) < 10:
            return f"{v:.2f}{unit}"
        if round(a, 1) < 100:
            return f"{v:.1f}{unit}"
        if round(a) < 1000:
            return f"{v:.0f}{unit}"
    return f"{v:.0f}T"


def format_latency(ms: float | None) -> str:
    if ms is None:
        return "-"
    if ms < 1:
        return f"{ms:.3f}"
    if ms < 10:
        return f"{ms:.2f}"
    if ms < 100:
        return f"{ms:.1f}"
    return f"{ms:.0f}"


def _capacity(c: ComponentFigures) -> Text:
    cap = getattr(c, "capacity", None)
    if cap is None or c.kind == "spout":
        return Text("-")
    # Storm UI's warning level: a bolt busy 80% of the window is the bottleneck.
    return Text(f"{cap:.2f}", style="bold red" if cap >= 0.8 else ("yellow" if cap >= 0.5 else ""))


_BARS = "▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[float], width: int = 40) -> str:
    """The last `width` values as bars, scaled to their maximum: ▁▂▄█."""
    vals = list(values)[-width:]
    top = max(vals, default=0.0)
    if top <= 0:
        return _BARS[0] * len(vals)
    return "".join(_BARS[min(len(_BARS) - 1, int(v / top * (len(_BARS) - 1) + 0.5))] for v in vals)


def format_bytes(n: float | None) -> str:
    """RSS in at most five characters: 812K, 31.2M, 1.20G."""
    if n is None:
        return "-"
    v = float(n)
    for unit in ("B", "K", "M", "G"):
        if v < 1000 or unit == "G":
            return f"{v:.0f}{unit}" if v >= 100 or unit == "B" else f"{v:.1f}{unit}"
        v /= 1024
    return f"{v:.1f}T"


class _Components:
    """The component tables, as Storm UI has them: spouts with their complete
    latency (a tuple tree's emit to its last ack), then bolts with their execute
    latency and, with room (88 columns or more), their process latency ("proc":
    execute start to ack)."""

    def __init__(self, stats: Sequence[ComponentFigures], rates: Mapping[str, float]) -> None:
        self.stats, self.rates = stats, rates

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        spouts = [c for c in self.stats if c.kind == "spout"]
        bolts = [c for c in self.stats if c.kind != "spout"]
        if spouts or not bolts:
            yield _spout_table(spouts, self.rates)
        if bolts:
            yield _bolt_table(bolts, self.rates, process=options.max_width >= 88)


def _table(first: str) -> Table:
    table = Table(
        box=box.SIMPLE_HEAD,
        padding=0,  # the box's blank column rule separates columns: 12 fit in 80
        pad_edge=False,
        show_edge=False,
        expand=False,
        header_style="bold",
    )
    table.add_column(first, no_wrap=True, overflow="ellipsis", min_width=9, max_width=14)
    return table


def _style(c: ComponentFigures) -> str:
    return "dim" if c.name.startswith("__") else ("cyan" if c.kind == "spout" else "")


def _rate(c: ComponentFigures, rates: Mapping[str, float]) -> str:
    rate = rates.get(c.name)
    return "-" if rate is None else format_count(rate)


def _spout_table(stats: Sequence[ComponentFigures], rates: Mapping[str, float]) -> Table:
    table = _table("spout")
    for header in ("tasks", "emitted", "acked", "failed", "rate/s", "complete ms", "err"):
        table.add_column(header, justify="right", no_wrap=True)
    for c in stats:
        table.add_row(
            c.name,
            str(c.tasks),
            format_count(c.emitted),
            format_count(c.acked),
            Text(format_count(c.failed), style="red" if c.failed else ""),
            _rate(c, rates),
            format_latency(c.complete_ms),
            Text(format_count(c.errors), style="bold red" if c.errors else ""),
            style=_style(c),
        )
    return table


def _bolt_table(stats: Sequence[ComponentFigures], rates: Mapping[str, float], process: bool = False) -> Table:
    table = _table("bolt")
    for header in ("tasks", "emitted", "executed", "acked", "failed", "rate/s", "queue", "execute ms"):
        table.add_column(header, justify="right", no_wrap=True)
    if process:
        table.add_column("proc", justify="right", no_wrap=True)
    table.add_column("cap", justify="right", no_wrap=True)
    table.add_column("err", justify="right", no_wrap=True)
    for c in stats:
        proc = [format_latency(getattr(c, "process_ms", None))] if process else []
        table.add_row(
            c.name,
            str(c.tasks),
            format_count(c.emitted),
            format_count(c.executed),
            format_count(c.acked),
            Text(format_count(c.failed), style="red" if c.failed else ""),
            _rate(c, rates),
            format_count(c.queue),
            format_latency(c.exec_ms),
            *proc,
            _capacity(c),
            Text(format_count(c.errors), style="bold red" if c.errors else ""),
            style=_style(c),
        )
    return table


class _WorkersLine:
    """`workers #0 pid 12 #1 pid 13 ...`, wrapped between workers, never inside one."""

    def __init__(self, workers: Sequence[WorkerFigures]) -> None:
        self.entries: list[Text] = []
        for w in workers:
            entry = Text(f"#{w.index} pid {w.pid or '-'}")
            cpu, rss = getattr(w, "cpu", None), getattr(w, "rss", None)
            if cpu is not None:
                entry.append(f" {cpu:.0f}%")
            if rss is not None:
                entry.append(f" {format_bytes(rss)}")
            if w.restarts:
                entry.append(f" restarts {w.restarts}", style="yellow")
            if getattr(w, "backpressure", False):
                entry.append(" backpressure", style="yellow")
            if getattr(w, "ready", True) is False:
                entry.append(" starting", style="dim")
            self.entries.append(entry)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        line = Text("workers", style="bold")
        if not self.entries:
            line.append(" none", style="dim")
        for entry in self.entries:
            if line.cell_len + 2 + entry.cell_len > options.max_width and line.plain.strip():
                yield line
                line = Text("       ")  # under the entries, not under "workers"
            line.append("  ")
            line.append_text(entry)
        yield line


def _error_lines(errors: Sequence[Mapping[str, Any]], shown: int) -> list[Text]:
    # A failing bolt repeats the same error: fold runs of it into one line (xN),
    # so the few lines there are show different errors.
    groups: list[tuple[Mapping[str, Any], int]] = []
    for e in reversed(errors):
        key = (e.get("component"), e.get("task"), e.get("error"))
        if (
            groups
            and (
                groups[-1][0].get("component"),
                groups[-1][0].get("task"),
                groups[-1][0].get("error"),
            )
            == key
        ):
            groups[-1] = (groups[-1][0], groups[-1][1] + 1)
        elif len(groups) < shown:
            groups.append((e, 1))
        else:
            break
    lines = []
    for e, repeats in reversed(groups):
        when = e.get("time")
        stamp = (
            datetime.datetime.fromtimestamp(when).strftime("%H:%M:%S ")
            if isinstance(when, (int, float))
            else ""
        )
        where = str(e.get("component", "?"))
        if e.get("task"):
            where += f"[{e['task']}]"
        message = " ".join(str(e.get("error", "")).split())  # one line, whatever it holds
        line = Text(no_wrap=True, overflow="ellipsis")
        line.append(stamp, style="dim")
        line.append(where, style="bold red")
        if repeats > 1:
            line.append(f" (x{repeats})", style="yellow")
        line.append(f" {message}")
        lines.append(line)
    return lines


def render_dashboard(
    topology_name: str,
    stats: Sequence[ComponentFigures],
    workers: Sequence[WorkerFigures],
    errors: Sequence[Mapping[str, Any]],
    rates: Mapping[str, float],
    *,
    status: str = "",
    error_count: int | None = None,
    max_errors: int = 3,
    health: Sequence[str] | None = None,
    trend: Sequence[float] | None = None,
) -> RenderableType:
    """The dashboard of one topology.

    `rates` maps component name to tuples/second (see compute_rates); `errors` are
    the recent error records (dicts with time, component, task, error), newest
    last; `error_count` is how many were recorded since the start (more than are
    kept). The header shows the largest of that and the components' error counters.
    `status` is a short note after the name, e.g. "running 12s of 60s";
    `health` (see TopologyStats.health) adds a line: "ok" or the problems;
    `trend` (spout tuples/s, oldest first) a sparkline under the title.

        >>> from rich.console import Console
        >>> Console(width=80).print(render_dashboard("wc", [], [], [], {}))  # doctest: +SKIP
    """
    title = Text()
    title.append(topology_name, style="bold")
    if status:
        title.append(f"  {status}", style="dim")
    parts: list[RenderableType] = [title]
    if trend:
        line = Text("spouts ", style="bold")
        line.append(sparkline(trend), style="cyan")
        line.append(f" {format_count(trend[-1])}/s")
        parts.append(line)
    parts += [_Components(stats, rates), _WorkersLine(workers)]
    if health is not None:
        line = Text("health ", style="bold")
        if health:
            line.append("; ".join(health), style="yellow")
        else:
            line.append("ok", style="green")
        line.no_wrap, line.overflow = True, "ellipsis"
        parts.append(line)
    # Workers record a failing task's errors with back-off but count every one.
    total = max(error_count or 0, len(errors), sum(c.errors for c in stats))
    if total:
        parts.append(Text(f"last errors ({format_count(total)} in all)", style="bold red"))
        parts.extend(_error_lines(errors, max_errors))
    else:
        parts.append(Text("no errors", style="green"))
    return Group(*parts)
