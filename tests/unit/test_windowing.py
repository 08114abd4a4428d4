"""storm.windowing: window contents and boundaries (count and duration, tumbling
and sliding), event time (lag, late tuples, watermark across two input streams),
acking when tuples leave the window, and rejecting a window that does not fit
in the message timeout."""

from __future__ import annotations

import doctest
from typing import Any

import pytest

import storm.windowing
from storm import Spout, Topology, TopologyError
from storm.testing import TestTopology, run_topology
from storm.windowing import (
    Count,
    Duration,
    Watermarks,
    Window,
    WindowConfig,
    WindowedBolt,
    WindowManager,
    check_topology,
)

pytestmark = pytest.mark.timeout(30)


def items(windows: list[Window]) -> list[tuple[list[Any], list[Any], list[Any], float, float]]:
    return [(w.tuples, w.new, w.expired, w.start, w.end) for w in windows]


def test_doctests() -> None:
    failures, _ = doctest.testmod(storm.windowing)
    assert failures == 0


# -- WindowManager ----------------------------------------------------------------
def test_tumbling_duration_window_boundaries_are_start_inclusive_end_exclusive() -> None:
    m = WindowManager(WindowConfig(Duration(10), Duration(10)))
    for ts in (0.0, 5.0, 9.999, 10.0, 15.0):
        assert m.add(ts, ts) == []
    assert m.advance(9.99) == []
    assert items(m.advance(10.0)) == [([0.0, 5.0, 9.999], [0.0, 5.0, 9.999], [], 0.0, 10.0)]
    assert items(m.advance(20.0)) == [([10.0, 15.0], [10.0, 15.0], [0.0, 5.0, 9.999], 10.0, 20.0)]
    # The last tuples leave in a window of their own (so they are acked), then nothing fires.
    assert items(m.advance(30.0)) == [([], [], [10.0, 15.0], 20.0, 30.0)]
    assert m.advance(100.0) == []
    assert len(m) == 0


def test_sliding_duration_window_new_and_expired() -> None:
    m = WindowManager(WindowConfig(Duration(10), Duration(5)))
    for ts in (1.0, 6.0, 11.0):
        m.add(ts, ts)
    got = items(m.advance(15.0))
    assert got == [
        ([1.0], [1.0], [], -5.0, 5.0),
        ([1.0, 6.0], [6.0], [], 0.0, 10.0),
        ([6.0, 11.0], [11.0], [1.0], 5.0, 15.0),
    ]


def test_empty_gap_is_skipped_without_firing_empty_windows() -> None:
    m = WindowManager(WindowConfig(Duration(1), Duration(1)))
    m.add("a", 0.5)
    m.add("b", 1000.5)
    got = items(m.advance(2000.0))
    assert got == [
        (["a"], ["a"], [], 0.0, 1.0),
        ([], [], ["a"], 1.0, 2.0),
        (["b"], ["b"], [], 1000.0, 1001.0),
        ([], [], ["b"], 1001.0, 1002.0),
    ]


def test_out_of_order_tuples_are_sorted_into_their_windows() -> None:
    m = WindowManager(WindowConfig(Duration(10), Duration(10)))
    for ts in (3.0, 12.0, 1.0, 9.0):
        m.add(ts, ts)
    assert [w.tuples for w in m.advance(20.0)] == [[1.0, 3.0, 9.0], [12.0]]


def test_tumbling_count_window() -> None:
    m = WindowManager(WindowConfig(Count(3), Count(3)))
    fired: list[Window] = []
    for i in range(7):
        fired += m.add(i, float(i))
    assert items(fired) == [([0, 1, 2], [0, 1, 2], [], 0.0, 2.0), ([3, 4, 5], [3, 4, 5], [0, 1, 2], 3.0, 5.0)]
    assert m.advance(1e9) == []  # count windows ignore time


def test_sliding_count_window() -> None:
    m = WindowManager(WindowConfig(Count(4), Count(2)))
    fired: list[Window] = []
    for i in range(8):
        fired += m.add(i, float(i))
    assert [(w.tuples, w.new, w.expired) for w in fired] == [
        ([0, 1], [0, 1], []),
        ([0, 1, 2, 3], [2, 3], []),
        ([2, 3, 4, 5], [4, 5], [0, 1]),
        ([4, 5, 6, 7], [6, 7], [2, 3]),
    ]


