"""Windowed bolts: tumbling and sliding windows by tuple count or by duration, on
processing time or on event time (a timestamp field, an allowed lag, watermarks
that are the minimum over the input streams, late tuples dropped or sent to a
late stream). This module owns the window bookkeeping (`WindowManager`,
`Watermarks`) and the `WindowedBolt` that drives it from `execute` and tick
tuples; it must not touch the runtime: it only uses the public Bolt API (emit,
ack, ticks through ``topology.tick.tuple.freq.secs``).

Example::

    >>> from storm import Spout, Topology
    >>> from storm.testing import TestTopology
    >>> class Events(Spout):
    ...     outputs = ["ts", "value"]
    >>> class Total(WindowedBolt):
    ...     outputs = ["start", "end", "total"]
    ...     def process_window(self, window):
    ...         self.emit([window.start, window.end, sum(t["value"] for t in window.tuples)])
    >>> class T(Topology):
    ...     events = Events.spec()
    ...     total = Total.spec(inputs=[events], length=Duration(10), timestamp_field="ts")
    >>> with TestTopology(T, inputs={"events": [[1.0, 5], [4.0, 2], [12.0, 7]]}) as t:
    ...     t.run()
    ...     t.tick()
    ...     t.result.emitted("total")
    [[0.0, 10.0, 7]]

Tuples are acked when they leave the window (the first window that no longer
contains them), so ``topology.message.timeout.secs`` must exceed window length
plus slide: a bolt whose duration window does not fit raises TopologyError
before it runs (`check_topology` does the same check on a whole spec).
"""

from __future__ import annotations

import bisect
import math
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from ._component import Bolt, ComponentSpec, Stream
from ._errors import TopologyError
from ._tuple import Tuple

if TYPE_CHECKING:
    from ._context import TopologyContext
    from ._grouping import Grouping
    from ._topology import TopologySpec

__all__ = [
    "LATE_FIELDS",
    "Count",
    "Duration",
    "Watermarks",
    "Window",
    "WindowConfig",
    "WindowManager",
    "WindowedBolt",
    "check_topology",
]

# Component config keys (Apache Storm's names; durations in milliseconds).
LENGTH_COUNT = "topology.bolts.window.length.count"
LENGTH_MS = "topology.bolts.window.length.duration.ms"
SLIDE_COUNT = "topology.bolts.sliding.interval.count"
SLIDE_MS = "topology.bolts.sliding.interval.duration.ms"
TIMESTAMP_FIELD = "topology.bolts.tuple.timestamp.field.name"
LAG_MS = "topology.bolts.tuple.timestamp.max.lag.ms"
WATERMARK_MS = "topology.bolts.watermark.event.interval.ms"
LATE_STREAM = "topology.bolts.late.tuple.stream"
TICK_KEY = "topology.tick.tuple.freq.secs"
TIMEOUT_KEY = "topology.message.timeout.secs"

#: Fields of a late stream: the late tuple's values, where it came from, its timestamp.
LATE_FIELDS = ("values", "component", "stream", "timestamp")


@dataclass(frozen=True)
class Count:
    """A window length or slide of ``n`` tuples."""

    n: int

    def __post_init__(self) -> None:
        if not isinstance(self.n, int) or isinstance(self.n, bool) or self.n < 1:
            raise TopologyError(f"Count(n) needs an integer n >= 1, got {self.n!r}")


@dataclass(frozen=True)
class Duration:
    """A window length or slide of ``secs`` seconds (``Duration.ms(500)`` for ms)."""

    secs: float

    def __post_init__(self) -> None:
        if isinstance(self.secs, bool) or not isinstance(self.secs, (int, float)) or not self.secs > 0:
            raise TopologyError(f"Duration(secs) needs a number of seconds > 0, got {self.secs!r}")

    @classmethod
    def ms(cls, millis: float) -> Duration:
        return cls(millis / 1000.0)


@dataclass
class Window:
    """What a windowed bolt sees when a window fires.

    ``tuples``: every tuple in the window, oldest first (by timestamp for duration
    windows); ``new``: those not in any earlier window; ``expired``: those that were
    in the previous window and have now left (they are acked after
    ``process_window`` returns). ``start``/``end``: the window's bounds in seconds,
    ``start <= ts < end`` (for count windows, the first and last arrival times).
    """

    tuples: list[Any]
    new: list[Any]
    expired: list[Any]
    start: float
    end: float

    def __len__(self) -> int:
        return len(self.tuples)


