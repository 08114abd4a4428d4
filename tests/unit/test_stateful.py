"""storm.stateful in one process: a stateful bolt's inputs are acked only once
a checkpoint saved the state holding them; the state is restored by the next
start of the same task; the SQLite store commits changes and deletions; a
message timeout that a checkpoint interval would exceed is rejected."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from storm import Grouping, Spout, Topology, TopologyError, Tuple
from storm.stateful import CheckpointSpout, KeyValueState, SqliteStateStore, StatefulBolt
from storm.testing import TestTopology

pytestmark = pytest.mark.timeout(30)


class Words(Spout):
    outputs = ["word"]


class Counter(StatefulBolt):
    outputs = ["word", "count"]

    def init_state(self, state: KeyValueState) -> None:
        self.restored = dict(state)

    def execute(self, tup: Tuple) -> None:
        n = self.state.get(tup[0], 0) + 1
        self.state[tup[0]] = n
        self.emit([tup[0], n], anchors=[tup])
        self.ack(tup)


class Counts(Topology):
    checkpoint = CheckpointSpout.spec()
    words = Words.spec()
    count = Counter.spec(inputs={words: Grouping.fields("word")}, par=2, checkpoints=checkpoint)


def run_until(t: TestTopology, cond: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        t.run()


def test_store_commits_changes_and_deletions(tmp_path: Path) -> None:
    store = SqliteStateStore(tmp_path / "s.sqlite")
    st = KeyValueState(store)
    st["a"], st[("t", 1)], st["gone"] = 1, {"x": [1, 2]}, 0
    st.commit(5)
    del st["gone"]
    st["a"] = 2
    assert st.dirty == 2
    st.commit(6)
    store.close()
    again = KeyValueState(SqliteStateStore(tmp_path / "s.sqlite"))
    assert dict(again) == {"a": 2, ("t", 1): {"x": [1, 2]}}
    assert again.txid == 6


def test_inputs_are_acked_after_the_checkpoint_and_state_is_restored(tmp_path: Path) -> None:
    conf = {"topology.state.dir": str(tmp_path), "topology.state.checkpoint.interval.ms": 600000.0,
            "topology.message.timeout.secs": 3600.0}
    with TestTopology(Counts, inputs={"words": [["a"], ["b"], ["a"]]}, config=conf) as t:
        t.run()
        assert t.result.emitted("count")[-1] == ["a", 2]
        assert t.result.acked("words") == [], "no checkpoint yet: acks are held"
    fast = {**conf, "topology.state.checkpoint.interval.ms": 5.0}
    with TestTopology(Counts, inputs={"words": [["a"], ["c"]]}, config=fast) as t:
        # Nothing was saved by the first run: it starts empty again (its inputs would be replayed).
        run_until(t, lambda: sorted(t.result.acked("words")) == [0, 1])
        assert sorted(t.result.emitted("count")) == [["a", 1], ["c", 1]]
    with TestTopology(Counts, inputs={"words": [["a"]]}, config=fast) as t:
        restored = {k: v for inst in t.result.instances("count") for k, v in inst.restored.items()}
        assert restored == {"a": 1, "c": 1}
        run_until(t, lambda: t.result.acked("words") == [0])
        assert t.result.emitted("count") == [["a", 2]]


def test_checkpoint_interval_must_fit_in_the_message_timeout(tmp_path: Path) -> None:
    conf = {"topology.state.dir": str(tmp_path), "topology.state.checkpoint.interval.ms": 2000.0,
            "topology.message.timeout.secs": 3.0}
    with pytest.raises(TopologyError, match=r"'count'.*must exceed twice"):
        TestTopology(Counts, inputs={"words": []}, config=conf)


def test_stateful_bolt_needs_a_checkpoint_spout() -> None:
    with pytest.raises(TopologyError, match="needs checkpoints="):
        Counter.spec(inputs=["words"])


def test_alert_watermarks_are_declared_after_observations() -> None:
    # A worker batches tuples per stream in declaration order: observations first,
    # so a watermark does not overtake the observations emitted before it.
    from storm._component import normalize_outputs
    from storm.alerting import WATERMARK_STREAM, RuleMatchBolt

    assert list(normalize_outputs(RuleMatchBolt.outputs, "match")) == ["default", WATERMARK_STREAM]


def test_alert_state_is_rebuilt_from_the_snapshot_on_every_reset(tmp_path: Path) -> None:
    import math

    from storm.alerting import StatefulRuleEvalBolt, load_rules

    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "rules:\n  - name: hot\n    filter: {metric: cpu}\n    key: host\n"
        "    condition: {kind: threshold, aggregate: max, field: value, window: 10, slide: 5, op: '>', value: 90}\n"
    )
    bolt = StatefulRuleEvalBolt()
    bolt.ruleset = load_rules(str(rules))
    bolt._mark_tasks = [1]
    state = KeyValueState()
    bolt.init_state(state)
    bolt.engine.observe("hot", "h1", 3.0, 95.0)
    state[StatefulRuleEvalBolt.STATE_KEY] = bolt.engine.snapshot()
    bolt.engine.observe("hot", "h2", 4.0, 95.0)  # after the snapshot: dropped by a reset
    bolt.engine.advance(7.0)
    bolt.init_state(state)
    keys = bolt.engine.keys()
    assert sorted(k for _, k in keys) == ["h1"]
    assert bolt.restored and not math.isfinite(bolt.watermarks.current)
