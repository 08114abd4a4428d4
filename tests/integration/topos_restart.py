"""Topology for the worker-restart test: paced spouts in both workers feeding
counting bolts in both workers with shuffle grouping, so tuples cross between
the workers both ways.

Layout with 2 workers: count: tasks 1 (w0), 2 (w1); numbers: 3 (w0), 4 (w1);
acker: 5 (w0), 6 (w1)."""

from __future__ import annotations

from typing import Any

from topos_common import FLUSH_TICKS, PacedSpout, Recording

from storm import Bolt, Topology, TopologyContext, Tuple


class CountBolt(Recording, Bolt):
    """Counts tuples per source task (its record names the pid that counted)."""

    def prepare(self, conf: dict[str, Any], context: TopologyContext) -> None:
        self.start_recording(conf, context, count=0, sources={})

    def execute(self, tup: Tuple) -> None:
        rec = self.record
        rec["count"] += 1
        src = str(tup.source_task)
        rec["sources"][src] = rec["sources"].get(src, 0) + 1
        self.ack(tup)
        self.changed()

    def process_tick(self, tup: Tuple) -> None:
        self.flush_record()

    def cleanup(self) -> None:
        self.write_record(final=True)


class Restartable(Topology):
    config = {"topology.workers": 2}
    numbers = PacedSpout.spec(par=2)
    count = CountBolt.spec(inputs=[numbers], par=2, config=FLUSH_TICKS)