@dataclass(frozen=True)
class WindowConfig:
    """A window: length and slide (both Count or both Duration), event time
    through ``timestamp_field`` (seconds since the epoch) with ``lag`` seconds of
    allowed disorder, watermarks every ``watermark_interval`` seconds, and the
    stream late tuples go to (None: they are dropped and counted)."""

    length: Count | Duration
    slide: Count | Duration
    timestamp_field: str | None = None
    lag: float = 0.0
    watermark_interval: float = 1.0
    late_stream: str | None = None

    def check(self, owner: str) -> None:
        """Raise TopologyError naming ``owner`` if the combination is unsupported."""
        if not isinstance(self.length, (Count, Duration)) or not isinstance(self.slide, (Count, Duration)):
            raise TopologyError(
                f"windowed bolt '{owner}': length and slide must be Count(n) or Duration(secs), "
                f"got {self.length!r} and {self.slide!r}"
            )
        if type(self.length) is not type(self.slide):
            raise TopologyError(
                f"windowed bolt '{owner}': length {self.length!r} and slide {self.slide!r} must both "
                "be Count or both Duration"
            )
        if isinstance(self.length, Count) and isinstance(self.slide, Count):
            if self.slide.n > self.length.n:
                raise TopologyError(
                    f"windowed bolt '{owner}': slide {self.slide.n} is longer than the window "
                    f"({self.length.n} tuples); tuples would be skipped"
                )
            if self.timestamp_field is not None:
                raise TopologyError(
                    f"windowed bolt '{owner}': count windows run on arrival order; event time "
                    "(timestamp_field) needs Duration windows"
                )
        if (isinstance(self.length, Duration) and isinstance(self.slide, Duration)
                and self.slide.secs > self.length.secs):
            raise TopologyError(
                f"windowed bolt '{owner}': slide {self.slide.secs:g}s is longer than the window "
                f"({self.length.secs:g}s); tuples would be skipped"
            )
        if self.lag < 0 or self.watermark_interval <= 0:
            raise TopologyError(
                f"windowed bolt '{owner}': lag must be >= 0 and watermark_interval > 0, "
                f"got {self.lag!r} and {self.watermark_interval!r}"
            )
        if self.late_stream is not None and self.timestamp_field is None:
            raise TopologyError(
                f"windowed bolt '{owner}': a late stream needs event time; set timestamp_field"
            )

    @property
    def event_time(self) -> bool:
        return self.timestamp_field is not None

    @property
    def hold_secs(self) -> float | None:
        """Longest a tuple stays unacked in the window (None for count windows)."""
        if isinstance(self.length, Duration) and isinstance(self.slide, Duration):
            return self.length.secs + self.slide.secs
        return None

    @property
    def tick_secs(self) -> float | None:
        """How often the bolt needs a tick: watermarks, or firing on processing time."""
        if self.event_time:
            return self.watermark_interval
        if isinstance(self.slide, Duration):
            return max(0.01, min(self.slide.secs / 4, 1.0))
        return None

    def to_conf(self) -> dict[str, Any]:
        conf: dict[str, Any] = {}
        if isinstance(self.length, Count):
            conf[LENGTH_COUNT] = self.length.n
        else:
            conf[LENGTH_MS] = self.length.secs * 1000.0
        if isinstance(self.slide, Count):
            conf[SLIDE_COUNT] = self.slide.n
        else:
            conf[SLIDE_MS] = self.slide.secs * 1000.0
        if self.timestamp_field is not None:
            conf[TIMESTAMP_FIELD] = self.timestamp_field
        conf[LAG_MS] = self.lag * 1000.0
        conf[WATERMARK_MS] = self.watermark_interval * 1000.0
        if self.late_stream is not None:
            conf[LATE_STREAM] = self.late_stream
        tick = self.tick_secs
        if tick is not None:
            conf[TICK_KEY] = tick
        return conf

    @classmethod
    def from_conf(cls, conf: Mapping[str, Any], owner: str) -> WindowConfig:
        """Read a window from (component) config; TopologyError if there is none."""
        length: Count | Duration
        if conf.get(LENGTH_COUNT) is not None:
            length = Count(int(conf[LENGTH_COUNT]))
        elif conf.get(LENGTH_MS) is not None:
            length = Duration(float(conf[LENGTH_MS]) / 1000.0)
        else:
            raise TopologyError(
                f"windowed bolt '{owner}' has no window: pass length=Count(n) or "
                f"length=Duration(secs) to spec(), or set {LENGTH_COUNT} / {LENGTH_MS}"
            )
        slide: Count | Duration
        if conf.get(SLIDE_COUNT) is not None:
            slide = Count(int(conf[SLIDE_COUNT]))
        elif conf.get(SLIDE_MS) is not None:
            slide = Duration(float(conf[SLIDE_MS]) / 1000.0)
        else:
            slide = length  # tumbling
        wc = cls(
            length=length,
            slide=slide,
            timestamp_field=conf.get(TIMESTAMP_FIELD),
            lag=float(conf.get(LAG_MS) or 0.0) / 1000.0,
            watermark_interval=float(conf.get(WATERMARK_MS) or 1000.0) / 1000.0,
            late_stream=conf.get(LATE_STREAM),
        )
        wc.check(owner)
        return wc