def test_watermark_is_the_minimum_over_input_streams_minus_lag() -> None:
    w = Watermarks([("a", "default"), ("b", "default")], lag=2.0)
    w.observe(("a", "default"), 100.0)
    assert w.update() == float("-inf"), "no watermark until every stream delivered"
    w.observe(("b", "default"), 50.0)
    assert w.update() == 48.0
    w.observe(("b", "default"), 40.0)  # older: the stream's newest stays 50
    assert w.update() == 48.0
    w.observe(("b", "default"), 200.0)
    assert w.update() == 98.0


@pytest.mark.parametrize("bad, message", [
    (WindowConfig(Count(2), Duration(1)), "both be Count or both Duration"),
    (WindowConfig(Duration(1), Duration(2)), "slide 2s is longer than the window"),
    (WindowConfig(Count(2), Count(3)), "slide 3 is longer"),
    (WindowConfig(Count(2), Count(2), timestamp_field="ts"), "needs Duration windows"),
    (WindowConfig(Duration(2), Duration(2), late_stream="late"), "late stream needs event time"),
])
def test_bad_window_configs_are_rejected_with_the_bolt_name(bad: WindowConfig, message: str) -> None:
    with pytest.raises(TopologyError, match=message) as info:
        bad.check("counts")
    assert "'counts'" in str(info.value)


def test_bad_lengths() -> None:
    with pytest.raises(TopologyError, match="integer n >= 1"):
        Count(0)
    with pytest.raises(TopologyError, match="seconds > 0"):
        Duration(-1)
    assert Duration.ms(500) == Duration(0.5)


# -- WindowedBolt in a topology ---------------------------------------------------
class Events(Spout):
    outputs = ["ts", "value"]


class Other(Spout):
    outputs = ["ts", "value"]


class Summary(WindowedBolt):
    outputs = ["start", "end", "values", "new", "expired"]

    def process_window(self, window: Window) -> None:
        self.emit([window.start, window.end, [t["value"] for t in window.tuples],
                   [t["value"] for t in window.new], [t["value"] for t in window.expired]])


class EventTime(Topology):
    config = {"topology.message.timeout.secs": 60.0}
    events = Events.spec()
    summary = Summary.spec(inputs=[events], length=Duration(10), slide=Duration(5),
                           timestamp_field="ts", lag=2.0, late_stream="late")


def test_event_time_sliding_window_with_lag_and_late_stream() -> None:
    with TestTopology(EventTime, inputs={"events": []}) as t:
        # 7 arrives out of order but within the 2 s lag: it is kept.
        t.feed("events", [[1.0, "a"], [6.0, "b"], [8.0, "c"], [7.0, "d"], [12.0, "e"]])
        t.run()
        t.tick()  # watermark 12 - 2 = 10: windows ending at 5 and 10 fire
        assert t.result.emitted("summary") == [
            [-5.0, 5.0, ["a"], ["a"], []],
            [0.0, 10.0, ["a", "b", "d", "c"], ["b", "d", "c"], []],
        ]
        # 9 is before the watermark (10): late, goes to the late stream, acked.
        t.feed("events", [[9.0, "late"], [17.5, "f"]])
        t.run()
        assert t.result.emitted("summary", "late") == [[[9.0, "late"], "events", "default", 9.0]]
        assert 5 in t.result.acked("events")
        t.tick()  # watermark 15.5: window ending at 15 fires; 'a' leaves and is acked
        assert t.result.emitted("summary")[-1] == [5.0, 15.0, ["b", "d", "c", "e"], ["e"], ["a"]]
        assert sorted(t.result.acked("events")) == [0, 5]
        assert t.result.instances("summary")[0].late == 1


def test_inputs_are_acked_only_when_they_leave_the_window() -> None:
    with TestTopology(EventTime, inputs={"events": [[1.0, "a"], [2.0, "b"], [30.0, "z"]]}) as t:
        t.run()
        assert t.result.acked("events") == []
        t.tick()  # watermark 28: 'a' and 'b' leave at the window ending at 15
        assert sorted(t.result.acked("events")) == [0, 1]
        assert t.result.pending("events") == [2]


