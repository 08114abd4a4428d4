"""Fault injection in the in-process harness (storm.testing.Faults): each kind
of fault does what it says, the spout replays what failed and the result says
so, the README's "nothing lost when the count bolt crashes" example passes, and
timeouts run on the virtual clock."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from storm import Bolt, Grouping, Spout, Topology
from storm.testing import Faults, HarnessError, TestTopology, run_topology

pytestmark = pytest.mark.timeout(30)

README = Path(__file__).resolve().parents[2] / "README.md"


class Lines(Spout):
    outputs = ["line"]


class Split(Bolt):
    outputs = ["word"]

    def execute(self, tup: Any) -> None:
        for word in tup[0].split():
            self.emit([word], anchors=[tup])
        self.ack(tup)


class Count(Bolt):
    def prepare(self, conf: Any, context: Any) -> None:
        self.counts: dict[str, int] = {}

    def execute(self, tup: Any) -> None:
        self.counts[tup[0]] = self.counts.get(tup[0], 0) + 1
        self.ack(tup)


class Words(Topology):
    config = {"topology.message.timeout.secs": 30}
    lines = Lines.spec()
    split = Split.spec(inputs=[lines])
    count = Count.spec(inputs={split: Grouping.fields("word")}, par=2)


LINES = [["the cow"], ["a dog"], ["the end"]]


def counts(result: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for bolt in result.instances("count"):
        for word, n in bolt.counts.items():
            out[word] = out.get(word, 0) + n
    return out


def test_without_faults_nothing_is_replayed() -> None:
    result = run_topology(Words, inputs={"lines": LINES}, faults=Faults(), replay=True)
    assert result.faults == [] and result.replayed("lines") == []
    assert counts(result) == {"the": 2, "cow": 1, "a": 1, "dog": 1, "end": 1}


@pytest.mark.parametrize("kind", ["crash", "fail"])
def test_a_crash_or_fail_is_replayed_and_nothing_is_lost(kind: str) -> None:
    faults = getattr(Faults(), kind)("count", where=lambda t: t[0] == "dog")
    result = run_topology(Words, inputs={"lines": LINES}, faults=faults, replay=True)
    assert [(f.kind, f.values, f.source) for f in result.faults] == [(kind, ["dog"], "split")]
    assert result.failed("lines") == [1] and result.replayed("lines") == [1]
    assert sorted(result.acked("lines")) == [0, 1, 2] and result.pending("lines") == []
    assert counts(result)["dog"] == 1 and counts(result)["a"] in (1, 2)
    injected = [e for e in result.errors if "InjectedFault" in e.error]
    assert len(injected) == (1 if kind == "crash" else 0)
    result.raise_for_errors()  # an injected crash is not a test failure


def test_without_replay_a_crashed_input_stays_failed() -> None:
    result = run_topology(Words, inputs={"lines": LINES}, faults=Faults().crash("count", index=0))
    assert result.failed("lines") == [0] and result.replayed("lines") == []
    assert sorted(result.acked("lines")) == [1, 2]


def test_a_dropped_tuple_fails_by_timeout_on_the_virtual_clock() -> None:
    with TestTopology(Words, inputs={"lines": LINES}, faults=Faults().drop("count", index=1),
                      replay=True) as t:
        t.run()
        assert t.result.pending("lines") == [0] and t.result.failed("lines") == []
        t.advance(29.9)  # the timeout is 30 s: not yet
        assert t.result.failed("lines") == []
        t.advance(45 - 29.9)  # Storm fails it between 1x and 1.5x the timeout
        assert t.result.failed("lines") == [0]
        assert t.result.replayed("lines") == [0] and sorted(t.result.acked("lines")) == [0, 1, 2]
        assert t.now == 45


def test_a_duplicate_is_executed_twice_and_the_tree_still_completes() -> None:
    result = run_topology(Words, inputs={"lines": LINES}, faults=Faults().duplicate("count", where=lambda t: t[0] == "cow"))
    assert counts(result)["cow"] == 2
    assert sorted(result.acked("lines")) == [0, 1, 2] and result.failed("lines") == []
    assert [d.tup[0] for d in result.deliveries("count")].count("cow") == 2


def test_a_delay_shorter_than_the_timeout_only_reorders() -> None:
    with TestTopology(Words, inputs={"lines": LINES}, faults=Faults().delay("count", 5, index=0)) as t:
        t.run()
        assert t.faults is not None and t.faults.held == 1
        assert t.result.pending("lines") == [0]
        t.advance(5)
        assert t.faults.held == 0 and t.result.pending("lines") == []
        assert sorted(t.result.acked("lines")) == [0, 1, 2] and t.result.failed("lines") == []
        assert [d.tup[0] for d in t.result.deliveries("count")][-1] == "the"  # came last


def test_a_delay_longer_than_the_timeout_replays_and_the_late_tuple_still_arrives() -> None:
    result = run_topology(Words, inputs={"lines": LINES}, faults=Faults().delay("count", 100, index=0),
                          replay=True)
    assert result.failed("lines") == [0] and result.replayed("lines") == [0]
    assert counts(result)["the"] == 3  # the replay's "the" and the late original's


def test_index_stream_source_and_times_narrow_a_rule() -> None:
    faults = Faults().fail("count", source="split", where=lambda t: t[0] == "the", times=None)
    result = run_topology(Words, inputs={"lines": LINES}, faults=faults)
    assert [f.values for f in result.faults] == [["the"], ["the"]]
    assert sorted(result.failed("lines")) == [0, 2]
    third = run_topology(Words, inputs={"lines": LINES}).deliveries("count")[2].tup.values
    faults = Faults().fail("count", stream="other", times=None).fail("count", index=2)
    result = run_topology(Words, inputs={"lines": LINES}, faults=faults)
    assert [f.values for f in result.faults] == [third]  # the third tuple the bolt got


def test_bad_fault_rules_are_refused_with_a_clear_error() -> None:
    with pytest.raises(HarnessError, match="'cuont', which is not a bolt of this topology; its bolts are: count, split"):
        run_topology(Words, inputs={"lines": LINES}, faults=Faults().crash("cuont"))
    with pytest.raises(HarnessError, match="which is not a bolt"):
        run_topology(Words, inputs={"lines": LINES}, faults=Faults().crash("lines"))
    with pytest.raises(Exception, match="times= must be an integer >= 1"):
        Faults().drop("count", times=0)
    with pytest.raises(Exception, match="index= is the 0-based index"):
        Faults().drop("count", index=-1)
    with pytest.raises(Exception, match="seconds must be a number >= 0"):
        Faults().delay("count", -1)
    faults = Faults()
    run_topology(Words, inputs={"lines": LINES}, faults=faults)
    with pytest.raises(HarnessError, match="already used by another TestTopology"):
        run_topology(Words, inputs={"lines": LINES}, faults=faults)
    with pytest.raises(HarnessError, match="faults= takes a storm.testing.Faults"):
        run_topology(Words, inputs={"lines": LINES}, faults=[("drop", "count")])  # type: ignore[arg-type]


def test_the_readme_fault_injection_example_runs() -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    [example] = [b for b in blocks if "Faults().crash" in b]
    namespace: dict[str, object] = {"__name__": "readme_faults"}
    exec(compile(blocks[0], "README quickstart", "exec"), namespace)
    exec(compile(example, "README fault injection example", "exec"), namespace)
