"""A component's state_size() (the alert engine's keys, panes and bytes) goes
into its task's metrics, is summed per component, and `storm stats` prints it."""

from __future__ import annotations

from typing import Any

import pytest
from rich.console import Console

from storm import Bolt, Spout, Topology
from storm._metrics import MetricsHistory, aggregate
from storm._runtime import Worker
from storm.cli._monitor import stats_tables


class Src(Spout):
    outputs = ["k"]


class Holder(Bolt):
    def prepare(self, conf: dict[str, Any], context: Any) -> None:
        self.keys = context.task_id  # differs per task, so the sum is checked

    def state_size(self) -> dict[str, int]:
        return {"keys": self.keys, "bytes": 1000}


class Broken(Bolt):
    def state_size(self) -> dict[str, int]:
        raise RuntimeError("no size")


class T(Topology):
    config = {"topology.acker.executors": 0}
    src = Src.spec()
    holder = Holder.spec(inputs=[src], par=2)
    broken = Broken.spec(inputs=[src])


@pytest.mark.timeout(30)
def test_state_size_is_reported_summed_and_printed() -> None:
    spec = T.build()
    worker = Worker(spec, {t: 0 for t in spec.task_component}, 0)
    worker.setup()
    metrics = worker.metrics()
    holder_tasks = spec.components["holder"].tasks
    assert [metrics[t]["state"] for t in holder_tasks] == [{"keys": t, "bytes": 1000} for t in holder_tasks]
    broken = spec.components["broken"].tasks[0]
    assert "state" not in metrics[broken]  # recorded as an error instead, the worker goes on
    assert any(e["where"] == "state_size" and "no size" in e["error"] for e in worker.new_errors)
    history = MetricsHistory()
    history.record(metrics, 1.0)
    comps = {c.name: ("spout" if c.is_spout else "bolt", c.tasks) for c in spec.components.values()}
    stats = aggregate(spec.name, comps, history, 1.0)
    holder = next(c for c in stats.components if c.name == "holder")
    assert holder.state == {"keys": sum(holder_tasks), "bytes": 2000}
    console = Console(width=120, record=True)
    console.print(stats_tables(stats, ["all"]))
    assert f"holder: queue 0, pending 0, state bytes 2.0K, keys {sum(holder_tasks)}" in console.export_text()


@pytest.mark.timeout(30)
def test_the_evaluator_counts_its_state_again_only_after_a_while(monkeypatch: pytest.MonkeyPatch) -> None:
    # The count walks every (rule, key) pair: asked every second by the worker,
    # it is taken again after at least a second (longer when it is slow).
    import storm.alerting._bolts as bolts
    from storm.alerting import RuleEvalBolt, parse_rules

    clock = [100.0]
    monkeypatch.setattr(bolts.time, "monotonic", lambda: clock[0])
    bolt = RuleEvalBolt()
    bolt.engine = bolts.RuleEngine(parse_rules({"rules": [{"name": "busy", "key": "host", "condition": {
        "kind": "threshold", "aggregate": "count", "window": 10, "op": ">=", "value": 2}}]}))
    bolt._size, bolt._size_next = None, 0.0
    assert bolt.state_size()["keys"] == 0
    bolt.engine.observe("busy", "h1", 1.0, None)
    bolt.engine.observe("busy", "h2", 1.0, None)
    clock[0] += 0.5
    assert bolt.state_size()["keys"] == 0, "counted again within the second"
    clock[0] += 0.6
    assert bolt.state_size() == bolt.engine.state_size() and bolt.state_size()["keys"] == 2