def check_timeout(window: WindowConfig, conf: Mapping[str, Any], owner: str) -> None:
    """Raise TopologyError if tuples would time out while they wait in the window."""
    hold = window.hold_secs
    if hold is None or not conf.get("topology.enable.message.timeouts", True):
        return
    if conf.get("topology.acker.executors") == 0:
        return  # acking off: nothing times out
    timeout = float(conf.get(TIMEOUT_KEY, 30.0))
    if timeout < hold:
        raise TopologyError(
            f"windowed bolt '{owner}': topology.message.timeout.secs is {timeout:g}s, shorter than "
            f"window length + slide ({hold:g}s); tuples would time out and be replayed while they "
            f"wait in the window. Set topology.message.timeout.secs to at least {math.ceil(hold)}"
        )


def check_topology(spec: TopologySpec) -> None:
    """Check every windowed bolt of a built topology (window sanity and the
    message timeout); raises TopologyError naming the bolt."""
    for cdef in spec.components.values():
        if isinstance(cdef.cls, type) and issubclass(cdef.cls, WindowedBolt):
            cdef.cls.validate_topology(spec, cdef.name)


class Watermarks:
    """Event-time progress: per input stream the newest timestamp seen; the
    watermark is the minimum over all input streams minus the allowed lag, and
    only moves forward. Until every input stream has delivered a tuple there is
    no watermark (a silent stream holds windows back, as in Apache Storm)."""

    def __init__(self, streams: Iterable[Hashable], lag: float) -> None:
        self.streams = frozenset(streams)
        self.lag = lag
        self.latest: dict[Hashable, float] = {}
        self.current = -math.inf

    def observe(self, stream: Hashable, ts: float) -> None:
        if ts > self.latest.get(stream, -math.inf):
            self.latest[stream] = ts

    def update(self) -> float:
        """Recompute; returns the (never decreasing) watermark, -inf if none yet."""
        latest = self.latest
        if self.streams and any(s not in latest for s in self.streams):
            return self.current
        if latest:
            mark = min(latest.values()) - self.lag
            if mark > self.current:
                self.current = mark
        return self.current


class _Entry:
    __slots__ = ("ts", "item", "seen")

    def __init__(self, ts: float, item: Any) -> None:
        self.ts = ts
        self.item = item
        self.seen = False


def _entry_ts(e: _Entry) -> float:
    return e.ts


