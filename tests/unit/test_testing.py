"""storm.testing: whole topologies in one process on fixed input (word count with
exact counts, groupings, acking, failures, errors, ticks, virtual time, stalls and
timeouts) and single bolts through run_bolt, all on the real runtime."""

from __future__ import annotations

import doctest
import importlib.util
import json
from collections import Counter
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import storm.testing
from storm import BasicBolt, Bolt, FailedException, Grouping, Spout, Topology, TopologyBuilder
from storm.testing import (
    HarnessError,
    TestTopology,
    TopologyStalled,
    TopologyTimeout,
    make_tick_tuple,
    make_tuple,
    run_bolt,
    run_topology,
)

pytestmark = pytest.mark.timeout(10)

WORDCOUNT_PATH = Path(__file__).resolve().parents[2] / "topologies" / "wordcount.py"


def _load_wordcount() -> ModuleType:
    spec = importlib.util.spec_from_file_location("wordcount_under_test", WORDCOUNT_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


wordcount = _load_wordcount()
WordCount = wordcount.WordCount

SENTENCES = ["the cow jumped over the moon", "an apple a day keeps the doctor away", "the end"]
EXPECTED = Counter(w for s in SENTENCES for w in s.split())


@pytest.fixture
def wc_config(tmp_path: Path) -> dict[str, Any]:
    return {"wordcount.output": str(tmp_path / "counts.json")}


# -- small components used by several tests --------------------------------------
class Numbers(Spout):
    outputs = ["n"]


class Relay(Bolt):
    """Passes every value on, anchored, then acks: a tree two levels deep."""

    outputs = ["n"]

    def execute(self, tup: Any) -> None:
        self.emit([tup[0]], anchors=[tup])
        self.ack(tup)


class FailEveryTenth(Bolt):
    def execute(self, tup: Any) -> None:
        if tup[0] % 10 == 0:
            self.fail(tup)
        else:
            self.ack(tup)


class RaiseOnThree(Bolt):
    outputs = ["n"]

    def execute(self, tup: Any) -> None:
        if tup[0] == 3:
            raise ValueError("three is not allowed")
        self.emit([tup[0]], anchors=[tup])
        self.ack(tup)


class NeverAck(Bolt):
    def execute(self, tup: Any) -> None:
        pass


class Collect(Bolt):
    def execute(self, tup: Any) -> None:
        self.ack(tup)


class Acking(Topology):
    numbers = Numbers.spec()
    relay = Relay.spec(inputs=[numbers], par=2)
    check = FailEveryTenth.spec(inputs={relay: Grouping.shuffle()}, par=3)


class Raising(Topology):
    numbers = Numbers.spec()
    risky = RaiseOnThree.spec(inputs=[numbers], par=2)
    sink = Collect.spec(inputs=[risky])


class Silent(Topology):
    numbers = Numbers.spec()
    hole = NeverAck.spec(inputs=[numbers])


def _fan(grouping: Grouping, par: int = 3) -> TopologyBuilder:
    b = TopologyBuilder("fan")
    b.set_spout("numbers", Numbers)
    b.set_bolt("copy", Collect, par=par, inputs={"numbers": grouping})
    return b


# -- word count ------------------------------------------------------------------
def test_wordcount_counts_are_exact(wc_config: dict[str, Any]) -> None:
    result = run_topology(WordCount, {"sentences": [[s] for s in SENTENCES]}, config=wc_config)
    # CountBolt emits its final counts in cleanup; each word lives on one task.
    counts = dict(result.emitted("count"))
    assert counts == EXPECTED
    assert len(result.emitted("count")) == len(EXPECTED)
    assert sorted(result.emitted("split")) == sorted([w] for s in SENTENCES for w in s.split())
    assert sorted(result.acked("sentences")) == [0, 1, 2]  # msg id = input index
    assert result.failed("sentences") == [] and result.pending("sentences") == []
    assert result.errors == []
    # Emits made during cleanup are recorded, not delivered: the sink is shut down too.
    assert result.received("sink") == []


def test_wordcount_ticks_flow_counts_to_the_sink(wc_config: dict[str, Any]) -> None:
    result = run_topology(WordCount, {"sentences": [[s] for s in SENTENCES]}, config=wc_config, ticks=2)
    assert dict(result.received("sink")) == EXPECTED
    # Second tick: the sink writes what it got in the first round.
    written = json.loads(Path(wc_config["wordcount.output"]).read_text())
    assert written == dict(EXPECTED)
    assert [inst.counts for inst in result.instances("sink")] == [dict(EXPECTED)]


def test_wordcount_from_a_target_string_with_a_real_finite_spout(wc_config: dict[str, Any]) -> None:
    conf = dict(wc_config, **{"wordcount.repeat": 2, "wordcount.sentences": SENTENCES})
    result = run_topology(f"{WORDCOUNT_PATH}:WordCount", config=conf)
    result.raise_for_errors()
    assert dict(result.emitted("count")) == {w: 2 * n for w, n in EXPECTED.items()}
    # Two spout tasks, each numbering its own sentences from 1.
    assert sorted(result.acked("sentences")) == [1, 1, 2, 2, 3, 3]


def test_unbounded_real_spout_stops_at_max_tuples(wc_config: dict[str, Any]) -> None:
    result = run_topology(WordCount, config=wc_config, max_tuples=50)
    assert len(result.emitted("sentences")) == 50
    words = [w for (s,) in result.emitted("sentences") for w in s.split()]
    assert dict(result.emitted("count")) == Counter(words)


def test_unbounded_real_spout_times_out_saying_what_moves(wc_config: dict[str, Any]) -> None:
    with pytest.raises(TopologyTimeout) as info:
        run_topology(WordCount, config=wc_config, timeout=0.2)
    message = str(info.value)
    assert "WordCount" in message and "timeout" in message
    assert "spout 'sentences' is still emitting" in message and "max_tuples" in message
    assert info.value.result is not None and info.value.result.emitted("sentences")


def test_max_steps_bounds_the_run(wc_config: dict[str, Any]) -> None:
    with pytest.raises(TopologyTimeout, match=r"within 5 loop passes \(max_steps\)"):
        run_topology(WordCount, config={**wc_config, "topology.spout.batch.size": 5}, max_steps=5)


def test_runs_repeat_exactly(wc_config: dict[str, Any]) -> None:
    def once() -> tuple[list[Any], list[Any], list[Any]]:
        r = run_topology(WordCount, {"sentences": [[s] for s in SENTENCES * 3]}, config=wc_config)
        emits = [(e.component, e.task, e.stream, e.values, e.targets, e.msg_id) for e in r.emissions()]
        return emits, [(d.task, d.tup.values) for d in r.deliveries()], r.acked("sentences")

    first, second = once(), once()
    assert first == second  # same order of emits, executions and acks
    assert first[2] != sorted(first[2])  # so the order is not trivially sorted: ack order is real


# -- groupings -----------------------------------------------------------------------
def test_fields_grouping_sends_each_word_to_exactly_one_task(wc_config: dict[str, Any]) -> None:
    sentences = [[" ".join(f"w{i}" for i in range(k, k + 7))] for k in range(0, 40, 3)]
    result = run_topology(WordCount, {"sentences": sentences}, config=wc_config)
    by_task = result.received_by_task("count")
    assert sorted(by_task) == WordCount.build().components["count"].tasks
    owner: dict[str, int] = {}
    for task, rows in by_task.items():
        for (word,) in rows:
            assert owner.setdefault(word, task) == task, f"{word} went to two count tasks"
    assert all(by_task.values()), "every count task got some words"
    assert Counter(w for rows in by_task.values() for (w,) in rows) == Counter(
        w for (s,) in sentences for w in s.split()
    )


def test_all_grouping_copies_every_tuple_to_every_task() -> None:
    rows = [[n] for n in range(5)]
    result = run_topology(_fan(Grouping.all()), {"numbers": rows})
    by_task = result.received_by_task("copy", source="numbers")
    assert len(by_task) == 3
    assert all(got == rows for got in by_task.values())
    assert all(len(e.targets) == 3 for e in result.emissions("numbers"))
    assert result.acked("numbers") == [0, 1, 2, 3, 4]


def test_shuffle_grouping_spreads_evenly_and_global_picks_one_task() -> None:
    shuffled = run_topology(_fan(Grouping.shuffle()), {"numbers": [[n] for n in range(30)]})
    assert sorted(len(v) for v in shuffled.received_by_task("copy").values()) == [10, 10, 10]
    single = run_topology(_fan(Grouping.global_()), {"numbers": [[n] for n in range(6)]})
    counts = {t: len(v) for t, v in single.received_by_task("copy").items()}
    assert counts[min(counts)] == 6 and sum(counts.values()) == 6


# -- acking ----------------------------------------------------------------------------
def test_failing_every_tenth_tuple_fails_exactly_those_msg_ids() -> None:
    result = run_topology(Acking, {"numbers": [[n] for n in range(100)]})
    assert sorted(result.failed("numbers")) == list(range(0, 100, 10))
    assert sorted(result.acked("numbers")) == [n for n in range(100) if n % 10]
    assert result.pending("numbers") == []
    assert len(result.received("check")) == 100


def test_a_bolt_that_raises_is_recorded_and_its_input_failed() -> None:
    result = run_topology(Raising, {"numbers": [[n] for n in range(6)]})
    assert result.failed("numbers") == [3]
    assert sorted(result.acked("numbers")) == [0, 1, 2, 4, 5]
    [error] = result.errors
    assert error.component == "risky" and error.where == "execute"
    assert error.task in Raising.build().components["risky"].tasks
    assert "ValueError: three is not allowed" in error.traceback
    assert sorted(result.received("sink")) == [[0], [1], [2], [4], [5]]
    with pytest.raises(HarnessError, match="component 'risky' task .* in execute: ValueError"):
        result.raise_for_errors()


class AckWrongThing(Bolt):
    def execute(self, tup: Any) -> None:
        if tup.values[0] == 2:
            self.ack(tup.values)  # not a Tuple: recorded, the worker goes on
        else:
            self.ack(tup)


class AckingWrongThing(Topology):
    numbers = Numbers.spec()
    sloppy = AckWrongThing.spec(inputs=[numbers])


def test_acking_something_that_is_not_a_tuple_is_an_error_not_a_crash() -> None:
    result = run_topology(AckingWrongThing, {"numbers": [[n] for n in range(5)]})
    assert sorted(result.acked("numbers")) == [0, 1, 3, 4]
    assert result.pending("numbers") == [2]  # its tree was never acked
    [error] = result.errors
    assert error.component == "sloppy" and error.where == "ack"
    assert "acked [2], which is not a tuple it received" in error.traceback


def test_without_ackers_the_spout_gets_every_ack_at_once() -> None:
    result = run_topology(Acking, {"numbers": [[n] for n in range(20)]},
                          config={"topology.acker.executors": 0})
    assert result.acked("numbers") == list(range(20)) and result.failed("numbers") == []


def test_unacked_trees_stay_pending_until_they_time_out() -> None:
    result = run_topology(Silent, {"numbers": [[n] for n in range(4)]})
    assert result.pending("numbers") == [0, 1, 2, 3] and result.failed("numbers") == []
    expired = run_topology(Silent, {"numbers": [[n] for n in range(4)]}, expire_pending=True)
    assert sorted(expired.failed("numbers")) == [0, 1, 2, 3] and expired.pending("numbers") == []


def test_max_spout_pending_with_a_bolt_that_never_acks_stalls() -> None:
    conf = {"topology.max.spout.pending": 2}
    with pytest.raises(TopologyStalled) as info:
        run_topology(Silent, {"numbers": [[n] for n in range(5)]}, config=conf)
    message = str(info.value)
    assert "2 tuple trees pending, msg ids 0, 1" in message
    assert "3 inputs not emitted yet, indices 2, 3, 4" in message and "expire_pending" in message
    # Letting the message timeout pass unblocks the spout, window by window.
    result = run_topology(Silent, {"numbers": [[n] for n in range(5)]}, config=conf, expire_pending=True)
    assert sorted(result.failed("numbers")) == [0, 1, 2, 3, 4]


# -- interactive use, ticks, virtual time --------------------------------------------
class Total(Bolt):
    outputs = ["total"]

    def prepare(self, conf: dict[str, Any], context: Any) -> None:
        self.total = 0

    def execute(self, tup: Any) -> None:
        if tup.is_tick:
            self.emit([self.total])
            return
        self.total += tup[0]
        self.ack(tup)


class TickHook(Bolt):
    outputs = ["seen"]

    def execute(self, tup: Any) -> None:
        assert not tup.is_tick, "ticks go to process_tick"
        self.ack(tup)

    def process_tick(self, tup: Any) -> None:
        self.emit([tup[0]])


class Sums(Topology):
    numbers = Numbers.spec()
    total = Total.spec(inputs=[numbers], config={"topology.tick.tuple.freq.secs": 5})
    hook = TickHook.spec(inputs=[numbers], config={"topology.tick.tuple.freq.secs": 2})
    plain = Collect.spec(inputs=[numbers])


def test_feed_run_and_tick_interactively() -> None:
    with TestTopology(Sums, {Sums.numbers: [[1], [2]]}) as t:
        t.run()
        assert t.result.received("total") == [[1], [2]] and t.result.emitted("total") == []
        t.feed("numbers", [[3]])
        t.run()
        t.tick("total")
        assert t.result.emitted("total") == [[6]] and t.result.emitted("hook") == []
        t.tick()  # every bolt with a tick frequency; process_tick is used when defined
        assert t.result.emitted("total") == [[6], [6]]
        assert t.result.emitted("hook") == [[2.0]]
        assert t.result.acked("numbers") == [0, 1, 2]
    with pytest.raises(HarnessError, match="closed"):
        t.run()


def test_advance_fires_ticks_and_timeouts_by_virtual_time() -> None:
    with TestTopology(Sums, {"numbers": [[4]]}) as t:
        t.run()
        t.advance(11)
        assert t.result.emitted("total") == [[4], [4]]  # at 5 s and 10 s
        assert len(t.result.emitted("hook")) == 5  # every 2 s
        assert t.result.errors == []


def test_expire_pending_fails_trees_by_message_timeout() -> None:
    with TestTopology(Silent, {"numbers": [[0], [1]]}, config={"topology.message.timeout.secs": 10}) as t:
        t.run()
        t.advance(9)
        assert t.result.failed("numbers") == [] and t.result.pending("numbers") == [0, 1]
        t.expire_pending()
        assert sorted(t.result.failed("numbers")) == [0, 1]


def test_tick_needs_a_bolt_with_a_tick_frequency() -> None:
    with TestTopology(Silent, {"numbers": []}) as t:
        with pytest.raises(HarnessError, match="no bolt of topology 'Silent' has a tick frequency"):
            t.tick()
        with pytest.raises(HarnessError, match="bolt 'hole' has no tick frequency"):
            t.tick("hole")
        with pytest.raises(HarnessError, match="'numbers' is a spout"):
            t.tick("numbers")


# -- misuse gives clear errors --------------------------------------------------------
@pytest.mark.parametrize(
    ("inputs", "match"),
    [
        ({"nope": []}, "inputs names 'nope', which is not a spout of topology 'Acking'; its spouts are: numbers"),
        ({"relay": []}, "'relay', which is not a spout"),
        ({"numbers": ["a", "b"]}, r"inputs\['numbers'\]\[0\] is 'a'; each input is a list of values"),
        ({"numbers": [[1, 2]]}, r"inputs\['numbers'\]\[0\] has 2 values but stream 'default' of 'numbers' declares 1 fields \['n'\]"),
    ],
)
def test_bad_inputs_are_named(inputs: dict[str, Any], match: str) -> None:
    with pytest.raises(HarnessError, match=match):
        run_topology(Acking, inputs)


def test_result_checks_component_and_stream_names() -> None:
    result = run_topology(Acking, {"numbers": [[1]]})
    with pytest.raises(HarnessError, match="has no component 'chek'; its components are: check, numbers, relay"):
        result.emitted("chek")
    with pytest.raises(HarnessError, match="component 'relay' declares no stream 'x'; declared: default"):
        result.emitted("relay", stream="x")
    with pytest.raises(HarnessError, match="'relay' is a bolt"):
        result.acked("relay")
    with TestTopology(Acking) as t, pytest.raises(HarnessError, match="not fed by the harness"):
        t.feed("numbers", [[1]])


# -- single bolts ---------------------------------------------------------------------
def test_make_tuple_builds_what_a_bolt_receives() -> None:
    tup = make_tuple(["cow", 2], fields=["word", "count"], stream="s", component="count", task=7)
    assert tup["word"] == "cow" and tup[1] == 2 and tup.as_dict() == {"word": "cow", "count": 2}
    assert (tup.stream, tup.source_component, tup.source_task, tup.is_tick) == ("s", "count", 7, False)
    assert make_tuple([1, 2]).fields == ("field1", "field2")
    assert make_tick_tuple(3).is_tick and make_tick_tuple(3)[0] == 3
    with pytest.raises(HarnessError, match="2 values but 1 fields"):
        make_tuple([1, 2], fields=["a"])
    with pytest.raises(HarnessError, match="list of values"):
        make_tuple("word")


def test_run_bolt_split() -> None:
    tup = make_tuple(["a b a"], fields=["sentence"], component="sentences")
    run = run_bolt(wordcount.SplitBolt, [tup, ["c"]])
    assert run.emitted() == [["a"], ["b"], ["a"], ["c"]]
    assert run.emissions[0].anchors == (tup,)
    assert run.acked[0] is tup and len(run.acked) == 2
    assert run.failed == [] and run.errors == [] and run.unacked == []


def test_run_bolt_count_with_tick_and_cleanup() -> None:
    run = run_bolt(wordcount.CountBolt, [["a"], ["b"], ["a"], make_tick_tuple(), ["b"]])
    assert sorted(run.emitted()[:2]) == [["a", 2], ["b", 1]]
    assert run.emitted()[2:] == [["b", 2]]  # from cleanup: b changed after the tick
    assert run.instance.counts == {"a": 2, "b": 2}
    assert len(run.acked) == 4 and run.unacked == []
    assert run_bolt(wordcount.CountBolt, [["a"]], cleanup=False).emitted() == []


def test_run_bolt_process_tick_and_conf() -> None:
    class Configured(Bolt):
        outputs = ["v"]

        def prepare(self, conf: dict[str, Any], context: Any) -> None:
            self.prefix = conf["my.prefix"]
            self.name = context.component_id

        def execute(self, tup: Any) -> None:
            self.emit([self.prefix + tup[0]])

        def process_tick(self, tup: Any) -> None:
            self.emit([f"tick {tup[0]}"])

    run = run_bolt(Configured, [["x"], make_tick_tuple(2.5)], conf={"my.prefix": ">"}, name="fmt")
    assert run.emitted() == [[">x"], ["tick 2.5"]]
    assert run.instance.name == "fmt"
    assert [t.values for t in run.unacked] == [["x"]]  # it forgot to ack


def test_run_bolt_basic_bolt_acks_fails_and_records_errors() -> None:
    class Picky(BasicBolt):
        outputs = ["n"]

        def execute(self, tup: Any) -> None:
            if tup[0] < 0:
                raise FailedException("negative")
            if tup[0] == 0:
                raise ZeroDivisionError("zero")
            self.emit([tup[0] * 2])

    ok, neg, zero = make_tuple([2]), make_tuple([-1]), make_tuple([0])
    run = run_bolt(Picky, [ok, neg, zero])
    assert run.emitted() == [[4]] and run.emissions[0].anchors == (ok,)
    assert run.acked == [ok] and run.failed == [neg, zero]
    [error] = run.errors
    assert error.component == "Picky" and "ZeroDivisionError: zero" in error.traceback
    with pytest.raises(HarnessError, match="ZeroDivisionError"):
        run.raise_for_errors()


def test_run_bolt_records_emit_errors_like_the_runtime() -> None:
    class Wrong(Bolt):
        outputs = ["a", "b"]

        def execute(self, tup: Any) -> None:
            self.emit([1])

    run = run_bolt(Wrong, [[0]])
    assert run.emitted() == [] and len(run.failed) == 1
    assert "emitted 1 values on stream 'default', which declares 2 fields" in run.errors[0].error
    with pytest.raises(HarnessError, match="needs a Bolt subclass"):
        run_bolt(Numbers, [[1]])  # type: ignore[arg-type]


# -- the module itself ---------------------------------------------------------------
def test_exports() -> None:
    assert sorted(storm.testing.__all__) == [
        "BoltRun", "Delivery", "Emission", "FaultEvent", "Faults", "HarnessError", "InjectedFault",
        "RecordedError", "RunResult",
        "TestTopology", "TopologyStalled", "TopologyTimeout", "make_tick_tuple", "make_tuple",
        "run_bolt", "run_topology",
    ]
    assert all(hasattr(storm.testing, name) for name in storm.testing.__all__)


def test_docstring_examples_run() -> None:
    outcome = doctest.testmod(storm.testing)
    assert outcome.attempted > 0 and outcome.failed == 0