class TwoStreams(Topology):
    config = {"topology.message.timeout.secs": 60.0}
    events = Events.spec()
    other = Other.spec()
    summary = Summary.spec(inputs=[events, other], length=Duration(10), timestamp_field="ts")


def test_watermark_waits_for_the_slowest_input_stream() -> None:
    with TestTopology(TwoStreams, inputs={"events": [[25.0, "fast"]], "other": []}) as t:
        t.run()
        t.tick()
        assert t.result.emitted("summary") == [], "no watermark until 'other' delivers"
        t.feed("other", [[3.0, "slow"]])
        t.run()
        t.tick()  # watermark min(25, 3) = 3: nothing ends by 3
        assert t.result.emitted("summary") == []
        t.feed("other", [[11.0, "slow2"]])
        t.run()
        t.tick()  # watermark 11: window [0, 10) fires with 'slow' only
        assert t.result.emitted("summary") == [[0.0, 10.0, ["slow"], ["slow"], []]]


class ManualClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


CLOCK = ManualClock()


class ProcessingSummary(Summary):
    clock = CLOCK


class ProcessingTime(Topology):
    events = Events.spec()
    summary = ProcessingSummary.spec(inputs=[events], length=Duration(2))


def test_processing_time_tumbling_window() -> None:
    CLOCK.now = 1000.5
    with TestTopology(ProcessingTime, inputs={"events": [[0, "a"], [0, "b"]]}) as t:
        t.run()
        t.tick()
        assert t.result.emitted("summary") == []
        CLOCK.now = 1002.0
        t.feed("events", [[0, "c"]])  # arrives after the first window closed
        t.run()
        assert t.result.emitted("summary") == [[1000.0, 1002.0, ["a", "b"], ["a", "b"], []]]
        CLOCK.now = 1004.1
        t.tick()
        assert t.result.emitted("summary")[-1] == [1002.0, 1004.0, ["c"], ["c"], ["a", "b"]]
        assert sorted(t.result.acked("events")) == [0, 1]


class CountSummary(WindowedBolt):
    outputs = ["values"]

    def process_window(self, window: Window) -> None:
        self.emit([[t["value"] for t in window.tuples]])


class CountTopology(Topology):
    events = Events.spec()
    summary = CountSummary.spec(inputs=[events], length=Count(3), slide=Count(2))


def test_count_window_in_a_topology() -> None:
    result = run_topology(CountTopology, inputs={"events": [[0, i] for i in range(7)]})
    assert result.emitted("summary") == [[[0, 1]], [[1, 2, 3]], [[3, 4, 5]]]
    assert sorted(result.acked("events")) == [0, 1, 2]


def test_emits_in_a_window_are_anchored_to_the_window() -> None:
    with TestTopology(EventTime, inputs={"events": [[1.0, "a"], [2.0, "b"], [30.0, "z"]]}) as t:
        t.run()
        t.tick()
        first = next(e for e in t.result.emissions("summary") if e.stream == "default")
        assert [a["value"] for a in first.anchors] == ["a", "b"]


def test_tuple_without_timestamp_is_failed_with_an_error() -> None:
    result = run_topology(EventTime, inputs={"events": [["not a time", "x"]]})
    assert result.failed("events") == [0]
    assert "no numeric timestamp field 'ts'" in result.errors[0].error


class Short(Topology):
    config = {"topology.message.timeout.secs": 10.0}
    events = Events.spec()
    summary = Summary.spec(inputs=[events], length=Duration(10), slide=Duration(5),
                           timestamp_field="ts")


def test_message_timeout_shorter_than_window_plus_slide_is_rejected() -> None:
    with pytest.raises(TopologyError, match=r"'summary'.*10s, shorter than window length \+ slide \(15s\)"):
        check_topology(Short.build())
    with pytest.raises(TopologyError, match="at least 15"):
        TestTopology(Short, inputs={"events": []})
    check_topology(Short.build({"topology.message.timeout.secs": 15.0}))
    check_topology(Short.build({"topology.acker.executors": 0}))  # acking off: nothing times out


def test_short_message_timeout_is_rejected_when_the_topology_is_built() -> None:
    with pytest.raises(TopologyError, match=r"'summary'.*shorter than window length \+ slide"):
        Short.build()
    Short.build({"topology.message.timeout.secs": 15.0})