class WindowManager:
    """The windows of one bolt task, independent of the runtime (tested alone).

    ``add(item, ts)`` buffers an item (``ts``: arrival time or event time) and
    returns the windows a count window fired; ``advance(t)`` fires every duration
    window whose end is ``<= t`` (``t``: now, or the watermark). Each fired
    window comes with the items that left the window for good (to be acked).
    Duration windows are aligned to multiples of the slide: ``[end - length, end)``.
    """

    def __init__(self, config: WindowConfig) -> None:
        self.config = config
        self._count = isinstance(config.length, Count)
        self._buf: list[_Entry] = []
        self._cbuf: deque[_Entry] = deque()
        self._since = 0
        self._next_end: float | None = None
        self.fired = 0

    def __len__(self) -> int:
        return len(self._cbuf) if self._count else len(self._buf)

    def add(self, item: Any, ts: float) -> list[Window]:
        entry = _Entry(ts, item)
        if self._count:
            self._cbuf.append(entry)
            self._since += 1
            assert isinstance(self.config.slide, Count)
            if self._since >= self.config.slide.n:
                self._since = 0
                return [self._fire_count()]
            return []
        buf = self._buf
        if not buf or ts >= buf[-1].ts:
            buf.append(entry)
        else:
            bisect.insort_right(buf, entry, key=_entry_ts)
        # An older tuple (event time, within the lag) may open an earlier window;
        # windows already fired ended at or before the watermark, which ts is not before.
        end = self._first_end_after(ts)
        if self._next_end is None or end < self._next_end:
            self._next_end = end
        return []

    def _first_end_after(self, ts: float) -> float:
        assert isinstance(self.config.slide, Duration)
        slide = self.config.slide.secs
        return (math.floor(ts / slide) + 1) * slide

    def _fire_count(self) -> Window:
        assert isinstance(self.config.length, Count)
        buf = self._cbuf
        expired = []
        while len(buf) > self.config.length.n:
            expired.append(buf.popleft().item)
        tuples = [e.item for e in buf]
        new = []
        for e in buf:
            if not e.seen:
                e.seen = True
                new.append(e.item)
        self.fired += 1
        return Window(tuples, new, expired, buf[0].ts, buf[-1].ts)

    def advance(self, t: float) -> list[Window]:
        """Fire every duration window that ends at or before ``t``."""
        if self._count or self._next_end is None:
            return []
        assert isinstance(self.config.length, Duration) and isinstance(self.config.slide, Duration)
        length, slide = self.config.length.secs, self.config.slide.secs
        buf = self._buf
        fired: list[Window] = []
        while self._next_end is not None and self._next_end <= t:
            end = self._next_end
            start = end - length
            cut = 0
            while cut < len(buf) and buf[cut].ts < start:
                cut += 1
            expired = [e.item for e in buf[:cut]]
            if cut:
                del buf[:cut]
            stop = bisect.bisect_left(buf, end, key=_entry_ts)
            if stop or expired:
                tuples = []
                new = []
                for e in buf[:stop]:
                    tuples.append(e.item)
                    if not e.seen:
                        e.seen = True
                        new.append(e.item)
                self.fired += 1
                fired.append(Window(tuples, new, expired, start, end))
                self._next_end = end + slide
            elif buf:
                # Nothing in this window and nothing left it: jump to the first
                # window that holds the oldest buffered tuple.
                self._next_end = max(end + slide, self._first_end_after(buf[0].ts))
            else:
                self._next_end = None
        return fired


