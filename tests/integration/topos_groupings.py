"""Topologies for the grouping tests: finite number spouts feeding recording bolts
over every grouping, laid out so the bolt's tasks sit in both of two workers.

Task ids are given to components in name order and tasks are assigned to
workers round-robin by id, so with 2 workers odd task ids land in worker 0 and
even ones in worker 1; the comments give the resulting layout."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from topos_common import FLUSH_TICKS, NumberSpout, RecordBolt

from storm import CustomGrouping, Grouping, Stream, Topology, TopologyContext, Tuple

TWO_WORKERS = {"topology.workers": 2}
KEYS = 40  # distinct keys the KeySpout cycles through


class KeySpout(NumberSpout):
    """Emits (key, n): key k<(n // 2) % KEYS> for each number n. With two tasks
    (task i emits the n with n % 2 == i) both emit every key, so a key routed
    differently in the two workers' processes lands on two tasks."""

    outputs = ["key", "n"]

    def values_for(self, n: int) -> list[Any]:
        return [f"k{(n // 2) % KEYS}", n]


class FieldsTopology(Topology):
    # keys: tasks 1, 2 (w0, w1); record: 3-6 (w0, w1, w0, w1); acker: 7, 8
    config = TWO_WORKERS
    keys = KeySpout.spec(par=2)
    record = RecordBolt.spec(inputs={keys: Grouping.fields("key")}, par=4, config=FLUSH_TICKS)


class AllTopology(Topology):
    # every: tasks 1-4 (w0, w1, w0, w1); nums: 5, 6
    config = TWO_WORKERS
    nums = NumberSpout.spec(par=2)
    every = RecordBolt.spec(inputs={nums: Grouping.all()}, par=4, config=FLUSH_TICKS)


class GlobalTopology(Topology):
    # lowest: tasks 1-4 (w0, w1, w0, w1), all tuples go to task 1; nums: 5, 6
    config = TWO_WORKERS
    lowest = RecordBolt.spec(inputs={"nums": Grouping.global_()}, par=4, config=FLUSH_TICKS)
    nums = NumberSpout.spec(par=2)


# -- direct grouping -------------------------------------------------------------


def spout_direct_targets(context: TopologyContext) -> list[int]:
    """The tasks of `by_spout` the spout sends to: its first and last (both workers)."""
    tasks = context.get_component_tasks("by_spout")
    return [tasks[0], tasks[-1]]


def bolt_direct_targets(context: TopologyContext) -> list[int]:
    """The tasks of `by_bolt` the director bolt sends to: its 2nd and 3rd (both workers)."""
    tasks = context.get_component_tasks("by_bolt")
    return [tasks[1], tasks[2]]


class DirectSpout(NumberSpout):
    """Emits each n directly to one of two chosen `by_spout` tasks on stream
    "pick", and normally on "default" (to the director). Records any emit whose
    returned task list is not [the chosen task]."""

    outputs = [Stream(("n",), name="pick", direct=True), Stream(("n",))]

    def open(self, conf: dict[str, Any], context: TopologyContext) -> None:
        self.targets = spout_direct_targets(context)
        super().open(conf, context)
        self.record["bad_returns"] = []

    def emit_number(self, n: int) -> None:
        task = self.targets[n % 2]
        got = self.emit([n], stream="pick", direct_task=task)
        if list(got) != [task]:
            self.record["bad_returns"].append([task, list(got)])
        self.emit([n])


class DirectorBolt(RecordBolt):
    """Forwards each n directly to one of two chosen `by_bolt` tasks."""

    outputs = [Stream(("n",), name="pick", direct=True)]

    def prepare(self, conf: dict[str, Any], context: TopologyContext) -> None:
        super().prepare(conf, context)
        self.targets = bolt_direct_targets(context)
        self.record["bad_returns"] = []

    def execute(self, tup: Tuple) -> None:
        n = tup.values[0]
        task = self.targets[n % 2]
        got = self.emit([n], stream="pick", anchors=[tup], direct_task=task)
        if list(got) != [task]:
            self.record["bad_returns"].append([task, list(got)])
        super().execute(tup)


class DirectTopology(Topology):
    # by_bolt: tasks 1-4; by_spout: 5-8; director: 9, 10; source: 11, 12; acker: 13, 14
    # (odd ids in worker 0, even ids in worker 1)
    config = TWO_WORKERS
    source = DirectSpout.spec(par=2)
    director = DirectorBolt.spec(inputs=[source], par=2, config=FLUSH_TICKS)
    by_spout = RecordBolt.spec(inputs={source["pick"]: Grouping.direct()}, par=4, config=FLUSH_TICKS)
    by_bolt = RecordBolt.spec(inputs={director["pick"]: Grouping.direct()}, par=4, config=FLUSH_TICKS)


# -- local or shuffle ------------------------------------------------------------


class LocalOrShuffleTopology(Topology):
    # near: tasks 1-4 (w0, w1, w0, w1); src: 5 (w0), 6 (w1)
    config = TWO_WORKERS
    near = RecordBolt.spec(inputs={"src": Grouping.local_or_shuffle()}, par=4, config=FLUSH_TICKS)
    src = NumberSpout.spec(par=2)


# -- custom grouping --------------------------------------------------------------


class ModFanout(CustomGrouping):
    """Sends n to `fanout` consecutive target tasks starting at n % len(targets)."""

    def __init__(self, fanout: int = 1) -> None:
        self.fanout = fanout

    def choose_tasks(self, task_id: int, values: Sequence[Any]) -> Sequence[int]:
        n = values[0]
        k = len(self.targets)
        return [self.targets[(n + i) % k] for i in range(self.fanout)]


class CustomTopology(Topology):
    # fan: tasks 1-4 (w0, w1, w0, w1); nums: 5, 6
    config = TWO_WORKERS
    fan = RecordBolt.spec(inputs={"nums": Grouping.custom(ModFanout, fanout=2)}, par=4, config=FLUSH_TICKS)
    nums = NumberSpout.spec(par=2)