class WindowedBolt(Bolt):
    """A bolt that processes windows of tuples instead of single tuples.

    Override ``process_window(window)``; declare the window with ``spec(...,
    length=..., slide=..., timestamp_field=..., lag=..., late_stream=...)`` or with
    the class attribute ``window``. Emits made in ``process_window`` without
    explicit anchors are anchored to every tuple of the window (as in Apache
    Storm) unless the class sets ``anchor_to_window = False``. Inputs are acked
    when they leave the window; a tuple without a usable timestamp is failed.
    The watermark is the minimum over every input stream of every source task
    (each task's newest timestamp minus the lag), so it waits for the slowest
    task. Late tuples (event time before the watermark) go to the late stream with
    ``LATE_FIELDS`` or are dropped; either way they are acked and counted in
    ``self.late``.
    """

    #: Default window of the class (spec() arguments override it).
    window: ClassVar[WindowConfig | None] = None
    anchor_to_window: ClassVar[bool] = True
    #: Processing-time clock; tests may replace it.
    clock: Callable[[], float] = staticmethod(time.time)

    @classmethod
    def spec(
        cls,
        name: str | None = None,
        inputs: Mapping[Any, Grouping] | Sequence[Any] | None = None,
        par: int = 1,
        config: Mapping[str, Any] | None = None,
        outputs: Sequence[str | Stream] | None = None,
        *,
        length: Count | Duration | None = None,
        slide: Count | Duration | None = None,
        timestamp_field: str | None = None,
        lag: float = 0.0,
        watermark_interval: float = 1.0,
        late_stream: str | None = None,
    ) -> ComponentSpec:
        """Declare the bolt with its window (tumbling when ``slide`` is omitted)."""
        owner = name or cls.__name__
        conf = dict(config or {})
        if length is not None:
            window = WindowConfig(length, slide or length, timestamp_field, float(lag),
                                  float(watermark_interval), late_stream)
        elif cls.window is not None:
            window = cls.window
        else:
            window = WindowConfig.from_conf(conf, owner)
        window.check(owner)
        for key, value in window.to_conf().items():
            conf.setdefault(key, value)
        base: Any = outputs if outputs is not None else cls.outputs
        declared: list[str | Stream] = (
            [base] if isinstance(base, (str, Stream)) else list(base or [])
        )
        if window.late_stream is not None:
            declared.append(Stream(LATE_FIELDS, name=window.late_stream))
        return super().spec(name=name, inputs=inputs, par=par, config=conf,
                            outputs=declared if declared else None)

    @classmethod
    def validate_topology(cls, spec: TopologySpec, name: str) -> None:
        """Build-time check of this bolt in a built topology (window and message
        timeout); for a core hook that calls it from build_spec (see check_topology)."""
        cdef = spec.components[name]
        conf = dict(spec.config)
        conf.update(cdef.config)
        check_timeout(cls.window_config(conf, name), conf, name)

    @classmethod
    def window_config(cls, conf: Mapping[str, Any], owner: str) -> WindowConfig:
        if conf.get(LENGTH_COUNT) is None and conf.get(LENGTH_MS) is None and cls.window is not None:
            return cls.window
        return WindowConfig.from_conf(conf, owner)

    # -- user hook -------------------------------------------------------------
    def process_window(self, window: Window) -> None:
        """Process one window: emit results (anchored to the window by default)."""

    # -- runtime side ----------------------------------------------------------
    def prepare(self, conf: dict[str, Any], context: TopologyContext) -> None:
        """Set up the window; subclasses that override prepare must call super()."""
        owner = context.component_id
        self.window_conf = self.window_config(conf, owner)
        check_timeout(self.window_conf, conf, owner)
        self.windows = WindowManager(self.window_conf)
        # One event-time stream per (source task, stream): tasks of one component
        # progress independently, so the slowest task holds the watermark back.
        streams = [(task, stream) for (comp, stream) in context.get_this_sources()
                   if not comp.startswith("__") for task in context.get_component_tasks(comp)]
        self.watermarks = Watermarks(streams, self.window_conf.lag)
        self.late = 0
        self._ts_index: dict[int, int] = {}
        self._anchors: list[Any] | None = None

    def emit(self, values: Sequence[Any], stream: str = "default", anchors: Sequence[Tuple] | None = None,
             direct_task: int | None = None, need_task_ids: bool = True) -> Sequence[int]:
        """Emit through the task's collector; while process_window runs, an emit
        without anchors is anchored to the window's tuples (anchor_to_window)."""
        if anchors is None and self._anchors is not None:
            anchors = self._anchors
        return self.collector.emit(values, stream, anchors, direct_task, need_task_ids)

    def execute(self, tup: Tuple) -> None:
        wc = self.window_conf
        field_name = wc.timestamp_field
        if field_name is None:
            now = self.clock()
            # Windows that ended before this tuple arrived fire without it.
            fired = self.windows.advance(now)
            fired += self.windows.add(tup, now)
            if fired:
                self._deliver(fired)
            return
        try:
            ts = float(tup[field_name])
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            self.report_error(TopologyError(
                f"windowed bolt: tuple from '{tup.source_component}' stream '{tup.stream}' has no "
                f"numeric timestamp field '{field_name}' ({exc}); failing it"
            ))
            self.fail(tup)
            return
        marks = self.watermarks
        if ts < marks.current:
            self.late += 1
            if wc.late_stream is not None:
                self.emit([list(tup.values), tup.source_component, tup.stream, ts],
                          stream=wc.late_stream, anchors=[tup])
            self.ack(tup)
            return
        marks.observe((tup.source_task, tup.stream), ts)
        self.windows.add(tup, ts)

    def process_tick(self, tup: Tuple) -> None:
        if self.window_conf.event_time:
            t = self.watermarks.update()
        else:
            t = self.clock()
        fired = self.windows.advance(t)
        if fired:
            self._deliver(fired)

    def _deliver(self, fired: list[Window]) -> None:
        for window in fired:
            self._anchors = window.tuples if self.anchor_to_window else None
            try:
                self.process_window(window)
            except Exception as exc:
                # The window's tuples stay buffered until they expire, so failing
                # them here would settle them twice; record the error instead.
                self.report_error(exc)
            finally:
                self._anchors = None
            ack = self.ack
            for t in window.expired:
                ack(t)
